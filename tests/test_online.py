"""The renewing online learner (`training.online.Renewing`): pure, no broker."""

import math
import pickle
import random
from functools import partial

from river import tree

from drift.arbiter import ServingRule
from training.online import Renewing
from training.recipes import make_online_learner


def stream(n, concept, rng, *, x_range=(0.0, 1.0)):
    for _ in range(n):
        x = {"a": rng.uniform(*x_range), "b": rng.random(), "c": rng.random()}
        yield x, concept(x)


def prequential(learner, data, *, delay=0):
    """Accuracy of `learner` scoring then learning `data` (labels `delay` records late)."""
    data = list(data)
    right = []
    for t, (x, y) in enumerate(data):
        right.append(learner.predict_one(x) == y)
        if t >= delay:
            learner.learn_one(*data[t - delay])
    return right


def first(x):
    return int(x["a"] > 0.5)


def second(x):
    return int(x["b"] + x["c"] > 1.0)


def test_recovers_from_an_abrupt_change_where_a_plain_tree_does_not():
    rng = random.Random(0)
    data = [*stream(4000, first, rng), *stream(4000, second, rng)]
    plain = prequential(tree.HoeffdingTreeClassifier(grace_period=100), data)
    renewing = Renewing(partial(tree.HoeffdingTreeClassifier, grace_period=100))
    renewed = prequential(renewing, data)
    after = slice(5000, 8000)
    assert renewing.renewals >= 1
    assert sum(renewed[after]) / 3000 > sum(plain[after]) / 3000 + 0.05
    assert sum(renewed[after]) / 3000 > 0.9


def test_a_stationary_stream_never_renews():
    rng = random.Random(1)
    noisy = lambda x: int(x["a"] > 0.5) if rng.random() < 0.8 else int(rng.random() < 0.5)  # noqa: E731
    learner = Renewing(partial(tree.HoeffdingTreeClassifier, grace_period=100))
    prequential(learner, stream(20_000, noisy, rng), delay=500)
    assert learner.renewals == 0


def test_late_labels_of_a_renewed_learner_are_not_its_own():
    """With labels 500 records late, the predictions waiting for labels at a renewal were the old
    tree's: `fresh` tells the caller to skip them, and they do not start a new shadow at once."""
    rng = random.Random(2)
    data = [*stream(4000, first, rng), *stream(6000, second, rng)]
    learner = Renewing(partial(tree.HoeffdingTreeClassifier, grace_period=100))
    fresh_after_renewal = []
    right = []
    for t, (x, y) in enumerate(data):
        right.append(learner.predict_one(x) == y)
        if t >= 500:
            before = learner.renewals
            learner.learn_one(*data[t - 500])
            if learner.renewals == before == 1:
                fresh_after_renewal.append(learner.fresh)
    assert learner.renewals == 1
    assert not all(fresh_after_renewal) and fresh_after_renewal[-1]
    assert sum(right[7000:]) / 3000 > 0.9


def test_checkpoint_round_trip_keeps_the_learner_not_the_identities():
    learner = make_online_learner(0, "renewing-hoeffding-tree")
    rng = random.Random(3)
    for x, y in stream(500, first, rng):
        learner.predict_one(x)
        learner.learn_one(x, y)
    copy = pickle.loads(pickle.dumps(learner))
    x = {"a": 0.9, "b": 0.1, "c": 0.1}
    assert copy.predict_proba_one(x) == learner.predict_proba_one(x)
    assert copy._scored.keys() == {id(x)}  # only what it scored since


def test_the_serving_rule_starts_a_renewed_learner_from_its_own_accuracy():
    rule = ServingRule(halflife=50)
    for _ in range(300):
        rule.update(False, False, False)  # after a change: every source wrong
    rule.update(False, None, None)  # a late label of a prediction made before the renewal: skipped
    assert rule.recent["online"] < 0.01
    rule.on_online(0.95)
    assert rule.serving == "online"


def test_an_eager_young_tree_splits_sooner_then_matures():
    """`Maturing` (the eager tree): ARF's member-tree split settings for its first labels, then the
    plain tree's; it keeps them across a checkpoint."""
    rng = random.Random(4)
    data = list(stream(1500, first, rng))
    eager, plain = make_online_learner(0, "eager-hoeffding-tree"), make_online_learner(0, "hoeffding-tree")
    prequential(eager, data[:75]), prequential(plain, data[:75])
    assert eager.tree.n_nodes > plain.n_nodes == 1  # split at 50 labels; the plain tree tries first at 100
    assert (eager.tree.grace_period, eager.tree.delta) == (50, 0.01)
    prequential(eager, data[75:])
    assert (eager.tree.grace_period, eager.tree.delta) == (plain.grace_period, plain.delta)
    copy = pickle.loads(pickle.dumps(eager))
    x = {"a": 0.2, "b": 0.9, "c": 0.6}
    assert copy.predict_proba_one(x) == eager.predict_proba_one(x) and copy.seen == eager.seen


def test_renewing_eager_starts_plain_and_renews_with_an_eager_tree():
    rng = random.Random(0)
    data = [*stream(4000, first, rng), *stream(4000, second, rng)]
    eager = make_online_learner(0, "renewing-eager-hoeffding-tree")
    plain = make_online_learner(0, "renewing-hoeffding-tree")
    eager_right, plain_right = prequential(eager, data), prequential(plain, data)
    assert eager_right[:4000] == plain_right[:4000]  # the same first tree, bit for bit
    assert eager.renewals >= 1 and type(eager.main).__name__ == "Maturing"
    assert sum(eager_right[5000:]) / 3000 > 0.85  # (a young eager tree is not always better: 0.86 vs 0.90 here)


def test_contending_eager_has_an_eager_shadow_from_the_first_label():
    learner = make_online_learner(0, "contending-eager-hoeffding-tree")
    assert type(learner.shadow).__name__ == "Maturing" and learner.renewals == 0
    rng = random.Random(5)
    prequential(learner, stream(300, first, rng))
    assert (learner.renewals, learner.shadow_seen) == (0, 300)  # it learned every label beside the main tree


def sloped(x):
    return int(x["a"] + x["b"] + x["c"] > 1.5)


def test_a_quick_renewing_tree_keeps_splitting_as_arf_members_do():
    """renewing-quick-hoeffding-tree: every tree (not only a young one) tries a split every 50 labels
    at confidence 0.99, and a renewal makes another such tree."""
    rng = random.Random(6)
    data = [*stream(3000, first, rng), *stream(3000, second, rng)]
    quick = make_online_learner(0, "renewing-quick-hoeffding-tree")
    prequential(quick, data)
    assert quick.renewals >= 1
    assert (quick.main.grace_period, quick.main.delta) == (50, 0.01)


def test_the_linear_partner_serves_where_the_boundary_slopes_and_survives_a_checkpoint():
    rng = random.Random(7)
    data = list(stream(6000, sloped, rng))
    tree_only = make_online_learner(0, "renewing-hoeffding-tree")
    with_linear = make_online_learner(0, "renewing-tree-linear")
    tree_right, both_right = prequential(tree_only, data), prequential(with_linear, data)
    assert sum(both_right[2000:]) > sum(tree_right[2000:]) + 100  # the tree approximates the slope in steps
    assert with_linear.linear_accuracy > with_linear.inner.fast and with_linear.accuracy > 0.95
    copy = pickle.loads(pickle.dumps(with_linear))
    x = {"a": 0.6, "b": 0.4, "c": 0.1}
    assert copy.predict_proba_one(x) == with_linear.predict_proba_one(x)
    assert copy.renewals == with_linear.renewals


def test_the_tree_serves_where_the_linear_model_cannot():
    rng = random.Random(8)
    band = list(stream(4000, lambda x: int(0.3 < x["a"] < 0.7), rng))
    learner = make_online_learner(0, "renewing-tree-linear")
    right = prequential(learner, band)
    assert learner.inner.fast > learner.linear_accuracy and sum(right[2000:]) / 2000 > 0.9


def test_linear_learns_several_classes_and_text():
    from training.online import Linear

    rng = random.Random(9)
    model = Linear()
    right = []
    for _ in range(3000):
        x = {"a": rng.random(), "colour": rng.choice(["red", "blue"])}
        high = "high-red" if x["colour"] == "red" else "high-blue"
        y = "low" if x["a"] < 0.33 else "mid" if x["a"] < 0.66 else high
        right.append(model.learn_one(x, y) == y)
    assert sorted(model.classes) == ["high-blue", "high-red", "low", "mid"]
    assert sum(right[2000:]) / 1000 > 0.7
    assert model.predict_one({"a": 0.1, "colour": "red"}) == "low"


def test_the_compiled_linear_arithmetic_is_the_python_arithmetic():
    import training.online as online

    if online._compiled is None:
        return  # not built: only the Python path runs
    rng = random.Random(10)
    data = [({"a": rng.gauss(0, 3), "b": rng.randint(0, 9), "c": rng.choice(["x", "y"])},
             rng.choice("pqr")) for _ in range(500)]
    models = []
    for compiled in (online._compiled, None):
        saved, online._compiled = online._compiled, compiled
        saved_pooled, online._pooled = online._pooled, compiled and online._pooled
        try:
            model = online.Linear()
            predictions = [(model.predict_proba_one(x), model.learn_one(x, y)) for x, y in data]
        finally:
            online._compiled, online._pooled = saved, saved_pooled
        models.append((predictions, model.weights, model.bias, model.stats))
    assert models[0] == models[1]


def test_the_pool_weights_the_linear_model_where_the_boundary_slopes_and_survives_a_checkpoint():
    rng = random.Random(11)
    data = list(stream(6000, sloped, rng))
    tree_only = make_online_learner(0, "renewing-hoeffding-tree")
    pooled = make_online_learner(0, "renewing-tree-pool")
    tree_right, pooled_right = prequential(tree_only, data), prequential(pooled, data)
    assert sum(pooled_right[2000:]) > sum(tree_right[2000:]) + 50  # the tree approximates the slope in steps
    assert pooled.weights[1] > 0.3 and not pooled.use_window
    copy = pickle.loads(pickle.dumps(pooled))
    x = {"a": 0.6, "b": 0.4, "c": 0.1}
    assert copy.predict_proba_one(x) == pooled.predict_proba_one(x)
    assert (copy.renewals, copy.accuracy) == (pooled.renewals, pooled.inner.accuracy)


def test_the_pool_stays_with_the_tree_where_the_linear_model_cannot_learn():
    rng = random.Random(12)
    band = list(stream(4000, lambda x: int(0.3 < x["a"] < 0.7), rng))
    pooled = make_online_learner(0, "renewing-tree-pool")
    right = prequential(pooled, band)
    assert pooled.weights[0] > 0.8 and abs(pooled.weights[1]) < 0.2 and sum(right[2000:]) / 2000 > 0.9


def test_the_window_follows_a_concept_that_moves_a_little_at_a_time():
    """A boundary that turns slowly: the renewing tree keeps its old splits (no abrupt loss to warn
    of), the nearest-neighbour window holds only recent records, and the pool learns to lean on it."""
    rng = random.Random(13)
    data = []
    for i in range(8000):
        x = {"a": rng.random() - 0.5, "b": rng.random() - 0.5}
        angle = 4 * math.pi * i / 8000  # two turns over the stream
        data.append((x, int(x["a"] * math.cos(angle) + x["b"] * math.sin(angle) > 0)))
    tree_right = prequential(make_online_learner(0, "renewing-hoeffding-tree"), data)
    pooled = make_online_learner(0, "renewing-tree-pool-window")
    pooled_right = prequential(pooled, data)
    assert sum(pooled_right[4000:]) > sum(tree_right[4000:]) + 150  # 3,481 of 4,000 against 3,281
    assert pooled.weights[2] > 0.5


def test_the_compiled_window_search_is_the_python_search():
    import training.online as online

    if online._nearest is None:
        return  # not built: only the Python path runs
    rng = random.Random(14)
    window = online.Window(size=50, k=5)
    for _ in range(300):  # features come and go: columns are added as the window runs
        z = [(f"f{j}", rng.choice([0.0, 1.0, rng.gauss(0, 1)])) for j in range(rng.randint(2, 4))]
        v = window.vector(z)
        compiled = window.nearest(v)
        saved, online._nearest = online._nearest, None
        try:
            assert window.nearest(v) == compiled
        finally:
            online._nearest = saved
        window.learn_one(v, rng.randint(0, 2))
    assert window.width == 4 and len(compiled) == 5


def _pool_data(seed=15, n=3000):
    """Three classes, text (a text feature that appears late with new values), a feature that appears late
    (and is then sometimes missing), and a concept change at 2,000."""
    rng = random.Random(seed)
    data = []
    for i in range(n):
        x = {"a": rng.gauss(0, 1), "b": rng.random(), "c": rng.choice(["u", "v"])}
        if i > 1500 and i % 11:
            x["d"] = rng.random()
        if i > 2500:
            x["e"] = rng.choice(["s", "t", "w"])
        data.append((x, "pqr"[int(x["a"] > 0) + int(x["b"] > 0.7 if i < 2000 else x["b"] < 0.3)]))
    return data


def _run_pool(kind, data, *, core, pooled, reload_with="same", at=2200, delay=50):
    """The pool on `data`, labels `delay` late, every 7th record learned without being scored, a checkpoint
    round trip through serving.checkpoint at `at` (loaded with the compiled core `reload_with`, if given)."""
    import tempfile
    from pathlib import Path

    import training.online as online
    from serving import checkpoint

    saved = online._core, online._pooled
    online._core, online._pooled = core, pooled
    try:
        learner = make_online_learner(0, kind)
        served, guard_served_tree = [], 0
        for t, (x, _) in enumerate(data):
            if t == at:
                path = Path(tempfile.mkdtemp()) / "ckpt"
                checkpoint.save(path, checkpoint.Checkpoint(learner, t))
                if reload_with != "same":
                    online._core = reload_with
                loaded = checkpoint.load(path)
                assert loaded is not None
                learner = loaded.learner
            if t % 7:
                guard_served_tree += learner.pool_fast < learner.tree_fast
                served.append(learner.predict_proba_one(x))
            if t >= delay:
                learner.learn_one(*data[t - delay])
        linear, window = learner.reference()
    finally:
        online._core, online._pooled = saved
    weights = {c: {k: w for k, w in ws.items() if w != 0.0} for c, ws in linear.weights.items()}
    state = (linear.n, linear.stats, linear.classes, weights, linear.bias,
             window and (window.columns, window.width, list(window.points), window.labels, window.n))
    return served, learner.weights, learner.pool_fast, learner.tree_fast, state, guard_served_tree


def test_the_compiled_pool_is_the_python_pool():
    """Pooled's arithmetic compiled (one core object for the linear model and the window, and the helpers the
    Python objects call): the same probabilities, weights, guard accuracies and linear and window state, with
    three classes, text, a feature that appears late, labels late, records learned unscored, the guard
    switching and a checkpoint round trip (a checkpoint of the core loads as the Python objects and back)."""
    import training.online as online

    if online._core is None:
        return  # not built: only the Python path runs
    data = _pool_data()
    for kind in ("renewing-tree-pool-window", "renewing-tree-pool"):
        core = _run_pool(kind, data, core=online._core, pooled=online._pooled)
        assert core == _run_pool(kind, data, core=None, pooled=online._pooled)  # main's path (the helpers)
        assert core == _run_pool(kind, data, core=None, pooled=None)  # the Python path
        assert core == _run_pool(kind, data, core=online._core, pooled=online._pooled, reload_with=None)
        assert core == _run_pool(kind, data, core=None, pooled=online._pooled, reload_with=online._core)
        served, _, _, _, (_, stats, classes, weights, _, window), guard_served_tree = core
        assert 100 < guard_served_tree < len(served) - 100  # the guard served the tree, and the pool served
        assert classes == ["p", "q", "r"] and "d" in stats and ("e", "w") in weights["r"]
        assert window is None if kind == "renewing-tree-pool" else ("e", "w") in window[0] and window[1] == 8


def test_the_pool_serves_the_tree_while_the_tree_was_right_more_often_at_the_labels_delay():
    """The guard judges the pool and the tree by what each gave when a record was scored (labels 300 late
    here), and serves the tree alone while the pool's recent accuracy is below the tree's."""
    rng = random.Random(17)
    data = list(stream(3000, sloped, rng))
    pooled = make_online_learner(0, "renewing-tree-pool-window")
    prequential(pooled, data, delay=300)
    x = {"a": 0.6, "b": 0.4, "c": 0.1}
    assert 0.9 < pooled.tree_fast < 1 and 0.9 < pooled.pool_fast < 1
    pooled.pool_fast = pooled.tree_fast + 0.01
    assert pooled.predict_proba_one(x) != pooled.inner.predict_proba_one(x)  # the pool serves
    pooled.pool_fast = pooled.tree_fast - 0.01
    assert pooled.predict_proba_one(x) == pooled.inner.predict_proba_one(x)
    tree_fast = pooled.tree_fast
    pooled.learn_one(x, sloped(x))  # scored just above: both trackers learn
    assert pooled.tree_fast != tree_fast
    unguarded = make_online_learner(0, "renewing-tree-pool-window")
    unguarded.guard_alpha = 0.0
    unguarded.pool_fast = unguarded.tree_fast - 0.5
    prequential(unguarded, data[:2500])
    assert unguarded.predict_proba_one(x) != unguarded.inner.predict_proba_one(x)


def test_the_eager_pool_renews_with_eagerly_growing_trees_and_starts_with_a_plain_one():
    from training.hoeffding import HoeffdingTree
    from training.online import Maturing, Pooled

    eager = make_online_learner(0, "renewing-eager-tree-pool-window")
    plain = make_online_learner(0, "renewing-tree-pool-window")
    assert isinstance(eager, Pooled) and isinstance(plain, Pooled) and eager.use_window
    assert isinstance(eager.inner.main, HoeffdingTree) and isinstance(eager.inner.make_shadow(), Maturing)
    assert not isinstance(plain.inner.make_shadow(), Maturing)
