"""The serving rule and the label-free accuracy estimate (`drift.arbiter`): pure, no broker."""

import pickle
import random

import pytest

from drift.arbiter import SOURCES, AccuracyEstimate, ServingRule, blend
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
