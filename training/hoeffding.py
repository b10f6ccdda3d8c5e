# mypy: disable-error-code="no-untyped-call"
# (the leaf methods called here are River's, untyped; pyproject's untyped_calls_exclude misses inherited ones)
"""River's Hoeffding tree, same results, less work per record.

A tree with naive-Bayes-adaptive leaves (River's default) runs a naive Bayes prediction twice
per labelled record: once when the record is scored and again when its label is learned (the
leaf counts which of majority class and naive Bayes would have been right). When nothing was
learned by that leaf in between (labels without delay, or a shadow learner that predicts then
learns), the second is the first again. `HoeffdingTree`'s leaves remember their last naive
Bayes prediction, keyed by the record's values and the leaf's state, and compute the Gaussian
log densities inline (the same expression as `river.proba.Gaussian.log_pdf`, in the same order,
so every vote is bit-identical; `tests/test_hoeffding.py` checks it against River).

>>> import random
>>> from river import tree
>>> rng = random.Random(0)
>>> fast, river = HoeffdingTree(grace_period=100), tree.HoeffdingTreeClassifier(grace_period=100)
>>> same = True
>>> for i in range(3000):
...     x = {"a": rng.random(), "b": rng.random()}
...     y = int(x["a"] + 0.3 * rng.random() > 0.6)
...     same &= fast.predict_proba_one(x) == river.predict_proba_one(x)
...     fast.learn_one(x, y)
...     river.learn_one(x, y)
>>> same, fast.n_nodes == river.n_nodes > 1
(True, True)
"""

from __future__ import annotations

import math
from typing import Any

from river import tree
from river.proba.gaussian import Gaussian
from river.tree.nodes.branch import DTBranch, NumericBinaryBranch
from river.tree.nodes.htc_nodes import LeafNaiveBayesAdaptive
from river.tree.split_criterion.info_gain_split_criterion import InfoGainSplitCriterion
from river.tree.splitter.gaussian_splitter import GaussianSplitter
from river.tree.utils import BranchFactory

from training.online import top

_HALF_LOG_TAU = 0.5 * math.log(math.tau)  # as river.proba.gaussian
_compiled: Any  # the per-record arithmetic compiled (training/_leaf.pyx, built by `pip install` when it can be)
try:
    from training import _leaf as _compiled
except ImportError:
    _compiled = None
_ClassRows: Any = getattr(_compiled, "ClassRows", None)  # (None: not built, or an older build)
_BRANCH_TYPES: dict[type, bool] = {}



def _is_branch(node: Any) -> bool:
    """isinstance(node, DTBranch), remembered per class (an ABC's isinstance is slow)."""
    kind = type(node)
    known = _BRANCH_TYPES.get(kind)
    if known is None:
        known = _BRANCH_TYPES[kind] = isinstance(node, DTBranch)
    return known


def naive_bayes(x: dict[Any, Any], stats: dict[Any, float], splitters: dict[Any, Any]) -> dict[Any, float]:
    """`river.tree.utils.do_naive_bayes_prediction`, with Gaussian splitters' log densities inline."""
    total_weight = sum(stats.values())
    if not stats or total_weight == 0:
        return {}
    # per feature: the class -> Gaussian map (inline) or the splitter's own method
    terms: list[tuple[Any, Any, Any]] = []
    for att_idx, obs in splitters.items():
        if att_idx in x:
            if type(obs) is GaussianSplitter:
                terms.append((x[att_idx], obs._att_dist_per_class, None))
            else:
                terms.append((x[att_idx], None, obs))
    votes: dict[Any, float] = {}
    log, inf = math.log, math.inf
    for class_index, class_weight in stats.items():
        if not class_weight > 0:
            votes[class_index] = 0.0
            continue
        vote = log(class_weight / total_weight)
        for value, dists, obs in terms:
            if dists is not None:
                dist = dists.get(class_index)
                if dist is None:
                    continue  # -inf: skipped, as River does
                if type(dist) is Gaussian:
                    var = dist._var
                    n = var.mean.n
                    if n > var.ddof:
                        variance = var._S / (n - var.ddof)
                        if variance > 0.0:
                            log_p = (value - var.mean._mean) ** 2 / (-2.0 * variance) - _HALF_LOG_TAU \
                                - 0.5 * log(variance)
                            if log_p > -inf:
                                vote += log_p
                    continue
                log_p = dist.log_pdf(value)
            else:
                method = getattr(obs, "cond_log_proba", None)
                if method is None:
                    p = obs.cond_proba(value, class_index)
                    vote += log(p) if p > 0 else 0.0
                    continue
                log_p = method(value, class_index)
            if log_p > -inf:
                vote += log_p
        votes[class_index] = vote
    return _normalised(votes)



def _normalised(votes: dict[Any, float]) -> dict[Any, float]:
    """Log votes to probabilities, as River's naive Bayes does (log-sum-exp, same operations)."""
    max_ll = max(votes.values())
    # sum(exp(v - max_ll) for v in votes.values()), the same sum, without a generator's calls
    lse = max_ll + math.log(sum(map(math.exp, map(max_ll.__rsub__, votes.values()))))
    for class_index in votes:
        votes[class_index] = math.exp(votes[class_index] - lse)
    return votes


# A class's Gaussian terms in a leaf, in the order of the leaf's splitters: feature -> (mean,
# -2 variance, half the log of the variance).
_Terms = dict[Any, tuple[float, float, float]]
_ABSENT = object()


def _gaussian_terms(splitters: dict[Any, Any], class_index: Any) -> _Terms | None:
    """What `naive_bayes` reads of each feature's Gaussian for one class, computed once while the
    class learns nothing new (None: a splitter that is not a plain Gaussian one)."""
    terms: _Terms = {}
    for att_idx, obs in splitters.items():
        if type(obs) is not GaussianSplitter:
            return None
        dist = obs._att_dist_per_class.get(class_index)
        if dist is None:
            continue  # -inf: skipped, as River does
        if type(dist) is not Gaussian:
            return None
        var = dist._var
        n = var.mean.n
        if n > var.ddof:
            variance = var._S / (n - var.ddof)
            if variance > 0.0:
                terms[att_idx] = (var.mean._mean, -2.0 * variance, 0.5 * math.log(variance))
    return terms


def _best_gaussian_split(splitter: GaussianSplitter, criterion: InfoGainSplitCriterion,
                         pre_split_dist: dict[Any, float], pre_entropy: float, att_idx: Any) -> BranchFactory:
    """`GaussianSplitter.best_evaluated_split_suggestion` under information gain, the same operations
    in the same order, with what does not change between split points read once (each class's
    Gaussian, the entropy before the split, the sums of each side)."""
    best = BranchFactory()
    split_values = splitter._split_point_suggestions()
    if not split_values:
        return best
    low, high = splitter._min_per_class, splitter._max_per_class
    classes = []
    for k, estimator in splitter._att_dist_per_class.items():
        classes.append((k, low[k], high[k], estimator.n_samples, estimator.mu, estimator.sigma))
    entropy_of = InfoGainSplitCriterion._compute_entropy_dict
    min_fraction, inf = criterion.min_branch_fraction, math.inf
    erf, sqrt2 = math.erf, math.sqrt(2.0)
    for split_value in split_values:
        lhs: dict[Any, float] = {}
        rhs: dict[Any, float] = {}
        for k, lowest, highest, n, mu, sigma in classes:  # GaussianSplitter._class_dists_from_binary_split
            if split_value < lowest:
                rhs[k] = n
            elif split_value >= highest:
                lhs[k] = n
            else:
                try:  # Gaussian.cdf, river.utils.math.norm_cdf written out
                    cdf = 0.5 * (1.0 + erf((split_value - mu) / sigma / sqrt2))
                except ZeroDivisionError:
                    cdf = 0.0
                lhs[k] = cdf * n
                rhs[k] = n - lhs[k]
        # InfoGainSplitCriterion.merit_of_split: num_subsets_greater_than_frac, then the entropies.
        left, right = sum(lhs.values()), sum(rhs.values())
        total = 0.0
        total += left
        total += right
        if not (total > 0 and left / total > min_fraction and right / total > min_fraction):
            merit = -inf
        else:
            entropy = 0.0
            entropy += left * entropy_of(lhs)
            entropy += right * entropy_of(rhs)
            merit = pre_entropy - entropy / total
        if merit > best.merit:
            best = BranchFactory(merit, att_idx, split_value, [lhs, rhs])
    return best


class _Leaf(LeafNaiveBayesAdaptive):
    """A naive-Bayes-adaptive leaf that remembers its last naive Bayes prediction, and per class
    the Gaussian terms of its naive Bayes until the class learns again."""

    _rows_of: Any = None  # (a leaf pickled before `_rows` existed reads them afresh)

    def __init__(self, stats: Any, depth: int, splitter: Any, **kwargs: Any):
        super().__init__(stats, depth, splitter, **kwargs)
        self._learned = 0  # labels learned: the memo holds only while this and the splitters are unchanged
        self._memo: tuple[dict[Any, Any], int, Any, dict[Any, float]] | None = None
        self._terms: dict[Any, _Terms | None] = {}  # per class; kept up to date as the class learns
        self._terms_of: Any = self.splitters  # the splitters the terms were read from
        # Per class: feature -> what a Gaussian splitter's update touches (the class's min and max
        # maps, its Var, Mean and ddof), read once; valid while the splitters are these.
        self._rows: dict[Any, Any] = {}  # class -> {feature: row} or, compiled, a ClassRows
        self._rows_of: Any = self.splitters

    def _naive_bayes(self, x: dict[Any, Any]) -> dict[Any, float]:
        memo = self._memo
        if memo is not None and memo[1] == self._learned and memo[2] is self.splitters and memo[0] == x:
            return memo[3]
        votes = self._votes(x)
        self._memo = (dict(x), self._learned, self.splitters, votes)
        return votes

    def _votes(self, x: dict[Any, Any]) -> dict[Any, float]:
        """`naive_bayes(x, self.stats, self.splitters)`, the same operations in the same order,
        with each class's Gaussian terms read once while the class learns nothing."""
        stats, splitters = self.stats, self.splitters
        if _compiled is not None and type(x) is dict and type(stats) is dict:
            if self._terms_of is not splitters:
                self._terms, self._terms_of = {}, splitters
            # Compiled: all of it while every class's terms are cached and x has every feature.
            compiled: dict[Any, float] | None = _compiled.votes(stats, self._terms, x, _HALF_LOG_TAU)
            if compiled is not None:
                return compiled
        self._flush()  # River's Gaussians are read below
        total_weight = sum(stats.values())
        if not stats or total_weight == 0:
            return {}
        if self._terms_of is not splitters:
            self._terms, self._terms_of = {}, splitters
        cache = self._terms
        votes: dict[Any, float] = {}
        log, inf, half_log_tau, get = math.log, math.inf, _HALF_LOG_TAU, x.get
        class_vote = _compiled.class_vote if _compiled is not None and type(x) is dict else None
        for class_index, class_weight in stats.items():
            if not class_weight > 0:
                votes[class_index] = 0.0
                continue
            terms: Any = cache.get(class_index, _ABSENT)
            if terms is _ABSENT:
                terms = cache[class_index] = _gaussian_terms(splitters, class_index)
            if terms is None:
                return naive_bayes(x, stats, splitters)
            vote = log(class_weight / total_weight)
            try:  # x has every feature (the common case): subscripts, no `get` calls
                if class_vote is not None:  # compiled: the loop below, the same operations
                    vote = class_vote(vote, terms, x, half_log_tau)
                else:
                    for att_idx, (mean, minus_two_variance, half_log_variance) in terms.items():
                        log_p = (x[att_idx] - mean) ** 2 / minus_two_variance - half_log_tau - half_log_variance
                        if log_p > -inf:
                            vote += log_p
            except KeyError:  # a feature missing: the class's vote again, skipping it
                vote = log(class_weight / total_weight)
                for att_idx, (mean, minus_two_variance, half_log_variance) in terms.items():
                    value = get(att_idx, _ABSENT)
                    if value is _ABSENT:
                        continue
                    log_p = (value - mean) ** 2 / minus_two_variance - half_log_tau - half_log_variance
                    if log_p > -inf:
                        vote += log_p
            votes[class_index] = vote
        return _normalised(votes)

    def learn_one(self, x: dict[Any, Any], y: Any, *, w: float = 1.0, tree: Any = None) -> None:
        # LeafNaiveBayesAdaptive.learn_one, with the majority class's arg max read from the counts
        # (the normalised copy River makes has the same arg max) and the memoised naive Bayes;
        # then HTLeaf.learn_one written out (update_stats, then the splitters while active).
        stats = self.stats
        active = self.splitters is not None
        if active:
            if len(stats) == 0 or top(stats) == y:
                self._mc_correct_weight += w
            nb_pred = self._naive_bayes(x)
            if len(nb_pred) > 0 and top(nb_pred) == y:
                self._nb_correct_weight += w
        try:
            stats[y] += w
        except KeyError:
            stats[y] = w
        if active:
            self.update_splitters(x, y, w, tree.nominal_attributes)
        self._learned += 1

    def update_splitters(self, x: dict[Any, Any], y: Any, w: float, nominal_attributes: Any) -> None:
        # HTLeaf.update_splitters, with a Gaussian splitter's update inline (GaussianSplitter.update,
        # Gaussian.update, Var.update, Mean.update: the same operations in the same order; a
        # Gaussian makes its own Var and Mean). What each feature's update touches is kept per
        # class (`_rows`) once its Gaussian exists; features are independent, so a row per feature
        # changes nothing of the order that matters. Compiled, the rows are a `ClassRows` holding the
        # sums themselves (River's objects are brought up to date by `_flush` before they are read).
        splitters = self.splitters
        if self._rows_of is not splitters:
            self._rows, self._rows_of = {}, splitters
        rows: Any = self._rows.get(y)
        if rows is None:
            rows = self._rows[y] = {} if _ClassRows is None else _ClassRows(y)
        # Class y's naive Bayes terms follow its Gaussians; a term that appears or goes, or another
        # kind of update, drops them (read again, in the splitters' order, when next needed).
        terms = self._terms.get(y) if self._terms_of is splitters else None
        log = math.log
        items: Any = x.items()
        compiled = type(rows) is not dict
        if compiled and type(w) is float and type(x) is dict:
            # Compiled: the loop below for each float value with a slot; the other features, after.
            rest, keep = rows.update(x, w, terms)
            if not keep and terms is not None:
                terms = None
                del self._terms[y]
            items = [(att_id, x[att_id]) for att_id in rest] if rest else ()
        for att_id, att_val in items:
            row = rows.get(att_id)  # (a ClassRows writes the slot back to River's objects first)
            if row is None or att_val is None:
                if self._update_one(att_id, att_val, y, w, nominal_attributes, rows) and terms is not None:
                    terms = None
                    del self._terms[y]
                continue
            low, high, var, mean, ddof = row
            if att_val < low[y]:
                low[y] = att_val
            if att_val > high[y]:
                high[y] = att_val
            n = mean.n + w
            mean.n = n
            mean_old = mean._mean
            mean_new = mean._mean = mean_old + (w / n) * (att_val - mean_old)
            var._S += w * (att_val - mean_old) * (att_val - mean_new)
            if compiled:
                rows.reload(att_id)
            if terms is not None:
                variance = var._S / (n - ddof) if n > ddof else 0.0
                if variance > 0.0 and att_id in terms:
                    terms[att_id] = (mean_new, -2.0 * variance, 0.5 * log(variance))
                else:
                    terms = None
                    del self._terms[y]

    def _flush(self) -> None:
        """Bring River's Gaussian objects up to date with the compiled rows (before River code or
        `_gaussian_terms` reads them)."""
        if _ClassRows is not None and self._rows_of is self.splitters:
            for rows in self._rows.values():
                if type(rows) is not dict:  # (a leaf pickled by an older version holds dicts)
                    rows.flush()

    def __getstate__(self) -> dict[str, Any]:
        self._flush()
        state = self.__dict__.copy()
        state["_rows"] = {}  # read afresh from River's objects (a compiled row is not picklable)
        return state

    def _update_one(self, att_id: Any, att_val: Any, y: Any, w: float, nominal_attributes: Any,
                    rows: Any) -> bool:
        """One feature's update the rows do not cover (a disabled feature, a new splitter, a missing
        value, a class new to the splitter, another kind of splitter). Returns whether class y's
        naive Bayes terms must be dropped (any update but a Gaussian's own)."""
        disabled = self._disabled_attrs
        if disabled and att_id in disabled:
            return False
        splitter = self.splitters.get(att_id)
        if splitter is None:
            super().update_splitters({att_id: att_val}, y, w, nominal_attributes)  # a new splitter
            return True
        splitter.update(att_val, y, w)
        if type(splitter) is GaussianSplitter and att_val is not None:
            dist = splitter._att_dist_per_class.get(y)
            if type(dist) is Gaussian:
                var = dist._var
                rows[att_id] = (splitter._min_per_class, splitter._max_per_class, var, var.mean, var.ddof)
        return True

    def best_split_suggestions(self, criterion: Any, tree: Any) -> list[BranchFactory]:
        # LeafMajorityClass.best_split_suggestions and HTLeaf's, with `_best_gaussian_split`.
        maj_class = max(self.stats.values())
        if maj_class and maj_class / self.total_weight > tree.max_share_to_split:
            return [BranchFactory()]
        suggestions = [BranchFactory()] if tree.merit_preprune else []
        pre_split_dist = self.stats
        self._flush()
        fast = type(criterion) is InfoGainSplitCriterion
        pre_entropy = criterion.compute_entropy(pre_split_dist) if fast else 0.0
        for att_id, splitter in self.splitters.items():
            if fast and type(splitter) is GaussianSplitter:
                suggestions.append(_best_gaussian_split(splitter, criterion, pre_split_dist, pre_entropy, att_id))
            else:
                suggestions.append(splitter.best_evaluated_split_suggestion(criterion, pre_split_dist, att_id,
                                                                            tree.binary_split))
        return suggestions

    def disable_attribute(self, att_id: Any) -> None:
        self._flush()
        super().disable_attribute(att_id)
        self._terms = {}
        self._rows = {}

    def prediction(self, x: dict[Any, Any], *, tree: Any = None) -> dict[Any, float]:
        splitters: Any = self.splitters  # None once deactivated
        if splitters is not None and self._nb_correct_weight >= self._mc_correct_weight:  # is_active()
            return self._naive_bayes(x)
        result: dict[Any, float] = super(LeafNaiveBayesAdaptive, self).prediction(x)
        return result


class HoeffdingTree(tree.HoeffdingTreeClassifier):
    """`river.tree.HoeffdingTreeClassifier` with cheaper naive-Bayes-adaptive leaves (see the module),
    and a record's path down the tree found by a loop instead of River's chain of generators."""

    _sorted_classes: tuple[int, list[Any]] = (0, [])  # (how many classes, them sorted): the set only grows

    def _leaf_of(self, x: dict[Any, Any]) -> Any:
        """`Branch.traverse(x, until_leaf=True)` from the root: a branch whose feature `x` lacks
        (or whose value it has not seen) sends it down its most travelled path."""
        node: Any = self._root
        while True:
            if type(node) is NumericBinaryBranch:  # NumericBinaryBranch.next, written out
                feature = node.feature
                if feature in x:
                    node = node.children[0 if x[feature] <= node.threshold else 1]
                    continue
            elif type(node) is _Leaf or not _is_branch(node):
                return node
            try:
                node = node.next(x)
            except KeyError:
                _, node = node.most_common_path()

    def predict_proba_one(self, x: dict[Any, Any], **kwargs: Any) -> dict[Any, float]:
        # HoeffdingTreeClassifier.predict_proba_one with the sorted classes kept and the loop above.
        count, ordered = self._sorted_classes
        if count != len(self.classes):
            ordered = sorted(self.classes)
            self._sorted_classes = (len(ordered), ordered)
        proba = dict.fromkeys(ordered, 0.0)
        if self._root is not None:
            proba.update(self._leaf_of(x).prediction(x, tree=self))
        return proba

    def learn_one(self, x: dict[Any, Any], y: Any, *, w: float = 1.0) -> None:
        # HoeffdingTreeClassifier.learn_one, with the walk to the leaf as a loop: River's
        # `walk(x, until_leaf=False)` stops at a branch whose feature `x` lacks; that case and the
        # tree's bookkeeping are River's own code (`super().learn_one` on a copy of the path would
        # walk twice), so only the common path is written out here.
        root: Any = self._root  # River types its nodes loosely
        if root is None or type(root) is _Leaf or not _is_branch(root):
            super().learn_one(x, y, w=w)
            return
        parent: Any = None
        node: Any = root
        while True:
            if type(node) is NumericBinaryBranch:  # NumericBinaryBranch.next, written out
                feature = node.feature
                if feature not in x:
                    break
                parent, node = node, node.children[0 if x[feature] <= node.threshold else 1]
                continue
            if type(node) is _Leaf or not _is_branch(node):
                break
            try:
                child = node.next(x)
            except KeyError:
                break
            parent, node = node, child
        ours = type(node) is _Leaf  # its properties are read directly (same values, fewer calls)
        if not ours and _is_branch(node):  # a feature missing or a value unseen: River's handling
            super().learn_one(x, y, w=w)
            return
        self.classes.add(y)
        self._train_weight_seen_by_model += w
        node.learn_one(x, y, w=w, tree=self)
        if self._growth_allowed and (node.splitters is not None if ours else node.is_active()):
            if node.depth >= self.max_depth:  # Max depth reached
                node.deactivate()
                self._n_active_leaves -= 1
                self._n_inactive_leaves += 1
            else:
                # total_weight and last_split_attempt_at, River's properties
                weight_seen = sum(node.stats.values()) if ours else node.total_weight
                last = node._last_split_attempt_at if ours else node.last_split_attempt_at
                if weight_seen - last >= self.grace_period:
                    p_branch: Any = parent.branch_no(x) if _is_branch(parent) else None
                    self._attempt_to_split(node, parent, p_branch)
                    node.last_split_attempt_at = weight_seen
        if self._train_weight_seen_by_model % self.memory_estimate_period == 0:
            self._estimate_model_size()

    def _new_leaf(self, initial_stats: Any = None, parent: Any = None) -> Any:
        if self._leaf_prediction != self._NAIVE_BAYES_ADAPTIVE:
            return super()._new_leaf(initial_stats, parent)
        return _Leaf({} if initial_stats is None else initial_stats, 0 if parent is None else parent.depth + 1,
                     self.splitter)
