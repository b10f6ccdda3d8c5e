"""A renewing online learner: recovers from an abrupt change as ARF's background trees do, at
a fraction of ARF's cost.

A Hoeffding tree grown on one concept keeps its splits after the concept changes and learns
the new one only slowly (STAGGER: 0.73 alone against 0.99 for ARF). `Renewing` wraps a
learner and watches its recent labelled accuracy against its long-run accuracy. When the
recent accuracy falls clearly below (a warning), a fresh shadow learner starts beside it and
learns the same labels; once the shadow has seen `min_seen` labels and is significantly better
than the main learner on the same labels (McNemar, `z`), they trade places: the fresh learner
serves and the old one competes as the shadow (so it wins back when it knew more, as after a
covariate-only shift). A shadow that has not won after `patience` labels is dropped. Without a warning the cost is
the wrapped learner's plus a few arithmetic operations per label: the main learner's
prediction for a record is kept from when it was scored (by identity of the record) instead
of being computed again when its label arrives.

>>> import random
>>> from river import tree
>>> from functools import partial
>>> learner = Renewing(partial(tree.HoeffdingTreeClassifier, grace_period=100))
>>> rng = random.Random(0)
>>> right = []
>>> for i in range(6000):
...     x = {"a": rng.random(), "b": rng.random()}
...     y = int(x["a"] > 0.5) if i < 3000 else int(x["b"] > 0.5)   # the concept changes at 3,000
...     right.append(learner.predict_one(x) == y)
...     learner.learn_one(x, y)
>>> learner.renewals
1
>>> sum(right[5000:]) / 1000 > 0.9
True
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from typing import Any

_compiled: Any  # Linear's per-record arithmetic compiled (training/_leaf.pyx), when it was built
try:
    from training import _leaf as _compiled
    _compiled.linear_step  # noqa: B018 (an older build lacks it)
except (ImportError, AttributeError):
    _compiled = None
_nearest = getattr(_compiled, "window_nearest", None)  # Window's search compiled (an older build lacks it)
# Pooled's arithmetic (and Window's and Linear's around it) compiled; an older build lacks it
_pooled: Any = _compiled if hasattr(_compiled, "pool_gradient") else None
# Pooled's linear model and window as one compiled object; an older build lacks it
_core: Any = getattr(_compiled, "PoolCore", None)


def _top(d: dict[Any, Any]) -> Any:
    return max(d, key=d.__getitem__)


# `max(d, key=d.__getitem__)`: the class a prediction or a leaf's counts give (a few times a record),
# compiled when it can be: the same key (the first of equals, by the values' own `>`).
top: Callable[[dict[Any, Any]], Any] = getattr(_compiled, "top", None) or _top


class Renewing:
    """Wraps an online learner made by `make`; see the module docstring."""

    def __init__(self, make: Callable[[], Any], *, halflife: int = 100, long_halflife: int = 1000,
                 warn: float = 0.1, min_seen: int = 100, z: float = 3.0, patience: int = 2000,
                 cache: int = 4096, make_shadow: Callable[[], Any] | None = None, contend: bool = False):
        self.make = make
        # The learner started on a warning (default: `make`'s). A fresh one may be made to grow
        # faster than the first: it must learn the new concept within a few hundred labels.
        self.make_shadow = make_shadow or make
        self.main = make()
        # contend: a shadow from the first label, so a learner that grows faster can win the warmup.
        self.shadow: Any = None
        self.fast_alpha = 1 - 0.5 ** (1 / halflife)
        self.slow_alpha = 1 - 0.5 ** (1 / long_halflife)
        self.warn, self.min_seen, self.z, self.patience, self.cache_size = warn, min_seen, z, patience, cache
        self.settle = long_halflife  # no warning before the long-run accuracy means something
        self.fast = self.slow = 0.5  # the main learner's recent and long-run accuracy
        self.seen = 0  # labels learned by the main learner
        self.shadow_seen = 0
        self.shadow_wins = self.main_wins = 0  # labels since the shadow started that only it / only main got right
        self.renewals = 0
        # Whether the record last learned was scored by the serving learner (False once it was
        # renewed: a caller judging the learner by its served predictions should skip that one).
        self.fresh = True
        self._scored: dict[int, tuple[dict[Any, Any], Any]] = {}  # id(record) -> (record, main's prediction)
        if contend:
            self.shadow = self.make_shadow()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_scored"] = {}  # identities mean nothing in another process
        return state

    @property
    def accuracy(self) -> float:
        """The serving learner's recent labelled accuracy (exponentially weighted)."""
        return self.fast

    def predict_proba_one(self, x: dict[Any, Any]) -> dict[Any, float]:
        proba: dict[Any, float] = self.main.predict_proba_one(x)
        scored = self._scored
        if len(scored) >= self.cache_size:
            del scored[next(iter(scored))]
        scored[id(x)] = (x, top(proba) if proba else None)
        return proba

    def predict_one(self, x: dict[Any, Any]) -> Any:
        proba = self.predict_proba_one(x)
        return max(proba, key=proba.__getitem__) if proba else None

    def learn_one(self, x: dict[Any, Any], y: Any) -> None:
        kept = self._scored.pop(id(x), None)
        # The record object itself is kept with its prediction, so an identity match is this record.
        self.fresh = kept is not None and kept[0] is x
        predicted = kept[1] if kept is not None and self.fresh else self.main.predict_one(x)
        main_right = predicted == y
        self.fast += self.fast_alpha * (main_right - self.fast)
        self.slow += self.slow_alpha * (main_right - self.slow)
        self.seen += 1
        shadow = self.shadow
        if shadow is not None:
            shadow_right = shadow.predict_one(x) == y
            self.shadow_wins += shadow_right and not main_right
            self.main_wins += main_right and not shadow_right
            shadow.learn_one(x, y)
            self.shadow_seen += 1
            # McNemar on the labels since the shadow started: the fresh learner must be clearly
            # better, not merely lucky (after a covariate-only shift the old learner still knows more).
            wins, losses = self.shadow_wins, self.main_wins
            if self.shadow_seen >= self.min_seen and wins - losses > self.z * (wins + losses) ** 0.5:
                # Its accuracy: the old learner's recent one plus the shadow's lead.
                self.fast = self.slow = min(1.0, self.fast + (wins - losses) / self.shadow_seen)
                # The old learner stays as the shadow for `patience` labels: after a covariate-only
                # shift a fresh learner leads at first, then the one that knows more wins back.
                self.main, self.shadow = shadow, self.main
                self.shadow_seen = self.shadow_wins = self.main_wins = 0
                self.renewals += 1
                # Predictions kept for records still awaiting labels are the old learner's: judging
                # the new one by them would start a shadow against it at once.
                self._scored.clear()
                return
            if self.shadow_seen >= self.patience:
                self.shadow = None
        elif self.seen >= self.settle and self.fast < self.slow - self.warn:
            self.shadow = self.make_shadow()
            self.shadow_seen = self.shadow_wins = self.main_wins = 0
        self.main.learn_one(x, y)


class Maturing:
    """A Hoeffding tree that grows eagerly while young, then as carefully as before.

    For its first `young` labels the tree splits with ARF's member-tree settings (`grace_period`
    and `delta`: a split attempt every 50 labels at confidence 0.99), so a fresh tree (the
    warmup, or a renewal after a change) is a tree within a few hundred labels instead of one
    leaf's naive Bayes; then it takes the `mature` settings, which keep a grown tree from
    splitting on noise (always eager costs 1-1.5 points on the noisy linear streams).
    """

    def __init__(self, tree: Any, *, young: int = 1000, grace_period: int = 50, delta: float = 0.01):
        self.tree = tree
        self.mature = (tree.grace_period, tree.delta)
        self.young = young
        self.seen = 0
        tree.grace_period, tree.delta = grace_period, delta
        self.predict_proba_one = tree.predict_proba_one
        self.predict_one = tree.predict_one

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("predict_proba_one", "predict_one")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.predict_proba_one = self.tree.predict_proba_one
        self.predict_one = self.tree.predict_one

    def learn_one(self, x: dict[Any, Any], y: Any) -> None:
        self.tree.learn_one(x, y)
        self.seen += 1
        if self.seen == self.young:
            self.tree.grace_period, self.tree.delta = self.mature


class Linear:
    """Logistic regression learned online: numbers standardised by their running mean and
    deviation, text one-hot, one weight vector per class against the rest (one for two classes),
    plain SGD at `rate` (river.linear_model.LogisticRegression's defaults). Cheap, and right where
    a tree is slow: a class boundary that is a sloping line (SEA, Hyperplane) takes a tree many
    splits to approximate.
    """

    def __init__(self, rate: float = 0.01):
        self.rate = rate
        self.n = 0
        self.stats: dict[Any, list[float]] = {}  # feature -> [mean, sum of squared deviations, 1 / deviation]
        self.classes: list[Any] = []
        self.weights: dict[Any, dict[Any, float]] = {}  # class -> feature (or (feature, text)) -> weight
        self.bias: dict[Any, float] = {}

    def _features(self, x: dict[Any, Any], learn: bool) -> list[tuple[Any, float]]:
        """x standardised (after its running statistics learn x, if `learn`: a value then stays
        within sqrt(n) of 0 while the statistics are young)."""
        stats = self.stats
        if learn:
            self.n += 1
        n = self.n
        if _compiled is not None:
            features: list[tuple[Any, float]] = _compiled.linear_features(x, stats, n, learn)
            return features
        z = []
        for k, v in x.items():
            if type(v) is str:
                z.append(((k, v), 1.0))
                continue
            if v is None:
                continue
            s = stats.get(k)
            if learn:  # Welford's running mean and variance
                if s is None:
                    s = stats[k] = [0.0, 0.0, 0.0]
                d = v - s[0]
                s[0] += d / n
                s[1] += d * (v - s[0])
                s[2] = 1.0 / math.sqrt(s[1] / n) if s[1] > 0 else 0.0
            elif s is None:
                continue
            z.append((k, (v - s[0]) * s[2]))
        return z

    def _scores(self, z: list[tuple[Any, float]]) -> dict[Any, float]:
        """P(class) against the rest, for each class with its own weights."""
        out = {}
        if _compiled is not None:
            for c, w in self.weights.items():
                out[c] = _compiled.linear_score(w, self.bias[c], z)
            return out
        exp = math.exp
        for c, w in self.weights.items():
            s = self.bias[c]
            get = w.get
            for k, v in z:
                s += get(k, 0.0) * v
            out[c] = 1.0 / (1.0 + exp(-max(-30.0, min(30.0, s))))
        return out

    def _proba(self, scores: dict[Any, float]) -> dict[Any, float]:
        classes = self.classes
        if len(classes) < 2:
            return dict.fromkeys(classes, 1.0)
        if len(classes) == 2:
            p = scores[classes[1]]
            return {classes[0]: 1.0 - p, classes[1]: p}
        total = sum(scores.values()) or 1.0
        return {c: scores[c] / total for c in classes}

    def _predict(self, z: list[tuple[Any, float]]) -> dict[Any, float]:
        """P(class) of a standardised record (`_features`)."""
        if _pooled is not None:
            proba: dict[Any, float] = _pooled.linear_proba(self.weights, self.bias, self.classes, z)
            return proba
        return self._proba(self._scores(z))

    def predict_proba_one(self, x: dict[Any, Any]) -> dict[Any, float]:
        return self._predict(self._features(x, False)) if self.classes else {}

    def predict_one(self, x: dict[Any, Any]) -> Any:
        proba = self.predict_proba_one(x)
        return max(proba, key=proba.__getitem__) if proba else None

    def learn_one(self, x: dict[Any, Any], y: Any, answer: bool = True) -> Any:
        """Learns (x, y); returns what it predicted for x before learning y (one pass gives the
        prediction and the gradient; None without `answer`)."""
        classes = self.classes
        z = self._features(x, True)
        if _pooled is not None and y in classes and len(classes) > 1:
            scores = _pooled.linear_learn(self.weights, self.bias, z, y, self.rate)
            return top(self._proba(scores)) if answer else None
        scores = self._scores(z)
        proba = self._proba(scores) if classes else {}
        predicted = max(proba, key=proba.__getitem__) if proba else None
        if y not in classes:
            classes.append(y)
            classes.sort()
            self.weights = {c: self.weights.get(c, {}) for c in (classes[1:] if len(classes) == 2 else classes)}
            self.bias = {c: self.bias.get(c, 0.0) for c in self.weights}
            scores = self._scores(z)
        rate = self.rate
        for c, p in scores.items():
            step = rate * (p - (y == c))
            self.bias[c] -= step
            w = self.weights[c]
            if _compiled is not None:
                _compiled.linear_step(w, z, step)
                continue
            get = w.get
            for k, v in z:
                w[k] = get(k, 0.0) - step * v
        return predicted


class Partnered:
    """A `Renewing` tree with partner models: the serving rule, the learner process and checkpoints ask
    about the tree's renewals (and whether the record last learned was scored by the serving tree)."""

    inner: Renewing

    @property
    def renewals(self) -> int:
        return self.inner.renewals

    @property
    def fresh(self) -> bool:
        return self.inner.fresh

    def predict_proba_one(self, x: dict[Any, Any]) -> dict[Any, float]:
        raise NotImplementedError

    def predict_one(self, x: dict[Any, Any]) -> Any:
        proba = self.predict_proba_one(x)
        return max(proba, key=proba.__getitem__) if proba else None


class WithLinear(Partnered):
    """A learner (a `Renewing` tree) and a `Linear` model side by side; whichever has the better
    recent labelled accuracy (the same half-life) serves. The tree's accuracy is the one its
    wrapper keeps anyway, so the partner costs only its own arithmetic: it predicts when it serves,
    and learns (predicting first, for its accuracy) from every label.
    """

    def __init__(self, inner: Renewing, *, rate: float = 0.01):
        self.inner = inner
        self.linear = Linear(rate)
        self.alpha = inner.fast_alpha
        self.linear_accuracy = 0.5

    @property
    def accuracy(self) -> float:
        """The recent labelled accuracy of whichever serves."""
        return max(self.inner.fast, self.linear_accuracy)

    def predict_proba_one(self, x: dict[Any, Any]) -> dict[Any, float]:
        proba = self.inner.predict_proba_one(x)  # always: the tree's accuracy is judged on it
        if self.linear_accuracy > self.inner.fast and self.linear.classes:
            return self.linear.predict_proba_one(x)
        return proba

    def learn_one(self, x: dict[Any, Any], y: Any) -> None:
        self.inner.learn_one(x, y)
        right = self.linear.learn_one(x, y) == y
        self.linear_accuracy += self.alpha * (right - self.linear_accuracy)


class Window:
    """Nearest neighbours over the last `size` labelled records (standardised numbers, text one-hot):
    the class shares among the `k` nearest, smoothed. It follows a concept that moves a little at a
    time (RandomRBF's drifting centroids) with no split to wait for: old records fall out of the window.
    """

    def __init__(self, size: int = 200, k: int = 5):  # river.neighbors.KNNClassifier's defaults
        if not 1 <= k <= min(64, size):
            raise ValueError(f"k must be in [1, min(64, size)], got {k!r}")
        self.size, self.k = size, k
        self.columns: dict[Any, int] = {}  # feature (or (feature, text)) -> column
        self.width = 0
        self.points = array("d")  # `size` rows of `width`, row-major
        self.labels: list[Any] = [None] * size
        self.n = 0  # records learned (the next one goes to row n % size)

    def vector(self, z: list[tuple[Any, float]]) -> array[float]:
        """A standardised record (`Linear._features`) as a row of the window's columns (a new feature
        adds a column, 0 in the rows before)."""
        columns = self.columns
        if _pooled is not None:  # no new feature: the row at once (None otherwise)
            row: array[float] | None = _pooled.window_vector(z, columns, self.width)
            if row is not None:
                return row
        for k, _ in z:
            if k not in columns:
                columns[k] = len(columns)
        width = len(columns)
        if width > self.width:
            old, points = self.width, self.points
            grown = array("d", bytes(8 * self.size * width))
            for r in range(min(self.n, self.size)):
                grown[r * width:r * width + old] = points[r * old:(r + 1) * old]
            self.points, self.width = grown, width
        v = [0.0] * self.width
        for k, value in z:
            v[columns[k]] = value
        return array("d", v)

    def nearest(self, v: array[float]) -> list[int]:
        """The rows of the `k` records nearest v, nearest first (the first row of equals first)."""
        filled, width, points = min(self.n, self.size), self.width, self.points
        if _nearest is not None:
            rows: list[int] = _nearest(points, width, filled, v, self.k)
            return rows
        distances = []
        for i in range(filled):
            d = 0.0
            for j in range(width):
                t = points[i * width + j] - v[j]
                d = d + t * t
            distances.append((d, i))
        return [i for _, i in sorted(distances)[:self.k]]

    def predict_proba_one(self, v: array[float], classes: list[Any]) -> dict[Any, float]:
        if min(self.n, self.size) < self.k or not classes:
            return {}
        labels = self.labels
        counts = dict.fromkeys(classes, 0.5)  # smoothed: no class is impossible
        if len(v) < self.width:  # scored before a feature added a column
            v = v + array("d", bytes(8 * (self.width - len(v))))
        if _pooled is not None:
            shares: dict[Any, float] = _pooled.window_shares(self.points, self.width, min(self.n, self.size), v,
                                                               self.k, labels, classes)
            return shares
        for i in self.nearest(v):
            c = labels[i]
            counts[c] = counts.get(c, 0.5) + 1.0
        total = self.k + 0.5 * len(counts)
        return {c: n / total for c, n in counts.items()}

    def learn_one(self, v: array[float], y: Any) -> None:
        row, width = self.n % self.size, self.width
        if len(v) < width:  # scored before a feature added a column
            v = v + array("d", bytes(8 * (width - len(v))))
        self.points[row * width:(row + 1) * width] = v[:width]
        self.labels[row] = y
        self.n += 1


def _forwarded(name: str) -> Any:
    """An attribute of `Pooled` that its compiled core holds while it has one."""
    def get(self: Pooled) -> Any:
        core = self.__dict__.get("core")
        return getattr(core, name) if core is not None else self.__dict__[name]

    def set(self: Pooled, value: Any) -> None:
        core = self.__dict__.get("core")
        if core is not None:
            setattr(core, name, value)
        else:
            self.__dict__[name] = value
    return property(get, set)


class Pooled(Partnered):
    """A `Renewing` tree pooled with a `Linear` model (and a nearest-neighbour `Window`, if `window`):
    the served probabilities are a log-linear pool, class c scoring `sum_i w_i log p_i(c)`, whose weights
    are learned from each label (a step on log-loss, as drift.arbiter.StackedBlend's, then a pull of
    `shrink` back to the tree alone). It starts as the tree alone and weights a partner only as far as
    the labels show it right where the tree is wrong, so the tree keeps serving where it is the better
    model, instead of whichever was more accurate lately serving whole (`WithLinear`).

    With labels late the weights judge the members on a past the stream may have left (a window of the
    last labelled records is worth less when its newest record is 500 old). So, if `guard`, the pool
    serves only while its recent labelled accuracy (half-life `guard` labels) is at least the tree's,
    both judged by what they gave when each record was scored, that is at the deployment's label delay;
    else the tree alone serves (the pool keeps learning).
    """

    # held by the compiled core, when it runs: it serves and learns a record in one call each
    weights = _forwarded("weights")  # tree, linear, window
    pool_fast = _forwarded("pool_fast")
    tree_fast = _forwarded("tree_fast")
    guard_alpha = _forwarded("guard_alpha")
    _FORWARDED = ("weights", "pool_fast", "tree_fast", "guard_alpha")

    def __init__(self, inner: Renewing, *, window: bool = False, linear: bool = True, rate: float = 0.05,
                 shrink: float = 0.005, floor: float = 1e-4, cache: int = 4096, guard: int = 500):
        self.inner = inner
        # without `linear`, only its running statistics (the window's scaling) learn
        self.linear: Linear | None = Linear()
        self.use_linear, self.use_window = linear, window
        self.window = Window() if window else None
        self.weights = [1.0, 0.0, 0.0]  # tree, linear, window
        self.rate, self.shrink, self.floor, self.cache_size = rate, shrink, floor, cache
        self.guard_alpha = 1 - 0.5 ** (1 / guard) if guard else 0.0
        self.pool_fast = self.tree_fast = 0.5  # recent labelled accuracy of the pool and of the tree (`guard`)
        # id(record) -> (record, (classes, logs), window vector, the pool's probabilities, the weights that gave
        # them, the tree's class, the pool's class); the compiled core keeps its own (`PoolCore.scored`)
        self._scored: dict[int, Any] = {}
        self.core: Any = None
        self._compile()

    def _compile(self) -> None:
        """The linear model and the window as one compiled object (training/_leaf.pyx `PoolCore`: the same
        operations as `Linear`'s and `Window`'s, a record in two calls: 1.9-2.1x the renewing tree's cost per
        record down to 1.2-1.3x, round13-decpool4.md);
        `linear` and `window` are then None. Without a build, or without `linear`, the Python objects run."""
        linear = self.linear
        if _core is None or not self.use_linear or linear is None:
            return
        window = self.window or Window()
        core = _core(linear.rate, self.floor, self.use_window, window.size, window.k)
        try:
            core.load({"n": linear.n, "stats": linear.stats, "classes": linear.classes, "weights": linear.weights,
                       "bias": linear.bias, "columns": window.columns, "width": window.width,
                       "points": window.points, "labels": window.labels, "window_n": window.n})
        except (ValueError, KeyError, TypeError):  # a state it cannot place: the Python objects go on
            return
        d = self.__dict__
        core.weights, core.pool_fast, core.tree_fast, core.guard_alpha = (d.pop(name) for name in self._FORWARDED)
        core.pool_rate, core.shrink, core.cache_size = self.rate, self.shrink, self.cache_size
        self.core, self.linear, self.window = core, None, None

    def reference(self) -> tuple[Linear, Window | None]:
        """The linear model and the window as the Python objects (the compiled core's state copied into them)."""
        if self.core is None:
            assert self.linear is not None
            return self.linear, self.window
        state = self.core.state()
        linear = Linear(self.core.rate)
        linear.n, linear.stats, linear.classes = state["n"], state["stats"], state["classes"]
        linear.weights, linear.bias = state["weights"], state["bias"]
        if not self.use_window:
            return linear, None
        window = Window(self.core.size, self.core.k)
        window.columns, window.width, window.n = state["columns"], state["width"], state["window_n"]
        window.points, window.labels = array("d", state["points"]), state["labels"]
        return linear, window

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_scored"] = {}  # identities mean nothing in another process
        state.update((name, getattr(self, name)) for name in self._FORWARDED)
        # As the Python objects: a checkpoint loads with or without the compiled core (and main's loads here).
        state["linear"], state["window"] = self.reference()
        state["core"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("use_window", state.get("window") is not None)  # a checkpoint from before the core
        self.__dict__.update(state)
        self.core = None
        self._compile()

    @property
    def accuracy(self) -> float:
        return self.inner.accuracy

    def _members(self, x: dict[Any, Any]) -> tuple[dict[Any, float], Any, Any]:
        """The tree's probabilities, the record's classes and per class each member's log-probability
        (floored; 0 for a member with nothing to say), and the record's window vector."""
        tree = self.inner.predict_proba_one(x)
        linear = self.linear
        assert linear is not None
        floor, log = self.floor, math.log
        if not linear.classes:
            return tree, (list(tree), [(log(p if p > floor else floor), 0.0, 0.0) for p in tree.values()]), None
        z = linear._features(x, False)
        lin = linear._predict(z) if self.use_linear else {}
        v = near = None
        if self.window is not None:
            v = self.window.vector(z)
            near = self.window.predict_proba_one(v, linear.classes)
        if _pooled is not None:
            return tree, _pooled.pool_logs(tree, lin, near, floor), v
        classes = list(tree)
        if not lin.keys() <= tree.keys():
            classes += [c for c in lin if c not in tree]
        tget, lget = tree.get, lin.get
        logs = []
        for c in classes:
            a, b = tget(c, 0.0), lget(c, 0.0)
            if near:
                n = near.get(c, 0.0)
                n = log(n if n > floor else floor)
            else:
                n = 0.0
            la = log(a if a > floor else floor) if tree else 0.0
            logs.append((la, log(b if b > floor else floor) if lin else 0.0, n))
        return tree, (classes, logs), v

    def _pool(self, logs: list[tuple[float, float, float]]) -> list[float]:
        """The pool's probability of each class (the softmax of its weighted log-probabilities)."""
        w0, w1, w2 = self.weights
        if _pooled is not None:
            pooled: list[float] = _pooled.pool_softmax(logs, w0, w1, w2)
            return pooled
        scores = [w0 * a + w1 * b + w2 * c for a, b, c in logs]
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        total = sum(exps)
        return [e / total for e in exps]

    def _gradient(self, classes: list[Any], logs: list[tuple[float, float, float]], p: list[float],
                  y: Any) -> tuple[float, float, float]:
        """drift.arbiter.StackedBlend's step for three members: the gradient of log-loss, smaller the more
        spread the members' log-probabilities are."""
        if _pooled is not None:
            g: tuple[float, float, float] = _pooled.pool_gradient(classes, logs, p, y, self.rate)
            return g
        k = len(logs)
        m0 = m1 = m2 = 0.0
        for a, b, n in logs:
            m0, m1, m2 = m0 + a, m1 + b, m2 + n
        m0, m1, m2 = m0 / k, m1 / k, m2 / k
        spread = 0.0
        for a, b, n in logs:
            spread += (a - m0) ** 2 + (b - m1) ** 2 + (n - m2) ** 2
        step = self.rate / (1 + (1 + 4 / k * spread) / 10)
        g0 = g1 = g2 = 0.0
        for c, (a, b, n), pc in zip(classes, logs, p, strict=True):
            gc = step * ((c == y) - pc)
            g0 += gc * a
            g1 += gc * b
            g2 += gc * n
        return g0, g1, g2

    def predict_proba_one(self, x: dict[Any, Any]) -> dict[Any, float]:
        core = self.core
        if core is not None:
            served: dict[Any, float] = core.serve(x, self.inner.predict_proba_one(x))
            return served
        scored = self._scored
        tree, features, v = self._members(x)
        if len(scored) >= self.cache_size:
            del scored[next(iter(scored))]
        weights = self.weights
        classes = features[0]
        if not classes:
            scored[id(x)] = (x, features, v, [], weights, None, None)
            return {}
        p = self._pool(features[1])
        proba = dict(zip(classes, p, strict=True))
        tree_class, pool_class = top(tree) if tree else None, top(proba)
        scored[id(x)] = (x, features, v, p, weights, tree_class, pool_class)
        if self.pool_fast < self.tree_fast and self.guard_alpha:
            return tree
        return proba

    def learn_one(self, x: dict[Any, Any], y: Any) -> None:
        if self.core is not None:
            self.core.learn_one(x, y, self.inner)
            return
        kept = self._scored.pop(id(x), None)
        p: list[float] | None = None
        if kept is None or kept[0] is not x:
            _, features, v = self._members(x)
        else:
            _, features, v, p, weights, tree_class, pool_class = kept
            if self.guard_alpha and tree_class is not None:
                a = self.guard_alpha
                self.pool_fast += a * ((pool_class == y) - self.pool_fast)
                self.tree_fast += a * ((tree_class == y) - self.tree_fast)
            if weights is not self.weights:  # learned since it was scored: the pool's output has changed
                p = None
        inner = self.inner
        renewals = inner.renewals
        inner.learn_one(x, y)
        renewed = inner.renewals != renewals
        if renewed:
            # A fresh tree serves: what the pool learned of the old one says nothing of it (nor of how the
            # partners compare with it), so the pool starts again as the tree alone.
            self.weights = [1.0, 0.0, 0.0]
            self.pool_fast = self.tree_fast = inner.fast
        classes, logs = features
        if not renewed and inner.fresh and len(classes) > 1 and y in classes:  # (not scored by the old tree)
            g0, g1, g2 = self._gradient(classes, logs, p or self._pool(logs), y)
            keep = 1 - self.shrink
            w0, w1, w2 = self.weights
            self.weights = [1 + keep * (w0 + g0 - 1), keep * (w1 + g1), keep * (w2 + g2)]
        linear = self.linear
        assert linear is not None
        if self.use_linear:
            linear.learn_one(x, y, answer=False)
        else:  # its statistics and classes only
            linear._features(x, True)
            if y not in linear.classes:
                linear.classes.append(y)
        if self.window is not None:
            if v is None:
                v = self.window.vector(linear._features(x, False))
            self.window.learn_one(v, y)
