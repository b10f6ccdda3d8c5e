"""The MLflow model registry: champion alias, versions loaded by number, provenance runs."""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from driftctl.messages import ModelLineage
from driftctl.settings import mask_url
from driftctl.stores.engine import schema_lock
from training.compiled import CompiledPipeline, compile_verified
from training.datasets import FeatureSchema
from training.trust import ALLOWED_TYPES, HASH_TAG, artifact_sha256, load_trusted, untrusted_types

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from driftctl.settings import Settings
    from training.evaluate import Evaluation

CHAMPION = "champion"


class RegistryError(Exception):
    """The registry cannot answer or cannot load a model (its message never holds a password)."""

    def __init__(self, message: str):
        super().__init__(mask_url(message))


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int
    run_id: str

    def as_dict(self) -> ModelLineage:
        return ModelLineage(name=self.name, version=self.version, run_id=self.run_id)


@dataclass
class LoadedModel:
    ref: ModelRef
    model: Any
    schema: FeatureSchema
    accuracy: float | None = None  # its holdout accuracy when it was trained (the run's challenger_accuracy)
    # The pipeline evaluated on dict rows without pandas, verified equal to `model` at load (None: not compiled).
    compiled: CompiledPipeline | None = None

    def predict_proba(self, rows: list[dict[str, Any]]) -> Any:
        """Class probabilities for checked feature rows, in `model.classes_` order."""
        if self.compiled is not None:
            return self.compiled.predict_proba(rows)
        return self.model.predict_proba(pd.DataFrame.from_records(rows, columns=self.features))

    @property
    def features(self) -> list[str]:
        return self.schema.names


def iso_time(epoch: float) -> str:
    """An epoch time as ISO 8601 in UTC, to the millisecond: how MLflow tags carry times.

    >>> iso_time(0)
    '1970-01-01T00:00:00.000+00:00'
    """
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def content_hash(frame: pd.DataFrame, labels: pd.Series) -> str:
    hashed = pd.util.hash_pandas_object(frame.assign(_label=labels.values), index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


class Registry:
    def __init__(self, tracking_uri: str, model_name: str, experiment: str, artifact_location: str | None = None):
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.experiment = experiment
        self.artifact_location = artifact_location
        # The first store opened on a fresh SQLite file creates and migrates its schema:
        # one process at a time (stages that start together would race alembic).
        with schema_lock(tracking_uri):
            self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            # The registry store too, while the lock is held. (A private MLflow method, unannotated.)
            self.client._get_registry_client()  # type: ignore[no-untyped-call]

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        artifacts = None if settings.mlflow.tracking_uri else settings.mlflow_artifacts
        return cls(settings.mlflow_uri, settings.mlflow.model_name, settings.mlflow.experiment, artifacts)

    def experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(self.experiment, artifact_location=self.artifact_location)
        except MlflowException:  # created meanwhile by another process
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:  # not that: the creation itself failed
                raise
            return found.experiment_id

    def _point_mlflow(self) -> None:
        # mlflow's fluent API (load_model, artifacts, start_run) reads process-wide URIs.
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)

    def champion(self) -> ModelRef | None:
        try:
            version = self.client.get_model_version_by_alias(self.model_name, CHAMPION)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                return None
            raise RegistryError(f"MLflow at {self.tracking_uri}: {exc.message}") from exc
        return ModelRef(self.model_name, int(version.version), run_id_of(version))

    def version_tags(self, version: int) -> dict[str, str]:
        return dict(self.client.get_model_version(self.model_name, str(version)).tags)

    def load(self, version: int, *, compiled: bool = True) -> LoadedModel:
        """Load exactly this registry version, never 'latest'. `compiled=False`: without the dict-row
        pipeline (seconds of verification a scorer needs and a caller that only predicts frames does not)."""
        self._point_mlflow()
        try:
            details = self.client.get_model_version(self.model_name, str(version))
            with tempfile.TemporaryDirectory(prefix="driftctl-model-") as tmp:
                # Downloaded, hashed and checked before anything in it is deserialized: never
                # the flavor the MLmodel file asks for, only skops with the allowlist.
                local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{self.model_name}/{version}",
                                                            dst_path=tmp)
                model = load_trusted(Path(local), (details.tags or {}).get(HASH_TAG),
                                     f"{self.model_name} version {version}")
            schema = FeatureSchema.model_validate(
                mlflow.artifacts.load_dict(f"runs:/{details.run_id}/features.json")["schema"])
            accuracy = self.client.get_run(run_id_of(details)).data.metrics.get("challenger_accuracy")
        except Exception as exc:  # any failure to load leaves the current model serving
            raise RegistryError(f"cannot load {self.model_name} version {version}: {exc}") from exc
        # Compiled and checked here, on the loader's thread: the scorer swaps in a model ready to serve.
        return LoadedModel(ModelRef(self.model_name, int(version), run_id_of(details)), model, schema, accuracy,
                           compile_verified(model, schema) if compiled else None)

    def schema(self, run_id: str) -> FeatureSchema:
        """The feature schema a run's model was trained on (what scorers check records against)."""
        self._point_mlflow()
        return FeatureSchema.model_validate(mlflow.artifacts.load_dict(f"runs:/{run_id}/features.json")["schema"])

    def holdout(self, run_id: str) -> tuple[float | None, int | None]:
        """A run's challenger accuracy on its holdout and the holdout's rows (None: not logged)."""
        metrics = self.client.get_run(run_id).data.metrics
        rows = metrics.get("holdout_rows")
        return metrics.get("challenger_accuracy"), None if rows is None else int(rows)

    def reference(self, run_id: str) -> list[dict[str, Any]]:
        """The champion's training reference rows, stored with its run."""
        self._point_mlflow()
        rows: list[dict[str, Any]] = mlflow.artifacts.load_dict(f"runs:/{run_id}/reference.json")["rows"]
        return rows

    def record_candidate(self, *, model: Any, frame: pd.DataFrame, labels: pd.Series, evaluation: Evaluation,
                         params: dict[str, Any], tags: dict[str, str], reference_rows: int, training_seconds: float,
                         promote: bool, artifacts: Sequence[str] = (), documents: dict[str, Any] | None = None,
                         description: str | None = None) -> tuple[str, int | None]:
        """Log one retrain run with its provenance; register the model if it is to be promoted.

        The champion alias is not moved here: `move_champion` does that, once the caller
        is ready to announce it. Returns the run id and the registered version (None when
        not registered); `description` becomes the version's description in the MLflow UI.
        """
        from mlflow.data.pandas_dataset import from_pandas  # what mlflow.data.from_pandas names

        self._point_mlflow()
        # Every MLflow write is a commit (tens of ms on SQLite): the run's tags go with its creation,
        # its params and metrics in one batch, the version's tags with the version.
        tags = {key: mask_url(value) for key, value in
                {**tags, "driftctl.promote": str(promote), "driftctl.evaluation": evaluation.reason,
                 "driftctl.training_data_hash": content_hash(frame, labels)}.items()}
        with mlflow.start_run(experiment_id=self.experiment_id(), run_name=tags.get("driftctl.decision_id"),
                              tags=tags) as run:
            run_id = run.info.run_id
            metrics = {"challenger_accuracy": evaluation.challenger_accuracy,
                       "holdout_rows": evaluation.holdout_rows, "training_rows": len(frame),
                       "training_seconds": training_seconds}
            if evaluation.champion_accuracy is not None:
                metrics["champion_accuracy"] = evaluation.champion_accuracy
            self.client.log_batch(run_id, metrics=[Metric(k, float(v), int(time.time() * 1000), 0)
                                                   for k, v in metrics.items()],
                                  params=[Param(k, str(v)) for k, v in params.items()])
            dataset = from_pandas(frame.assign(label=labels.values), targets="label",
                                  name=tags.get("driftctl.window", "training-window"))
            mlflow.log_input(dataset, context="training")
            mlflow.log_dict({"features": list(frame.columns),
                             "schema": FeatureSchema.from_frame(frame).model_dump(mode="json")}, "features.json")
            for path in artifacts:
                mlflow.log_artifact(path, artifact_path="evidence")
            for name, document in (documents or {}).items():
                mlflow.log_dict(document, name)
            sample = frame.tail(reference_rows)
            mlflow.log_dict({"rows": sample.to_dict(orient="records")}, "reference.json")
            untrusted = untrusted_types(model)
            if untrusted:
                raise RegistryError(f"the model holds types outside the allowlist: {', '.join(untrusted)}")
            info = mlflow.sklearn.log_model(
                model, name="model", serialization_format="skops",
                skops_trusted_types=list(ALLOWED_TYPES),
                # Explicit requirements: inferring them re-imports the model in a subprocess (seconds).
                pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
                signature=_signature(model, frame),
            )
        if not promote:
            return run_id, None
        # Registered with its tags in one write (they were one write each).
        version = int(mlflow.register_model(info.model_uri, self.model_name, tags=tags).version)
        # The hash of exactly what a scorer will download (MLflow writes the version into it); it is
        # checked at every load.
        with tempfile.TemporaryDirectory(prefix="driftctl-model-") as tmp:
            local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{self.model_name}/{version}",
                                                        dst_path=tmp)
            sha256 = artifact_sha256(Path(local))
        self.client.set_model_version_tag(self.model_name, str(version), HASH_TAG, sha256)
        if description:
            self.client.update_model_version(self.model_name, str(version), description=mask_url(description))
        self.client.set_tag(run_id, HASH_TAG, sha256)
        return run_id, version

    def artifact_hash(self, version: int) -> str | None:
        """The sha256 recorded for `version` at registration."""
        return self.version_tags(version).get(HASH_TAG)

    def set_champion(self, version: int) -> None:
        self.client.set_registered_model_alias(self.model_name, CHAMPION, str(version))

    def move_champion(self, version: int, reason: str, *, expected: int | object | None = ...,
                      tag: bool = True) -> ModelRef | None:
        """Point the champion alias at `version`; with `tag`, `tag_deployment` too. Returns the
        replaced champion (None if there was none).

        With `expected` (the champion version the caller decided against, None for none) the
        move is compare-and-set: refused if the alias moved meanwhile; a retry of a move that
        already happened returns `expected` as the replaced champion, not `version` itself.
        (MLflow has no atomic alias swap: the retrain lease, checked just before, fences writers.)"""
        previous = self.champion()
        if expected is not ...:
            current = previous.version if previous else None
            if current == version and expected != version:
                # A retry: it moved already. `expected` is neither the `...` sentinel nor None: a version.
                previous = self.ref(cast(int, expected)) if expected is not None else None
            elif current != expected:
                raise RegistryError(f"the champion alias of {self.model_name} moved meanwhile: expected version "
                                    f"{expected}, found {current}; not moved to {version}")
        self.set_champion(version)
        if tag:
            self.tag_deployment(version, previous, reason)
        return previous

    def tag_deployment(self, version: int, previous: ModelRef | None, reason: str) -> None:
        """When `version` was deployed and why, and when the one it replaced was undeployed: what the
        MLflow UI shows (the ledger is the record). Three writes, so a promotion tags after announcing."""
        now = iso_time(time.time())
        self.client.set_model_version_tag(self.model_name, str(version), "driftctl.deployed_at", now)
        self.client.set_model_version_tag(self.model_name, str(version), "driftctl.deployed_reason",
                                          mask_url(reason)[:5000])
        if previous is not None and previous.version != version:
            self.client.set_model_version_tag(self.model_name, str(previous.version), "driftctl.undeployed_at", now)

    def restore_champion(self, previous: ModelRef | None) -> None:
        """Undo a move whose announcement failed: the alias goes back to `previous`."""
        if previous is None:
            self.client.delete_registered_model_alias(self.model_name, CHAMPION)
        else:
            self.set_champion(previous.version)

    def exists(self, version: int) -> bool:
        try:
            self.client.get_model_version(self.model_name, str(version))
            return True
        except MlflowException:
            return False

    def ref(self, version: int) -> ModelRef:
        details = self.client.get_model_version(self.model_name, str(version))
        return ModelRef(self.model_name, int(version), run_id_of(details))

    def set_run_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, mask_url(value))


def run_id_of(version: ModelVersion) -> str:
    """The run a registered version was logged by: every version driftctl registers has one."""
    if version.run_id is None:
        raise RegistryError(f"{version.name} version {version.version} was not logged by a run")
    return version.run_id


def _signature(model: Any, frame: pd.DataFrame) -> Any:
    """The model's input schema (the window's columns and types) and its output, shown in
    MLflow's UI and checked against what a later window offers."""
    from mlflow.models import infer_signature

    sample = frame.head(50)
    return infer_signature(sample, model.predict(sample))
