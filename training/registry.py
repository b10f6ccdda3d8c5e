"""The MLflow model registry: champion alias, versions loaded by number, provenance runs."""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from training.datasets import FeatureSchema

CHAMPION = "champion"


class RegistryError(Exception):
    """The registry cannot answer or cannot load a model."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int
    run_id: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedModel:
    ref: ModelRef
    model: Any
    schema: FeatureSchema
    accuracy: float | None = None  # its holdout accuracy when it was trained (the run's challenger_accuracy)

    @property
    def features(self) -> list[str]:
        return self.schema.names


def content_hash(frame: pd.DataFrame, labels: pd.Series) -> str:
    hashed = pd.util.hash_pandas_object(frame.assign(_label=labels.values), index=False).values
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


class Registry:
    def __init__(self, tracking_uri: str, model_name: str, experiment: str, artifact_location: str | None = None):
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.experiment = experiment
        self.artifact_location = artifact_location
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    @classmethod
    def from_settings(cls, settings) -> Registry:
        artifacts = None if settings.mlflow.tracking_uri else settings.mlflow_artifacts
        return cls(settings.mlflow_uri, settings.mlflow.model_name, settings.mlflow.experiment, artifacts)

    def experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(self.experiment, artifact_location=self.artifact_location)
        except MlflowException:  # created meanwhile by another process
            return self.client.get_experiment_by_name(self.experiment).experiment_id

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
        return ModelRef(self.model_name, int(version.version), version.run_id)

    def version_tags(self, version: int) -> dict[str, str]:
        return dict(self.client.get_model_version(self.model_name, str(version)).tags)

    def load(self, version: int) -> LoadedModel:
        """Load exactly this registry version, never 'latest'."""
        self._point_mlflow()
        try:
            details = self.client.get_model_version(self.model_name, str(version))
            model = mlflow.sklearn.load_model(f"models:/{self.model_name}/{version}")
            schema = FeatureSchema.model_validate(
                mlflow.artifacts.load_dict(f"runs:/{details.run_id}/features.json")["schema"])
            accuracy = self.client.get_run(details.run_id).data.metrics.get("challenger_accuracy")
        except Exception as exc:  # any failure to load leaves the current model serving
            raise RegistryError(f"cannot load {self.model_name} version {version}: {exc}") from exc
        return LoadedModel(ModelRef(self.model_name, int(version), details.run_id), model, schema, accuracy)

    def reference(self, run_id: str) -> list[dict[str, Any]]:
        """The champion's training reference rows, stored with its run."""
        self._point_mlflow()
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/reference.json")["rows"]

    def record_candidate(self, *, model, frame: pd.DataFrame, labels: pd.Series, evaluation, params: dict,
                         tags: dict[str, str], reference_rows: int, training_seconds: float,
                         promote: bool, artifacts: list[str] = (),
                         documents: dict[str, Any] | None = None) -> tuple[str, int | None]:
        """Log one retrain run with its provenance; register the model if it is to be promoted.

        The champion alias is not moved here: `move_champion` does that, once the caller
        is ready to announce it. Returns the run id and the registered version (None when
        not registered).
        """
        self._point_mlflow()
        with mlflow.start_run(experiment_id=self.experiment_id(), run_name=tags.get("driftctl.decision_id")) as run:
            mlflow.log_params(params)
            metrics = {"challenger_accuracy": evaluation.challenger_accuracy,
                       "holdout_rows": evaluation.holdout_rows, "training_rows": len(frame),
                       "training_seconds": training_seconds}
            if evaluation.champion_accuracy is not None:
                metrics["champion_accuracy"] = evaluation.champion_accuracy
            mlflow.log_metrics(metrics)
            mlflow.set_tags({**tags, "driftctl.promote": str(promote), "driftctl.evaluation": evaluation.reason,
                             "driftctl.training_data_hash": content_hash(frame, labels)})
            dataset = mlflow.data.from_pandas(frame.assign(label=labels.values), targets="label",
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
            info = mlflow.sklearn.log_model(
                model, name="model", serialization_format="skops",
                skops_trusted_types=_trusted_types(model),
                # Explicit requirements: inferring them re-imports the model in a subprocess (seconds).
                pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
                registered_model_name=self.model_name if promote else None,
            )
            run_id = run.info.run_id
        if not promote:
            return run_id, None
        version = int(info.registered_model_version)
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, str(version), key, value)
        return run_id, version

    def set_champion(self, version: int) -> None:
        self.client.set_registered_model_alias(self.model_name, CHAMPION, str(version))

    def move_champion(self, version: int, reason: str) -> ModelRef | None:
        """Point the champion alias at `version`; tag when it was deployed and when the one
        it replaces was undeployed. Returns the replaced champion (None if there was none)."""
        previous = self.champion()
        now = str(time.time())
        self.set_champion(version)
        self.client.set_model_version_tag(self.model_name, str(version), "driftctl.deployed_at", now)
        self.client.set_model_version_tag(self.model_name, str(version), "driftctl.deployed_reason", reason[:5000])
        if previous is not None and previous.version != version:
            self.client.set_model_version_tag(self.model_name, str(previous.version), "driftctl.undeployed_at", now)
        return previous

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
        return ModelRef(self.model_name, int(version), details.run_id)

    def set_run_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)


def _trusted_types(model) -> list[str]:
    import skops.io

    return skops.io.get_untrusted_types(data=skops.io.dumps(model))
