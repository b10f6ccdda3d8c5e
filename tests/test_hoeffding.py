"""training.hoeffding.HoeffdingTree gives exactly River's Hoeffding tree's predictions."""

import random

import pytest
from river import tree

import training.hoeffding
from training.hoeffding import HoeffdingTree, naive_bayes


@pytest.fixture(autouse=True, params=["compiled", "python"])
def arithmetic(request, monkeypatch):
    """Every test runs on the compiled leaf arithmetic (training/_leaf.pyx, when built) and on Python's."""
    if request.param == "python":
        monkeypatch.setattr(training.hoeffding, "_compiled", None)
        monkeypatch.setattr(training.hoeffding, "_ClassRows", None)
    elif training.hoeffding._compiled is None or training.hoeffding._ClassRows is None:
        pytest.fail("training._leaf is not built: `make install` builds it (pip install -e . with a C compiler)")
    return request.param


def _stream(seed: int, n: int, *, categorical: bool, classes: int):
    rng = random.Random(seed)
    for i in range(n):
        x = {"a": rng.gauss(0, 1), "b": rng.random(), "c": rng.expovariate(1.0)}
        if categorical:
            x["colour"] = rng.choice("rgbk")
        if rng.random() < 0.05:
            del x["b"]  # a missing value
        shift = 0.0 if i < n // 2 else 1.0  # the concept changes half way
        score = x["a"] + shift * x["c"] + (0.5 if x.get("colour") == "r" else 0.0) + 0.3 * rng.gauss(0, 1)
        y = min(classes - 1, max(0, int((score + 1.5) * classes / 4)))
        yield x, y


@pytest.mark.parametrize("delay", [0, 1, 50])
@pytest.mark.parametrize("categorical,classes", [(False, 2), (True, 3)])
def test_the_same_predictions_as_rivers_tree(delay, categorical, classes):
    fast = HoeffdingTree(grace_period=50)
    river = tree.HoeffdingTreeClassifier(grace_period=50)
    pending = []
    for x, y in _stream(delay + classes, 4000, categorical=categorical, classes=classes):
        assert fast.predict_proba_one(x) == river.predict_proba_one(x)
        pending.append((x, y))
        if len(pending) > delay:
            old_x, old_y = pending.pop(0)
            fast.learn_one(old_x, old_y)
            river.learn_one(old_x, old_y)
    assert fast.n_nodes == river.n_nodes > 3  # it grew, the same tree


def test_a_record_changed_in_place_is_not_served_from_the_memo():
    fast, river = HoeffdingTree(grace_period=20), tree.HoeffdingTreeClassifier(grace_period=20)
    for x, y in _stream(1, 500, categorical=False, classes=2):
        fast.learn_one(x, y)
        river.learn_one(x, y)
    x = {"a": 0.1, "b": 0.5, "c": 1.0}
    assert fast.predict_proba_one(x) == river.predict_proba_one(x)
    x["a"] = 2.5  # the caller reuses its dict
    assert fast.predict_proba_one(x) == river.predict_proba_one(x)


def test_naive_bayes_matches_river_on_every_leaf():
    from river.tree.utils import do_naive_bayes_prediction

    river = tree.HoeffdingTreeClassifier(grace_period=50)
    stream = list(_stream(3, 3000, categorical=True, classes=3))
    for x, y in stream:
        river.learn_one(x, y)
    leaves = [leaf for leaf in river._root.iter_leaves() if leaf.is_active()]
    assert leaves
    for leaf in leaves:
        for x, _ in stream[:200]:
            assert naive_bayes(x, leaf.stats, leaf.splitters) == do_naive_bayes_prediction(x, leaf.stats,
                                                                                          leaf.splitters)


def test_a_leaf_that_learned_computes_again():
    fast, river = HoeffdingTree(grace_period=1000), tree.HoeffdingTreeClassifier(grace_period=1000)
    x = {"a": 0.3, "b": 0.2}
    for i in range(50):
        assert fast.predict_proba_one(x) == river.predict_proba_one(x)
        fast.learn_one(x, i % 3 == 0)  # the same record, learned again and again
        river.learn_one(x, i % 3 == 0)
        assert fast.predict_proba_one(x) == river.predict_proba_one(x)


def _awkward_stream(seed: int, n: int):
    """Split features often missing and categories first seen late: the paths where a record cannot
    follow a branch (River sends it down the most travelled path, or grows a new branch)."""
    rng = random.Random(seed)
    for i in range(n):
        x = {"a": rng.gauss(0, 1), "b": rng.random(), "colour": rng.choice("rgb" if i < n // 2 else "rgbkw")}
        if rng.random() < 0.3:
            del x["a"]
        y = int(x.get("a", 0.0) + (1.0 if x["colour"] in "rk" else 0.0) + 0.5 * rng.gauss(0, 1) > 0.5)
        yield x, y


@pytest.mark.parametrize("options", [{}, {"remove_poor_attrs": True}, {"max_depth": 2},
                                     {"binary_split": True}, {"split_criterion": "gini"}])
def test_the_same_tree_on_missing_features_and_new_categories(options):
    fast = HoeffdingTree(grace_period=30, **options)
    river = tree.HoeffdingTreeClassifier(grace_period=30, **options)
    for x, y in _awkward_stream(7, 4000):
        assert fast.predict_proba_one(x) == river.predict_proba_one(x)
        fast.learn_one(x, y)
        river.learn_one(x, y)
    assert fast.n_nodes == river.n_nodes >= 3  # it split


def _gaussians(model) -> list:
    """Every active leaf's Gaussian state as River holds it: per feature and class n, mean, S, min, max."""
    out = []
    for leaf in model._root.iter_leaves():
        if getattr(leaf, "_flush", None):
            leaf._flush()
        for att, splitter in (leaf.splitters or {}).items():
            for k, dist in getattr(splitter, "_att_dist_per_class", {}).items():
                var = dist._var
                out.append((att, k, var.mean.n, var.mean._mean, var._S, splitter._min_per_class[k],
                            splitter._max_per_class[k], type(splitter._min_per_class[k])))
    return out


def test_the_leaf_sums_are_rivers_with_int_values_weights_and_a_pickle_midway():
    """The compiled rows hold the sums between flushes: River's objects read afterwards (a split attempt,
    a pickle) are River's own, also for int and bool values, int weights and NaN."""
    import pickle

    rng = random.Random(11)
    fast, river = HoeffdingTree(grace_period=40), tree.HoeffdingTreeClassifier(grace_period=40)
    for i in range(3000):
        x = {"a": rng.gauss(0, 1), "n": rng.randint(0, 9), "b": rng.random() < 0.5, "c": rng.random()}
        if i % 97 == 0:
            x["n"] = float(x["n"])  # the same feature, sometimes a float
        if i % 503 == 0:
            x["c"] = float("nan")
        y = int(x["a"] + 0.1 * x["n"] + 0.3 * rng.gauss(0, 1) > 0.5)
        w = 2 if i % 11 == 0 else 1.0
        assert fast.predict_proba_one(x) == river.predict_proba_one(x)
        fast.learn_one(x, y, w=w)
        river.learn_one(x, y, w=w)
        if i == 1500:  # a pickled copy goes on from River's objects
            fast = pickle.loads(pickle.dumps(fast))
            assert repr(_gaussians(fast)) == repr(_gaussians(river))
    assert fast.n_nodes == river.n_nodes >= 3
    assert repr(_gaussians(fast)) == repr(_gaussians(river))  # repr: NaN equals itself


def test_split_suggestions_match_rivers_on_every_leaf():
    from river.tree.nodes.htc_nodes import LeafMajorityClass

    grown = tree.HoeffdingTreeClassifier(grace_period=10 ** 9)  # never splits: a leaf that has seen a lot
    fast_tree = HoeffdingTree(grace_period=10 ** 9)
    for x, y in _stream(5, 3000, categorical=True, classes=3):
        grown.learn_one(x, y)
        fast_tree.learn_one(x, y)
    criterion = grown._new_split_criterion()
    mine = fast_tree._root.best_split_suggestions(criterion, fast_tree)
    rivers = LeafMajorityClass.best_split_suggestions(grown._root, criterion, grown)
    assert len(mine) == len(rivers) > 2
    for a, b in zip(mine, rivers, strict=True):
        assert (a.merit, a.feature, a.split_info, a.children_stats) == (b.merit, b.feature, b.split_info,
                                                                        b.children_stats)


def test_top_is_max_by_value_the_first_of_equals():
    """`training.online.top` (compiled when built) gives `max(d, key=d.__getitem__)`'s key: ties, NaN,
    mixed numbers and an empty dict alike."""
    from training import _leaf
    from training.online import top

    nan, inf = float("nan"), float("inf")
    cases = [{1: 0.5, 0: 0.5}, {"a": 0.1, "b": 0.9, "c": 0.9}, {1: nan, 2: 1.0}, {1: 1.0, 2: nan, 3: 2.0},
             {True: 1, False: 2.0}, {1: -inf}, {"x": 3}, {0: 2, 1: 2.0, 2: True}, {0: -0.0, 1: 0.0}]
    rng = random.Random(0)
    cases += [{k: rng.choice([0.0, 0.25, 0.5, 1.0]) for k in range(rng.randint(1, 6))} for _ in range(200)]
    for d in cases:
        assert _leaf.top(d) == top(d) == max(d, key=d.__getitem__), d
    for f in (_leaf.top, top):
        with pytest.raises(ValueError):
            f({})


def test_a_leaf_holding_dict_rows_goes_on_with_them(monkeypatch):
    """Leaves unpickled from an older version hold their rows as dicts: they keep learning with them
    beside compiled rows (of new leaves and new classes), River's tree all along."""
    fast, river = HoeffdingTree(grace_period=50), tree.HoeffdingTreeClassifier(grace_period=50)
    stream = list(_stream(4, 4000, categorical=False, classes=3))
    class_rows = training.hoeffding._ClassRows
    monkeypatch.setattr(training.hoeffding, "_ClassRows", None)  # the leaves grown now hold dicts
    for i, (x, y) in enumerate(stream):
        if i == 1000:
            monkeypatch.setattr(training.hoeffding, "_ClassRows", class_rows)
        assert fast.predict_proba_one(x) == river.predict_proba_one(x)
        fast.learn_one(x, y)
        river.learn_one(x, y)
    assert fast.n_nodes == river.n_nodes > 3
