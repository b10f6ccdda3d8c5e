"""Only trusted models and checkpoints are loaded (real MLflow store on SQLite)."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from driftctl.runtime.stack import configure_environment
from driftctl.settings import Settings
from serving import checkpoint
from serving.synthetic import iot_stream
from training.datasets import to_frame
from training.evaluate import Evaluation
from training.recipes import make_classifier, make_online_learner
from training.registry import Registry, RegistryError
from training.trust import HASH_TAG

pytestmark = pytest.mark.integration


def fitted():
    readings = list(iot_stream(400, drift_at=10**9))
    frame = to_frame(r.record["features"] for r in readings)
    labels = pd.Series([r.label for r in readings])
    return make_classifier().fit(frame, labels), frame, labels


def register(registry, model, frame, labels) -> int:
    _, version = registry.record_candidate(
        model=model, frame=frame, labels=labels, evaluation=Evaluation(1.0, None, 0.0, 0, True, "test"),
        params={}, tags={}, reference_rows=10, training_seconds=0.0, promote=True)
    return version


def test_the_hash_is_recorded_and_checked_and_other_flavors_are_refused(home):
    settings = Settings()
    configure_environment(settings)
    registry = Registry.from_settings(settings)
    model, frame, labels = fitted()
    version = register(registry, model, frame, labels)
    sha = registry.artifact_hash(version)
    assert sha and len(sha) == 64
    assert registry.client.get_run(registry.ref(version).run_id).data.tags[HASH_TAG] == sha
    assert list(registry.load(version).model.predict(frame.head(3))) == list(model.predict(frame.head(3)))

    # The model file altered in the artifact store: refused, by its hash.
    files = [p for p in settings.home.rglob("model.skops")]
    assert files
    for path in files:
        path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(RegistryError, match="sha256"):
        registry.load(version)

    # A pickle-flavored version of the same model name: refused (no recorded hash, wrong format).
    registry._point_mlflow()
    with mlflow.start_run(experiment_id=registry.experiment_id()):
        mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle",
                                 registered_model_name=registry.model_name)
    pickled = version + 1
    with pytest.raises(RegistryError, match="no artifact hash"):
        registry.load(pickled)
    registry.client.set_model_version_tag(registry.model_name, str(pickled), HASH_TAG, "0" * 64)
    with pytest.raises(RegistryError, match="sha256"):
        registry.load(pickled)


def test_a_corrupt_checkpoint_is_ignored_not_fatal(tmp_path, caplog):
    path = tmp_path / "scorer.pkl"
    checkpoint.save(path, checkpoint.Checkpoint(make_online_learner(), 7, {"t:0": 3}))
    assert checkpoint.load(path).n_learned == 7
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    assert checkpoint.load(path) is None
    assert "ignored" in caplog.text
    path.write_bytes(b"\x80\x04garbage")  # an old-format or foreign pickle is never unpickled
    assert checkpoint.load(path) is None
