"""The serving rule and the label-free accuracy estimate (`drift.arbiter`): pure, no broker."""

import math
import pickle
import random

import pytest

from drift.arbiter import SOURCES, AccuracyEstimate, ServingRule, StackedBlend, blend
from driftctl.settings import ServingSettings


def feed(rule, n, champion, online, blended, rng):
    for _ in range(n):
        rule.update(rng.random() < champion, rng.random() < online, rng.random() < blended)


def test_serves_the_most_accurate_source():
    rng = random.Random(0)
    rule = ServingRule(halflife=100)
    feed(rule, 2000, 0.9, 0.7, 0.8, rng)
    assert rule.serving == "champion"
    feed(rule, 2000, 0.6, 0.9, 0.75, rng)  # a drift: the champion falls, the online learner adapts
    assert rule.serving == "online"
    feed(rule, 2000, 0.8, 0.8, 0.9, rng)
    assert rule.serving == "blend"


def test_hysteresis_keeps_serving_between_equals():
    """Two equally good sources: the margin stops serving from flapping between them."""
    rng = random.Random(1)
    calm = ServingRule(halflife=200, margin=0.01)
    feed(calm, 20000, 0.85, 0.85, 0.0, rng)
    jumpy = ServingRule(halflife=200, margin=0.0)
    feed(jumpy, 20000, 0.85, 0.85, 0.0, random.Random(1))
    assert calm.switches < jumpy.switches / 3


def test_a_new_champion_starts_from_its_holdout_accuracy():
    rule = ServingRule(halflife=50)
    for i in range(500):
        rule.update(False, i % 5 != 0, False)  # the online learner right 4 times in 5
    assert rule.serving == "online"
    rule.on_champion(0.95)
    assert rule.serving == "champion" and rule.recent["champion"] == 0.95
    assert rule.recent["blend"] == pytest.approx((0.95 + rule.recent["online"]) / 2)
    rule.on_champion(None)  # accuracy unknown: the champion keeps its recent record
    assert rule.recent["champion"] == 0.95


def test_one_call_per_label_follows_the_learners_renewals():
    """`on_label`, as the scorer and the backtest call it: a renewal starts the online learner from
    its own accuracy; labels of records the old learner scored judge the champion only; a learner
    process's renewals come with its answers (`on_renewals`), its labels with none."""
    rule = ServingRule(halflife=50)
    for _ in range(300):  # after a change: champion and online learner wrong
        assert not rule.on_label((False, False, False), scored_renewals=0, renewals=0, accuracy=0.1)
    assert rule.serving == "champion" and rule.recent["online"] < 0.05
    # The label that renewed it was scored by the learner serving until then: it counts, after the renewal.
    assert rule.on_label((False, False, False), scored_renewals=0, renewals=1, accuracy=0.97)
    assert rule.renewals == 1 and rule.serving == "online"
    assert rule.recent["online"] == pytest.approx(0.97 * (1 - rule._alpha))
    online = rule.recent["online"]
    for _ in range(100):  # late labels of the old learner's predictions: they judge the champion only
        assert not rule.on_label((False, False, False), scored_renewals=0, renewals=1, accuracy=0.2)
    assert rule.recent["online"] == online and rule.serving == "online"
    rule.on_label((False, True, True), scored_renewals=1)  # its own prediction: counted
    assert rule.recent["online"] > online
    # A learner process: the renewal is heard with its answers, the labels carry no count.
    assert rule.on_renewals(2, 0.5) and not rule.on_renewals(2, 0.9) and not rule.on_renewals(None, 0.9)
    assert rule.recent["online"] == 0.5
    n = rule.n_seen
    rule.on_label(None, scored_renewals=2)  # scored by an earlier champion: nothing to judge
    assert rule.n_seen == n


def test_rule_from_settings_and_bad_options():
    rule = ServingRule.from_settings(ServingSettings(serve_halflife=50, serve_margin=0.02))
    assert (rule.halflife, rule.margin) == (50, 0.02)
    assert ServingSettings().serve == "best"
    with pytest.raises(ValueError, match="margin"):
        ServingRule(margin=1.5)
    pickle.loads(pickle.dumps(rule))  # a scorer may checkpoint it


def test_blend_averages_probabilities():
    assert blend({"a": 1.0}, {"b": 1.0}) == {"a": 0.5, "b": 0.5}
    assert max(blend({0: 0.6, 1: 0.4}, {0: 0.1, 1: 0.9}).items(), key=lambda kv: kv[1])[0] == 1


def test_estimate_is_calibrated_from_labels():
    """An overconfident model: raw confidence says 0.95, it is right 70% of the time. Once the
    labels calibrate it, the estimate over unlabelled served records is near 0.7."""
    rng = random.Random(2)
    estimate = AccuracyEstimate(window=500)
    for _ in range(3000):
        estimate.learn("champion", 0.95, rng.random() < 0.7)
    for _ in range(500):
        estimate.served("champion", 0.95)
    assert estimate.estimated_accuracy == pytest.approx(0.7, abs=0.03)
    estimate.reset("champion")
    assert estimate.expect("champion", 0.95) == 0.95
    assert set(SOURCES) == {"champion", "online", "blend"}


def test_estimate_follows_a_covariate_shift_without_labels():
    """Calibrated on a mix of sure and unsure records, the estimate falls as soon as the unsure
    ones dominate the served records: before any of their labels arrive."""
    rng = random.Random(3)
    estimate = AccuracyEstimate(window=1000)
    for _ in range(5000):
        sure = rng.random() < 0.8
        confidence = 0.97 if sure else 0.55
        estimate.learn("champion", confidence, rng.random() < (0.96 if sure else 0.55))
    for _ in range(1000):
        estimate.served("champion", 0.97 if rng.random() < 0.8 else 0.55)
    before = estimate.estimated_accuracy
    for _ in range(1000):
        estimate.served("champion", 0.97 if rng.random() < 0.2 else 0.55)
    assert before == pytest.approx(0.88, abs=0.03)
    assert estimate.estimated_accuracy == pytest.approx(0.63, abs=0.03)


def disagreeing(rng, n, champion_right):
    """Binary records on which champion and online learner disagree; the champion is right on a
    share `champion_right` of them, and the more confident of the two half the time."""
    for _ in range(n):
        truth = rng.random() < 0.5
        champion_says = truth if rng.random() < champion_right else not truth
        sure, unsure = rng.uniform(0.75, 0.95), rng.uniform(0.55, 0.75)
        c, o = (sure, unsure) if rng.random() < 0.5 else (unsure, sure)
        yield ({champion_says: c, not champion_says: 1 - c}, {not champion_says: o, champion_says: 1 - o}, truth)


def test_the_stacked_blend_learns_whom_to_follow_where_they_disagree():
    """A 50/50 average follows whichever model is surer, so it is right half the time here; the
    stacked blend learns that the online learner is right 3 times in 4 and follows it."""
    rng = random.Random(3)
    stack = StackedBlend(rate=0.05)
    records = list(disagreeing(rng, 4000, champion_right=0.25))
    right_mean = right_stacked = 0
    for i, (champion, online, truth) in enumerate(records):
        chosen, p, features = stack.combine(champion, online)
        assert 0.5 <= p <= 1
        mixed = blend(champion, online)
        if i >= 2000:  # after learning
            right_stacked += chosen == truth
            right_mean += max(mixed, key=mixed.__getitem__) == truth
        stack.learn(features, truth)
    assert right_mean / 2000 < 0.6 < 0.7 < right_stacked / 2000
    assert stack.weights[1] > stack.weights[0]


def test_the_stacked_blend_corrects_a_shifted_class_prior_and_takes_any_classes():
    """Both models say class "a" at 0.6, but "c" (only the online learner knows it) is the truth 3
    times in 4: the classes' biases learn it. An online learner with nothing to say counts nothing."""
    stack = StackedBlend(rate=0.1)
    champion, online = {"a": 0.6, "b": 0.4}, {"a": 0.6, "b": 0.2, "c": 0.2}
    assert stack.combine(champion, online)[0] == "a"
    for i in range(2000):
        stack.learn(stack.combine(champion, online)[2], "c" if i % 4 else "a")
    assert stack.combine(champion, online)[0] == "c"
    assert stack.combine(champion, {})[0] in {"a", "c"}  # the biases still count; no error on an empty side
    with pytest.raises(ValueError, match="rate"):
        StackedBlend(rate=0)
    with pytest.raises(ValueError, match="shrink"):
        StackedBlend(shrink=1)


def test_the_stacked_blend_forgets_an_old_lesson():
    """What the blend learned fades once the records stop teaching it (both models agree and are
    right): the weights go back to the plain product, so a lesson learned before a change, or
    from labels that came late, is not held for ever; without the pull they stay where they were."""
    def learned_then_calm(shrink):
        rng = random.Random(5)
        stack = StackedBlend(rate=0.05, shrink=shrink)
        for champion, online, truth in disagreeing(rng, 3000, champion_right=0.1):
            stack.learn(stack.combine(champion, online)[2], truth)
        lesson = list(stack.weights)
        for i in range(1000):
            truth = i % 2 == 0
            stack.learn(stack.combine({truth: 0.99, not truth: 0.01}, {truth: 0.99, not truth: 0.01})[2], truth)
        return lesson, stack.weights
    lesson, calm = learned_then_calm(0.005)
    assert lesson[1] - lesson[0] > 0.5  # it learned to follow the online learner
    assert abs(calm[0] - 1) < 0.05 and abs(calm[1] - 1) < 0.05
    lesson, calm = learned_then_calm(0.0)
    assert calm[1] - calm[0] > 0.5


def test_the_rule_serves_the_blend_its_settings_name():
    """`serve_blend = mean`: the rule's blend is `blend` (nothing to learn); `stacked`: the learned
    pool, which learns only from the records it scored."""
    champion, online = {0: 0.7, 1: 0.3}, {0: 0.2, 1: 0.8}
    mean = ServingRule.from_settings(ServingSettings(serve_blend="mean"))
    assert mean.stacked is None
    chosen, p, features = mean.blend(champion, online)
    assert (chosen, p, features) == (1, blend(champion, online)[1], None)
    mean.learn_blend(features, 0)  # nothing to learn: no error
    stacked = ServingRule.from_settings(ServingSettings(serve_blend="stacked", serve_blend_rate=0.2,
                                                        serve_blend_shrink=0.01))
    assert stacked.stacked is not None and (stacked.stacked.rate, stacked.stacked.shrink) == (0.2, 0.01)
    before = list(stacked.stacked.weights)
    chosen, p, features = stacked.blend(champion, online)
    assert chosen == 1 and p == pytest.approx(0.3 * 0.8 / (0.7 * 0.2 + 0.3 * 0.8))  # the product, normalised
    stacked.learn_blend(None, 0)
    assert stacked.stacked.weights == before
    stacked.learn_blend(features, 0)
    assert stacked.stacked.weights != before


def test_the_two_class_path_is_the_general_one_bit_for_bit():
    """`combine` and `learn` take a shortcut for two classes: the same classes, probabilities and
    weights as the general lists and loops, to the last bit, with labels late or at once (`learn`
    reuses `combine`'s exponentials only while nothing was learned in between), an online learner
    with nothing to say, and probabilities below the floor."""
    rng = random.Random(11)
    fast, general = StackedBlend(rate=0.2, shrink=0.01), StackedBlend(rate=0.2, shrink=0.01)
    pending: list = []
    for i in range(3000):
        p, q = rng.choice([rng.random(), 0.0, 1.0, 1e-6]), rng.random()
        champion, online = {"no": p, "yes": 1 - p}, ({"yes": q, "no": 1 - q} if i % 7 else {})
        chosen, prob, features = fast.combine(champion, online)
        assert len(features) != 3  # the shortcut ran
        classes = ["no", "yes"]  # `combine`'s general lists, by hand
        lc = [math.log(max(general.floor, champion[c])) for c in classes]
        lo = [math.log(max(general.floor, online.get(c, 0.0))) for c in classes] if online else [0.0, 0.0]
        exps = general._exps(classes, lc, lo)
        assert (chosen, prob) == (classes[exps.index(1.0)], 1.0 / sum(exps))
        pending.append((features, (classes, lc, lo), rng.choice(classes)))
        while pending and (rng.random() < 0.5 or len(pending) > 20):  # labels at once or up to 20 late
            learned, lists, label = pending.pop(0)
            fast.learn(learned, label)
            general.learn(lists, label)
            assert fast.weights == general.weights and fast.bias == general.bias
    assert fast.weights != [1.0, 1.0]


def test_with_labels_late_the_blend_is_judged_by_its_current_weights():
    """`serve_blend_now`: a label judges the stacked blend by the class its weights give now for that record,
    not the class it served when the record was scored (with labels late, before the pool learned the change)."""
    champion, online = {0: 0.9, 1: 0.1}, {0: 0.8, 1: 0.2}
    stacked = StackedBlend(rate=0.5)
    served, _, features = stacked.combine(champion, online)
    for _ in range(300):  # the labels since: both models are wrong here, the pool learns to say 1
        stacked.learn(stacked.combine(champion, online)[2], 1)
    assert served == 0 and stacked.predict(features) == 1 == stacked.combine(champion, online)[0]
    multi = stacked.combine({0: 0.9, 1: 0.05, 2: 0.05}, {0: 0.8, 1: 0.1, 2: 0.1})[2]
    assert stacked.predict(multi) == stacked.combine({0: 0.9, 1: 0.05, 2: 0.05}, {0: 0.8, 1: 0.1, 2: 0.1})[0]

    def blend_after(now):
        rule = ServingRule.from_settings(ServingSettings(serve_blend_now=now))
        rule.stacked = stacked
        for _ in range(50):  # the records were scored when the blend said 0: their served class was wrong
            rule.on_label((False, False, served == 1), scored_renewals=0, blend_features=features, label=1)
        return rule.serving, rule.recent["blend"]

    assert blend_after(True) == ("blend", pytest.approx(1 - 0.5 * 0.5 ** (50 / 50)))
    assert blend_after(False) == ("champion", pytest.approx(0.5 * 0.5 ** (50 / 50)))
