"""Contract checks run against every detector, River-style, plus behaviour on known streams."""

import copy
import pickle
import random

import pytest

from drift.detectors import (
    AccuracyGapDetector,
    AlarmBudget,
    AlarmLevels,
    DataDriftDetector,
    ErrorRateDetector,
    HoldoutGapDetector,
    Observation,
    PredictionDriftDetector,
)
from driftctl.settings import DriftSettings


def reference(rng, n=500):
    return [{"t": rng.gauss(0, 1), "mode": rng.choice(["a", "b", "ć"])} for _ in range(n)]


def make_error():
    return ErrorRateDetector(delta=0.002)


def make_data():
    return DataDriftDetector(reference(random.Random(0)), window=200, alpha=0.001)


def make_prediction():
    return PredictionDriftDetector(window=200, alpha=0.001)


def make_gap():
    return AccuracyGapDetector(window=200, alpha=1e-4, min_gap=0.05, every=20)


def make_holdout():
    # Armed for a champion whose holdout said 0.92 on 600 rows; a long horizon so that the
    # contract's 2,000 records before a shift stay inside it (by default it watches 1,000 labels).
    detector = HoldoutGapDetector(alpha=1e-4, min_gap=0.05, every=20, horizon=100_000)
    detector.start(0.92, 600)
    return detector


# Each sampler returns the arguments of one `update(...)` call.
def error_input(rng, shifted):
    return (rng.random() < (0.4 if shifted else 0.05),)


def data_input(rng, shifted):
    return ({"t": rng.gauss(1.0 if shifted else 0.0, 1), "mode": rng.choice(["a", "b", "ć"])},)


def prediction_input(rng, shifted):
    prediction = "fault" if rng.random() < (0.5 if shifted else 0.2) else "ok"
    return ((prediction, rng.uniform(0.5, 0.8 if shifted else 1.0)),)


def error_input_right(rng, shifted):  # the champion was right (the holdout test counts hits)
    return (rng.random() < (0.6 if shifted else 0.9),)


def gap_input(rng, shifted):
    return ((rng.random() < (0.6 if shifted else 0.9), rng.random() < 0.88),)


DETECTORS = [(make_error, error_input), (make_data, data_input), (make_prediction, prediction_input),
             (make_gap, gap_input), (make_holdout, error_input_right)]
IDS = ["error-adwin", "data-ks", "prediction-drift", "accuracy-gap", "holdout-gap"]


def test_every_detector_is_under_contract():
    from drift import detectors

    classes = {v for v in vars(detectors).values()
               if isinstance(v, type) and v.__name__.endswith("Detector") and v is not detectors.DriftDetector}
    assert classes == {type(make()) for make, _ in DETECTORS}
    assert all(issubclass(c, detectors.DriftDetector) for c in classes)
    assert sorted(c.name for c in classes) == sorted(IDS)


@pytest.mark.parametrize("make, sample", DETECTORS, ids=IDS)
def test_update_returns_self_and_sets_flag(make, sample):
    detector = make()
    rng = random.Random(1)
    assert detector.update(*sample(rng, False)) is detector
    assert detector.drift_detected is False and detector.n_seen == 1
    assert detector.kind in {"concept", "data", "prediction"}


@pytest.mark.parametrize("make, sample", DETECTORS, ids=IDS)
def test_quiet_on_stationary_stream(make, sample):
    detector, rng = make(), random.Random(2)
    fired = sum(detector.update(*sample(rng, False)).drift_detected for _ in range(20_000))
    assert fired == 0


@pytest.mark.parametrize("make, sample", DETECTORS, ids=IDS)
def test_fires_after_a_shift_with_evidence(make, sample):
    detector, rng = make(), random.Random(3)
    for _ in range(2000):
        detector.update(*sample(rng, False))
    fired_at = None
    for i in range(2000):
        if detector.update(*sample(rng, True)).drift_detected:
            fired_at = i
            break
    assert fired_at is not None and fired_at < 600
    evidence = detector.evidence
    assert isinstance(evidence["statistic"], float) and isinstance(evidence["threshold"], float)
    assert evidence["window"] > 0


@pytest.mark.parametrize("make, sample", DETECTORS, ids=IDS)
def test_same_seed_same_detections(make, sample):
    def run():
        detector, rng, fired = make(), random.Random(9), []
        for i in range(3000):
            if detector.update(*sample(rng, i >= 1500)).drift_detected:
                fired.append(i)
        return fired

    assert run() == run() != []


@pytest.mark.parametrize("make, sample", DETECTORS, ids=IDS)
def test_pickle_and_copy_keep_state(make, sample):
    detector, rng = make(), random.Random(4)
    for _ in range(300):
        detector.update(*sample(rng, False))
    for clone in (pickle.loads(pickle.dumps(detector)), copy.deepcopy(detector)):
        assert clone.n_seen == detector.n_seen
        # The clone goes on exactly as the original does.
        a, b = random.Random(5), random.Random(5)
        for _ in range(700):
            assert clone.update(*sample(a, True)).drift_detected == detector.update(*sample(b, True)).drift_detected
        detector = make()
        rng = random.Random(4)
        for _ in range(300):
            detector.update(*sample(rng, False))


@pytest.mark.parametrize("make, sample", DETECTORS, ids=IDS)
def test_reset_forgets(make, sample):
    detector, rng = make(), random.Random(6)
    for _ in range(500):
        detector.update(*sample(rng, True))
    detector.reset()
    assert detector.n_seen == 0 and detector.drift_detected is False


@pytest.mark.parametrize("make, sample", [DETECTORS[0], DETECTORS[3]], ids=[IDS[0], IDS[3]])
def test_one_change_is_reported_once(make, sample):
    """Label-based detectors de-duplicate: a lasting shift is one event, not one per window."""
    detector, rng = make(), random.Random(7)
    fired = [i for i in range(30_000) if detector.update(*sample(rng, i >= 3000)).drift_detected]
    assert len(fired) == 1 and fired[0] >= 3000


@pytest.mark.parametrize("make, sample", [DETECTORS[1], DETECTORS[2]], ids=[IDS[1], IDS[2]])
def test_window_detectors_report_every_drifted_window(make, sample):
    """Label-free detectors report per window: persistence is the policy's job."""
    detector, rng = make(), random.Random(7)
    fired = [i for i in range(6000) if detector.update(*sample(rng, i >= 3000)).drift_detected]
    assert len(fired) >= 10 and all((i + 1) % 200 == 0 for i in fired) and min(fired) >= 3000


def test_alarm_budget_bounds_the_false_alarm_rate():
    """With a budget big enough to measure, the observed false alarms stay under it."""
    budget = AlarmBudget(per_million=5_000, detectors=1)  # 0.5 per window of 100: measurable
    detector = DataDriftDetector.from_budget(reference(random.Random(10), 2000), budget, window=100)
    assert detector.alpha == pytest.approx(0.5)
    rng = random.Random(11)
    records = 100_000
    fired = sum(detector.update(data_input(rng, False)[0]).drift_detected for _ in range(records))
    expected_bound = budget.per_million * records / 1_000_000
    assert 0 < fired <= expected_bound


def test_settings_derive_thresholds_from_the_budget():
    settings = DriftSettings()
    assert settings.false_alarms_per_million == 1.0
    assert AlarmLevels.from_settings(settings).data_alpha == pytest.approx(0.25 * settings.data_window / 1e6)
    assert AlarmLevels.from_settings(settings).error_delta == pytest.approx(0.25 * 32 / 1e6)
    assert AlarmLevels.from_settings(settings).gap_alpha == pytest.approx(0.25 * settings.gap_every / 1e6)
    explicit = DriftSettings(error_delta=0.002, data_alpha=0.01)
    explicit_levels = AlarmLevels.from_settings(explicit)
    assert explicit_levels.error_delta == 0.002 and explicit_levels.data_alpha == 0.01


def test_error_detector_ignores_improvement():
    detector, rng = ErrorRateDetector(), random.Random(5)
    fired = 0
    for i in range(6000):
        fired += detector.update(rng.random() < (0.4 if i < 3000 else 0.02)).drift_detected
    assert fired == 0


def test_data_detector_does_not_mutate_reference():
    ref = reference(random.Random(6))
    before = copy.deepcopy(ref)
    detector = DataDriftDetector(ref, window=50)
    for row in reference(random.Random(7), 100):
        detector.update(row)
    assert ref == before


def test_data_detector_names_the_drifted_feature():
    rng = random.Random(8)
    detector = DataDriftDetector(reference(rng), window=300, alpha=0.001)
    for _ in range(300):
        detector.update({"t": rng.gauss(0, 1), "mode": rng.choice(["a", "a", "a", "b"])})
    assert detector.drift_detected
    assert detector.evidence["drifted_features"] == ["mode"]


@pytest.mark.parametrize("kwargs", [{"delta": 0}, {"delta": 1.5}])
def test_error_detector_rejects_bad_options(kwargs):
    with pytest.raises(ValueError, match="delta"):
        ErrorRateDetector(**kwargs)


@pytest.mark.parametrize("kwargs, word", [({"window": 1}, "window"), ({"alpha": 0}, "alpha")])
def test_data_detector_rejects_bad_options(kwargs, word):
    with pytest.raises(ValueError, match=word):
        DataDriftDetector([{"t": 1.0}], **kwargs)
    with pytest.raises(ValueError, match="reference"):
        DataDriftDetector([])


@pytest.mark.parametrize("kwargs, word", [({"window": 1}, "window"), ({"alpha": 0}, "alpha")])
def test_prediction_detector_rejects_bad_options(kwargs, word):
    with pytest.raises(ValueError, match=word):
        PredictionDriftDetector(**kwargs)


@pytest.mark.parametrize("kwargs, word", [({"window": 5}, "window"), ({"alpha": 1}, "alpha"),
                                          ({"min_gap": 1.5}, "min_gap"), ({"every": 0}, "every")])
def test_gap_detector_rejects_bad_options(kwargs, word):
    with pytest.raises(ValueError, match=word):
        AccuracyGapDetector(**kwargs)


def test_gap_detector_ignores_a_better_champion():
    detector, rng = make_gap(), random.Random(12)
    fired = sum(detector.update((rng.random() < 0.95, rng.random() < 0.7)).drift_detected for _ in range(20_000))
    assert fired == 0


def test_prediction_detector_with_a_given_reference_tests_from_the_first_window():
    rng = random.Random(13)
    detector = PredictionDriftDetector(window=200, alpha=0.001,
                                       reference=[("ok", rng.uniform(0.5, 1)) for _ in range(1000)])
    fired = [i for i in range(400) if detector.update(("fault", 0.6)).drift_detected]
    assert fired == [199, 399] and detector.evidence["reference"] == "given"


@pytest.mark.parametrize("make, sample", DETECTORS, ids=IDS)
def test_drift_detected_is_read_only(make, sample):
    detector = make()
    with pytest.raises(AttributeError):
        detector.drift_detected = True
    with pytest.raises(AttributeError):
        detector.evidence = {}


@pytest.mark.parametrize("make, sample", DETECTORS, ids=IDS)
def test_observe_feeds_only_what_the_detector_watches(make, sample):
    """A bank is fed by iterating it: each detector takes its part of an observation and
    ignores one without it."""
    detector = make()
    assert detector.observe(Observation()) is detector and detector.n_seen == 0
    full = Observation(features={"t": 0.1, "mode": "a"}, prediction="ok", score=0.9, champion_right=True,
                       online_right=False)
    assert detector.observe(full) is detector and detector.n_seen == 1
    assert detector.read(full) is not None


@pytest.mark.parametrize("make, sample", DETECTORS, ids=IDS)
def test_window_ended_only_for_windowed_detectors(make, sample):
    detector, rng = make(), random.Random(4)
    ends = [i for i in range(1, 401) if detector.update(*sample(rng, False)).window_ended]
    assert ends == ([200, 400] if detector.windowed else [])


def test_data_drift_evidence_is_scipys_ks_test_on_every_window():
    """The KS statistic is computed without `ks_2samp`, and a clearly small one's p-value only
    when the evidence is read: every number must still be scipy's."""
    import numpy as np
    from scipy import stats

    from drift.detectors import DataDriftDetector

    rng = np.random.default_rng(4)
    reference = [{"a": float(v), "b": float(w)} for v, w in zip(rng.normal(size=800), rng.uniform(size=800),
                                                                 strict=True)]
    detector = DataDriftDetector(reference, window=400, alpha=0.001)
    fired = 0
    for window, shift in enumerate((0.0, 0.0, 0.4, 0.05, 1.0)):
        rows = [{"a": float(v) + shift, "b": float(w)} for v, w in zip(rng.normal(size=400), rng.uniform(size=400),
                                                                      strict=True)]
        for row in rows:
            detector.update(row)
        fired += detector.drift_detected
        evidence = detector.evidence
        expected = {}
        for name in ("a", "b"):
            result = stats.ks_2samp([r[name] for r in reference], [r[name] for r in rows], method="asymp")
            expected[name] = (float(result.statistic), float(result.pvalue))
        got = {name: (d["statistic"], d["p_value"]) for name, d in evidence["features"].items()}
        assert got == expected, window
        assert evidence["statistic"] == min(p for _, p in expected.values())
        assert evidence["drifted_features"] == sorted(n for n, (_, p) in expected.items() if p < 0.0005)
        assert detector.drift_detected == bool(evidence["drifted_features"])
    assert fired >= 2  # the shifted windows


def test_error_detector_without_rivers_private_helper_detects_the_same(monkeypatch):
    """The fast path reads ADWIN's private helper; a River without it must give the same detections."""
    import drift.detectors

    def run():
        detector, rng, fired = ErrorRateDetector(delta=0.002), random.Random(7), []
        for i in range(6000):
            if detector.update(rng.random() < (0.1 if i < 3000 else 0.4)).drift_detected:
                fired.append((i, detector.change_at))
        return fired

    fast = run()
    monkeypatch.setattr(drift.detectors, "ADWIN_HELPER", False)  # as if River had no such helper
    assert fast and run() == fast


def test_a_windows_columns_are_what_its_rows_give(monkeypatch):
    """The prediction detector hands its inner data detector a window's columns (`update_columns`), and
    the data detector reads all numeric columns in one array (`_matrix`): the same evidence as from rows,
    one column at a time, whatever the scores hold (other numbers, None, infinities, NaN, booleans, text)."""
    import math

    import numpy as np

    from drift import detectors

    rng = random.Random(8)
    odd = [None, math.inf, -math.inf, math.nan, True, "0.7", 1, np.float64(0.75), np.int64(1)]
    for scores in ("floats", "odd"):
        served = [(rng.choice([0, 1, 1, "x"]), rng.uniform(0.5, 1) if scores == "floats" or rng.random() < 0.8
                   else rng.choice(odd)) for _ in range(200)]
        reference = [PredictionDriftDetector._row(rng.choice([0, 1]), rng.uniform(0.6, 1)) for _ in range(200)]
        by_rows = DataDriftDetector(reference, window=200, alpha=0.01).update_all(PredictionDriftDetector._rows(served))
        inner = DataDriftDetector(reference, window=200, alpha=0.01)
        by_columns = inner.update_columns(*PredictionDriftDetector._columns(served, inner), len(served))
        assert by_columns.evidence == by_rows.evidence and by_columns.n_seen == by_rows.n_seen == 200
        assert by_columns.drift_detected is by_rows.drift_detected
    rows = [{"a": rng.gauss(0.3, 1), "b": rng.choice([1, 2.5, math.inf]), "c": rng.random()} for _ in range(300)]
    base = [{"a": rng.gauss(0, 1), "b": rng.random(), "c": rng.random()} for _ in range(300)]
    for gap in (False, True):
        if gap:
            del rows[7]["b"]  # a gap: the column-by-column path
        detector = DataDriftDetector(base, window=300, alpha=0.01)
        detector._test(rows)
        expected = DataDriftDetector(base, window=300, alpha=0.01)
        with monkeypatch.context() as patch:
            patch.setattr(detectors, "_matrix", lambda rows, names: None)
            expected._test(rows)
        assert detector.evidence == expected.evidence
        assert (detectors._matrix(rows, ["a", "b", "c"]) is None) is gap
