"""The retrain flow: load the window, train a challenger, judge it against the champion,
record the provenance in MLflow and the ledger, promote the winner, announce it."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from drift.report import data_drift_snapshot, drifted_share
from driftctl.ledger import Ledger
from driftctl.settings import Settings
from serving.codec import InvalidRecord, decode_label, decode_telemetry, encode
from serving.kafka_io import make_producer, read_ranges
from training.datasets import TrainingWindow, join_labelled
from training.evaluate import Evaluation, train_challenger
from training.registry import LoadedModel, Registry


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def load_window(window: TrainingWindow, settings: Settings) -> tuple[pd.DataFrame, pd.Series]:
    records, labels = [], {}
    for message in read_ranges(window.bootstrap_servers, settings.kafka, window.telemetry_topic, window.telemetry):
        try:
            records.append(decode_telemetry(message.value))
        except InvalidRecord:
            continue  # already dead-lettered by the scorer
    for message in read_ranges(window.bootstrap_servers, settings.kafka, window.labels_topic, window.labels):
        try:
            value = decode_label(message.value)
        except InvalidRecord:
            continue
        labels[value["id"]] = value["label"]
    frame, target, _ = join_labelled(records, labels)
    return frame, target


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def load_champion(registry: Registry) -> LoadedModel | None:
    ref = registry.champion()
    return registry.load(ref.version) if ref else None


@task(cache_policy=NO_CACHE)
def train_and_evaluate(frame: pd.DataFrame, target: pd.Series, champion: LoadedModel | None,
                       settings: Settings) -> tuple[Any, Evaluation, float]:
    champion_model = None
    if champion is not None:
        champion_model = _Aligned(champion.model, champion.features)
    challenge = train_challenger(frame, target, champion_model, holdout_fraction=settings.drift.holdout_fraction,
                                 margin=settings.drift.promote_margin)
    challenger, evaluation, seconds = challenge.model, challenge.evaluation, challenge.seconds
    return challenger, evaluation, seconds


@task(cache_policy=NO_CACHE)
def drift_report(registry: Registry, champion: LoadedModel | None, frame: pd.DataFrame, settings: Settings,
                 name: str) -> tuple[str | None, dict]:
    """Evidently's data-drift report of the new window against the champion's reference."""
    if champion is None:
        return None, {}
    reference = pd.DataFrame.from_records(registry.reference(champion.ref.run_id))
    snapshot = data_drift_snapshot(reference, frame)
    path = settings.home / "reports" / f"{name}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    return str(path), drifted_share(snapshot)


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def record_candidate(registry: Registry, model, frame: pd.DataFrame, target: pd.Series, evaluation: Evaluation,
                     window: TrainingWindow, trigger: dict, seconds: float, settings: Settings,
                     report: tuple[str | None, dict]):
    tags = {
        "driftctl.decision_id": trigger.get("decision_id", ""),
        "driftctl.event_ids": ",".join(trigger.get("event_ids", [])),
        "driftctl.reason": trigger.get("reason", "")[:5000],
        "driftctl.window": window.describe(),
        "driftctl.window_positions": f"{window.positions[0]}-{window.positions[1]}",
        "driftctl.data_span": f"{window.first_ts}-{window.last_ts}",
    }
    report_path, drifted = report
    if drifted:
        tags["driftctl.evidently_drifted_columns"] = f"{drifted['count']:.0f} ({drifted['share']:.0%})"
    params = {"recipe": "gradient-boosting", **{f"model.{k}": v for k, v in
                                                 model.named_steps["model"].get_params().items()}}
    return registry.record_candidate(model=model, frame=frame, labels=target, evaluation=evaluation, params=params,
                                     tags=tags, reference_rows=settings.drift.reference_rows,
                                     training_seconds=seconds, promote=evaluation.promote,
                                     artifacts=[report_path] if report_path else [])


@task(retries=3, retry_delay_seconds=1, cache_policy=NO_CACHE)
def publish_update(update: dict, window: TrainingWindow, settings: Settings) -> None:
    producer = make_producer(window.bootstrap_servers, settings.kafka)
    try:
        producer.send(settings.kafka.topics.model_updates, key=update["name"].encode(), value=encode(update))
        producer.flush(timeout=10)
    finally:
        producer.close()


@flow(name="retrain", log_prints=True)
def retrain(window: TrainingWindow, trigger: dict) -> dict:
    """Retrain on `window`; `trigger` names the decision and drift events that asked for it."""
    settings = Settings()
    logger = get_run_logger()
    ledger = Ledger(settings.ledger_url)
    registry = Registry.from_settings(settings)
    event_id = (trigger.get("event_ids") or [None])[0]
    try:
        frame, target = load_window(window, settings)
        champion = load_champion(registry)
        model, evaluation, seconds = train_and_evaluate(frame, target, champion, settings)
        report = drift_report(registry, champion, frame, settings, trigger.get("decision_id") or "bootstrap")
        run_id, version = record_candidate(registry, model, frame, target, evaluation, window, trigger,
                                           seconds, settings, report)
    except Exception as exc:
        ledger.append("failure", reason=f"retrain failed: {exc}", model_name=registry.model_name,
                      event_id=event_id, payload={"trigger": trigger, "window": window.model_dump(mode="json")})
        raise
    finally:
        ledger.close()
    outcome = {"promoted": evaluation.promote, "version": version, "run_id": run_id, "reason": evaluation.reason,
               "challenger_accuracy": evaluation.challenger_accuracy,
               "champion_accuracy": evaluation.champion_accuracy, "rows": len(frame)}
    ledger = Ledger(settings.ledger_url)
    try:
        provenance = {"run_id": run_id, "trigger": trigger, "evaluation": outcome,
                      "window": window.model_dump(mode="json"),
                      "previous": champion.ref.as_dict() if champion else None}
        if not evaluation.promote:
            ledger.append("rejection", reason=evaluation.reason, model_name=registry.model_name,
                          event_id=event_id, payload=provenance)
            logger.info("challenger rejected: %s", evaluation.reason)
            return outcome
        update = {"schema_version": 1, "name": registry.model_name, "version": version, "run_id": run_id,
                  "reason": trigger.get("reason", ""), "event_ids": trigger.get("event_ids", []),
                  "decision_id": trigger.get("decision_id"), "promoted_at": time.time()}
        ledger.append("promotion", reason=trigger.get("reason", ""), model_name=registry.model_name,
                      model_version=version, event_id=event_id, payload=provenance)
        publish_update(update, window, settings)
        logger.info("promoted %s version %s: %s", registry.model_name, version, evaluation.reason)
        return outcome
    finally:
        ledger.close()


class _Aligned:
    """A champion that picks its own feature columns from a holdout frame."""

    def __init__(self, model, features: list[str]):
        self.model, self.features = model, features

    def predict(self, X: pd.DataFrame):
        return self.model.predict(X.reindex(columns=self.features))
