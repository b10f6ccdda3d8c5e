"""Contract checks run against every detector, River-style, plus behaviour on known streams."""

import copy
import pickle
import random

import pytest

from drift.detectors import DataDriftDetector, ErrorRateDetector


def reference(rng, n=500):
    return [{"t": rng.gauss(0, 1), "mode": rng.choice(["a", "b", "ć"])} for _ in range(n)]


def make_error():
    return ErrorRateDetector(delta=0.002)


def make_data():
    return DataDriftDetector(reference(random.Random(0)), window=200, alpha=0.001)


def error_input(rng, shifted):
    return rng.random() < (0.4 if shifted else 0.05)


def data_input(rng, shifted):
    return {"t": rng.gauss(1.0 if shifted else 0.0, 1), "mode": rng.choice(["a", "b", "ć"])}


DETECTORS = [(make_error, error_input), (make_data, data_input)]


@pytest.mark.parametrize("make, sample", DETECTORS)
def test_update_returns_self_and_sets_flag(make, sample):
    detector = make()
    rng = random.Random(1)
    assert detector.update(sample(rng, False)) is detector
    assert detector.drift_detected is False


@pytest.mark.parametrize("make, sample", DETECTORS)
def test_quiet_on_stationary_stream(make, sample):
    detector, rng = make(), random.Random(2)
    fired = sum(detector.update(sample(rng, False)).drift_detected for _ in range(20_000))
    assert fired == 0


@pytest.mark.parametrize("make, sample", DETECTORS)
def test_fires_after_a_shift_with_evidence(make, sample):
    detector, rng = make(), random.Random(3)
    for _ in range(2000):
        detector.update(sample(rng, False))
    fired_at = None
    for i in range(2000):
        if detector.update(sample(rng, True)).drift_detected:
            fired_at = i
            break
    assert fired_at is not None and fired_at < 600
    assert detector.evidence["statistic"] is not None and "threshold" in detector.evidence


@pytest.mark.parametrize("make, sample", DETECTORS)
def test_pickle_and_copy_keep_state(make, sample):
    detector, rng = make(), random.Random(4)
    for _ in range(300):
        detector.update(sample(rng, False))
    for clone in (pickle.loads(pickle.dumps(detector)), copy.deepcopy(detector)):
        assert clone.n_seen == detector.n_seen


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
