"""The retrain flows: load the window, train a challenger, judge it against the champion,
record the provenance in MLflow and the ledger, promote the winner, announce it.

`retrain` runs on a window the drift policy names (in-process, or as the
`retrain-on-drift` deployment triggered by the `driftctl.drift.detected` event);
`scheduled_retrain` runs the same path on the latest window a monitor recorded in the
ledger (the `retrain-nightly` deployment). At most one retrain per model is in flight:
a lease in the ledger's database decides, across processes and machines.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from threadpoolctl import threadpool_limits

from driftctl.messages import ModelUpdate, RetrainTrigger, TrainingWindow
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from serving.codec import check_features, decode_label, decode_telemetry
from serving.kafka_io import read_ranges
from serving.promotion import Change, ChangeFailed, Lease, change_champion, reconcile
from training.datasets import FeatureSchema, join_labelled
from training.evaluate import Evaluation, train_challenger
from training.recipes import RECIPES, recipe_of
from training.registry import LoadedModel, ModelRef, Registry, iso_time

RECIPE = RECIPES[0]


class NoWindow(Exception):
    """No monitor has recorded a training window yet: a scheduled retrain has nothing to learn from."""


class ForeignCluster(Exception):
    """The window names a Kafka cluster other than the configured one: the event is not a credential."""


def servers(bootstrap: str) -> frozenset[str]:
    """A bootstrap list as a set of `host:port`, for comparison.

    >>> servers(" B:9092,a:9092 ") == servers("a:9092,b:9092")
    True
    """
    return frozenset(s.strip().lower() for s in bootstrap.split(",") if s.strip())


def check_cluster(window: TrainingWindow, settings: Settings) -> None:
    """Refuse a window on another cluster than the configured one: whoever can emit the Prefect
    event would otherwise choose the training data (and the configured SASL credentials would be
    sent there). With no cluster configured (the demo's embedded broker, started by the process
    that also runs the flow in-process) the monitor's own window is the only source."""
    configured = settings.kafka.bootstrap_servers
    if configured and servers(window.bootstrap_servers) != servers(configured):
        raise ForeignCluster(f"the training window names the Kafka cluster {window.bootstrap_servers!r}, not the "
                             f"configured {configured!r}: refused")


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def load_window(window: TrainingWindow, settings: Settings, schema: FeatureSchema | None = None
                ) -> tuple[pd.DataFrame, pd.Series]:
    """The window's labelled records. With the champion's `schema`, a record its scorers
    reject (an extra key, a type change) never becomes training data: one such record
    would otherwise add a column to the next champion."""
    # The labels are read on a second consumer meanwhile: each read waits on the broker as much as it decodes.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="window-labels") as pool:
        labels = pool.submit(_window_labels, window, settings)
        records = []
        for message in read_ranges(window.bootstrap_servers, settings.kafka, window.telemetry_topic,
                                   window.telemetry):
            try:
                record = decode_telemetry(message.value, settings.serving.max_message_bytes)
                if schema is not None:
                    check_features(record["features"], schema, settings.serving.missing_features, unseen="accept")
                records.append(record)
            except Exception:  # any failure on one message: already dead-lettered by the scorer, never fatal here
                continue
        frame, target, _ = join_labelled(records, labels.result())
    return frame, target


def _window_labels(window: TrainingWindow, settings: Settings) -> dict[Any, Any]:
    labels: dict[Any, Any] = {}
    for message in read_ranges(window.bootstrap_servers, settings.kafka, window.labels_topic, window.labels):
        try:
            value = decode_label(message.value)
        except Exception:
            continue
        labels[value["id"]] = value["label"]
    return labels


# The challenger this process registered last, by registry and model. In the warm retrain process
# (flows.trigger.ChildProcessRetrain) the next retrain's champion is mostly the one the previous retrain
# promoted: reused, not downloaded, hashed and deserialized again (a second or more beside busy stages).
_registered: dict[tuple[str, str], LoadedModel] = {}


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def load_champion(registry: Registry) -> LoadedModel | None:
    """The champion the alias names now. Not compiled: the flow scores frames with the pipeline."""
    ref = registry.champion()
    if ref is None:
        return None
    kept = _registered.get((registry.tracking_uri, registry.model_name))
    if kept is not None and kept.ref == ref:  # the same version of the same run: what the alias names
        return kept
    return registry.load(ref.version, compiled=False)


# A fit gives the GIL up and takes it back thousands of times (HistGradientBoosting's Cython loops);
# beside busy threads (the monitor's, in-process) each take waits for the switch interval (5 ms by
# default). The demo's three candidate fits beside three busy threads: 12-18 s at 5 ms, 4 s at 0.5 ms
# (benchmarks/results/retrain_latency.md, 2026-11-27 perf6).
TRAINING_SWITCH_INTERVAL = 0.0005


@contextmanager
def switch_interval(seconds: float) -> Iterator[None]:
    """The interpreter's thread switch interval set for the block (it is process-wide), then restored."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@task(cache_policy=NO_CACHE)
def train_and_evaluate(frame: pd.DataFrame, target: pd.Series, champion: LoadedModel | None,
                       settings: Settings, tails: tuple[int, ...] = (),
                       z: float | None = None) -> tuple[Any, Evaluation, float, int]:
    """The challenger, its verdict, its training time and the newest rows of `frame` it learned from
    (`tails`: the decision's candidate windows, `DriftSettings.candidate_windows`)."""
    champion_model = None
    if champion is not None:
        champion_model = _Aligned(champion.model, champion.features)
    # One OpenMP thread: the flow shares its process with Prefect's and Kafka's GIL-bound
    # threads, and OpenMP workers spinning against them made a fit many times slower.
    with threadpool_limits(limits=1, user_api="openmp"), switch_interval(TRAINING_SWITCH_INTERVAL):
        challenge = train_challenger(frame, target, champion_model, recipe=RECIPE,
                                     holdout_fraction=settings.drift.holdout_fraction,
                                     margin=settings.drift.promote_margin, tails=tails, z=z,
                                     judge_iterations=settings.drift.candidate_judge_iterations,
                                     recipes=settings.drift.candidate_recipes)
    return challenge.model, challenge.evaluation, challenge.seconds, challenge.rows


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def drift_report(registry: Registry, champion: LoadedModel, frame: pd.DataFrame, settings: Settings,
                 name: str, run_id: str) -> dict:
    """Evidently's data-drift report of the window against the champion's reference,
    attached to the retrain's run. Rendered after the decision is announced: it is
    evidence for the record, not part of the gate (and Evidently takes seconds to import)."""
    from drift.report import data_drift_snapshot, drifted_share

    reference = pd.DataFrame.from_records(registry.reference(champion.ref.run_id))
    snapshot = data_drift_snapshot(reference, frame)
    path = settings.home / "reports" / f"{name}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    drifted = drifted_share(snapshot)
    registry.client.log_artifact(run_id, str(path), artifact_path="evidence")
    if drifted:
        registry.set_run_tags(run_id, {"driftctl.evidently_drifted_columns":
                                       f"{drifted['count']:.0f} ({drifted['share']:.0%})"})
    return {"path": str(path), **drifted}


def evidence_summary(trigger: RetrainTrigger) -> str:
    """One line per drift event: which statistic crossed which threshold, over which window."""
    lines = [f"{e.detector} ({e.kind}) {e.statistic:.4g} vs threshold {e.threshold:.4g} at record {e.index} "
             f"over {e.window}" for e in trigger.evidence]
    return "; ".join(lines) or f"none (no drift event: {trigger.kind})"


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def record_candidate(registry: Registry, model: Any, frame: pd.DataFrame, target: pd.Series, evaluation: Evaluation,
                     window: TrainingWindow, trigger: RetrainTrigger, seconds: float,
                     settings: Settings) -> tuple[str, int | None]:
    # A window spans labelled records (TrainingWindow.from_positions refuses none): its times are set.
    assert window.first_ts is not None and window.last_ts is not None
    tags = {
        "driftctl.decision_id": trigger.decision_id,
        "driftctl.incident": trigger.incident or "",
        "driftctl.trigger_kind": trigger.kind,
        "driftctl.event_ids": ",".join(trigger.event_ids),
        "driftctl.reason": trigger.reason[:5000],
        "driftctl.drift_evidence": evidence_summary(trigger)[:5000],
        "driftctl.window": window.describe(),
        "driftctl.window_positions": f"{window.positions[0]}-{window.positions[1]}",
        "driftctl.data_span": f"{iso_time(window.first_ts)}/{iso_time(window.last_ts)}",  # an ISO 8601 interval
        "driftctl.trained_at": iso_time(time.time()),
        "driftctl.model_kind": f"{recipe_of(model)}: {type(model.named_steps['model']).__name__}",
        "driftctl.decision": "promoted" if evaluation.promote else "rejected",
        "driftctl.decision_reason": evaluation.reason,
    }
    params = {"recipe": recipe_of(model), "promote_margin": settings.drift.promote_margin,
              "holdout_fraction": settings.drift.holdout_fraction,
              **{f"model.{k}": v for k, v in model.named_steps["model"].get_params().items()}}
    documents = {"evidence/trigger.json": trigger.model_dump(mode="json"),
                 "evidence/window.json": window.model_dump(mode="json")}
    run_id, version = registry.record_candidate(
        model=model, frame=frame, labels=target, evaluation=evaluation, params=params, tags=tags,
        reference_rows=settings.drift.reference_rows, training_seconds=seconds, promote=evaluation.promote,
        documents=documents, description=version_description(trigger, evaluation))
    if version is not None:  # what Registry.load would give back (the schema and accuracy it logged)
        _registered[(registry.tracking_uri, registry.model_name)] = LoadedModel(
            ModelRef(registry.model_name, version, run_id), model, FeatureSchema.from_frame(frame),
            evaluation.challenger_accuracy)
    return run_id, version


@task(cache_policy=NO_CACHE)
def promote(change: Change, registry: Registry, ledger: Ledger, lease: Lease, bootstrap: str,
            settings: Settings) -> int:
    """Intent, fenced compare-and-set alias move, announcement, record (serving.promotion); undone
    and recorded on failure, so no retry here."""
    return change_champion(change, registry=registry, ledger=ledger, lease=lease, bootstrap=bootstrap,
                           kafka=settings.kafka)


def retrain_run_name() -> str:
    """What a retrain run is, as its name in the Prefect UI: model, trigger kind and incident
    (the drift's incident id, else its first drift event, else the decision)."""
    given = flow_run.get_parameters().get("trigger") or {}
    trigger = given if isinstance(given, RetrainTrigger) else RetrainTrigger.model_validate(given)
    incident = trigger.incident or trigger.first_event or trigger.decision_id
    return f"{Settings().mlflow.model_name} {trigger.kind} retrain {incident}"


def scheduled_run_name() -> str:
    return f"{Settings().mlflow.model_name} scheduled retrain {time.strftime('%Y-%m-%d', time.gmtime())}"


def run_logger() -> Any:
    """Prefect's run logger, at INFO whatever the process's own logging says: the CLI quiets
    the `prefect` loggers (their INFO lines would cut through its progress bars), which left
    in-process runs without logs in the UI. Run logs go to the API only, not the terminal."""
    import logging

    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return get_run_logger()


@flow(name="retrain", log_prints=True, flow_run_name=retrain_run_name)
def retrain(window: TrainingWindow, trigger: RetrainTrigger) -> dict:
    """Retrain on `window`; `trigger` names the decision and drift events that asked for it
    (Prefect validates a dict, such as an event's payload, into a `RetrainTrigger`)."""
    run_logger().info("retrain asked for by %s (decision %s) on %s", trigger.kind, trigger.decision_id,
                      window.describe())
    return run_retrain(window, trigger, Settings())


def run_retrain(window: TrainingWindow, trigger: RetrainTrigger, settings: Settings) -> dict:
    """The flow's body: one retrain under the model's lease, or a recorded skip."""
    try:
        check_cluster(window, settings)
    except ForeignCluster as exc:
        ledger = Ledger.from_settings(settings)
        try:
            ledger.append("failure", reason=f"retrain refused, champion unchanged: {exc}",
                          model_name=settings.mlflow.model_name, event_id=trigger.first_event,
                          payload={"trigger": trigger.model_dump(mode="json"),
                                   "window": window.model_dump(mode="json")})
        finally:
            ledger.close()
        raise
    logger = run_logger()
    decision_id = trigger.decision_id
    registry = Registry.from_settings(settings)
    ledger = Ledger.from_settings(settings)
    lease = Lease(ledger, registry.model_name, f"{decision_id}/{flow_run.get_id() or uuid.uuid4().hex}",
                  settings.retrain.lease_seconds)
    try:
        if not lease.acquire():
            current = ledger.holder(lease.name) or "a retrain that just ended"
            reason = f"skipped: another retrain of {registry.model_name} is in flight ({current})"
            if not current.startswith(f"{decision_id}/"):  # a duplicate of the running decision adds nothing
                ledger.append("skipped", reason=reason, model_name=registry.model_name, event_id=trigger.first_event,
                              payload={"trigger": trigger.model_dump(mode="json"),
                                       "window": window.model_dump(mode="json")})
            logger.warning(reason)
            return {"promoted": False, "skipped": True, "reason": reason}
        try:
            # A change a crash left half done is ended first, so this one starts from an agreed champion.
            reconcile(registry=registry, ledger=ledger, bootstrap=window.bootstrap_servers, kafka=settings.kafka)
            done = ledger.outcome(decision_id)
            if done is not None:  # the same decision delivered twice: it already ran
                reason = f"skipped: decision {decision_id} already ended ({done.kind}, ledger entry {done.id})"
                logger.warning(reason)
                return {"promoted": False, "skipped": True, "reason": reason}
            return _retrain_once(window, trigger, settings, registry, ledger, lease)
        finally:
            lease.release()
    finally:
        ledger.close()


def _retrain_once(window: TrainingWindow, trigger: RetrainTrigger, settings: Settings, registry: Registry,
                  ledger: Ledger, lease: Lease) -> dict:
    logger = run_logger()
    event_id = trigger.first_event
    provenance: dict[str, Any] = {"trigger": trigger.model_dump(mode="json"), "window": window.model_dump(mode="json")}
    run_id: str | None = None
    try:
        champion = load_champion(registry)
        frame, target = load_window(window, settings, champion.schema if champion else None)
        logger.info("window loaded: %d labelled rows from %s", len(frame), window.describe())
        provenance["previous"] = champion.ref.as_dict() if champion else None
        logger.info("champion: %s", f"version {champion.ref.version}" if champion else "none yet")
        # A bootstrap is promoted without a gate: the only champion it can replace is the provisional one
        # trained on fewer of the same first records (drift.policy.Bootstrap).
        bootstrap = trigger.kind == "bootstrap"
        model, evaluation, seconds, rows = train_and_evaluate(frame, target, None if bootstrap else champion, settings,
                                                            trigger.candidates, trigger.promote_z)
        if bootstrap and champion is not None:
            evaluation = replace(evaluation, reason=f"bootstrap: replaces the provisional version "
                                                    f"{champion.ref.version} (challenger "
                                                    f"{evaluation.challenger_accuracy:.4f} on "
                                                    f"{evaluation.holdout_rows} holdout rows)")
        logger.info("challenger trained in %.1f s: %s", seconds, evaluation.reason)
        # Another candidate window may have won: the model's rows (and reference) are the newest `rows`.
        frame, target = frame.iloc[len(frame) - rows:], target.iloc[len(frame) - rows:]
        run_id, version = record_candidate(registry, model, frame, target, evaluation, window, trigger,
                                           seconds, settings)
        logger.info("recorded MLflow run %s%s", run_id, f", registered version {version}" if version else "")
        outcome: dict[str, Any] = {"promoted": evaluation.promote, "version": version, "run_id": run_id,
                                   "reason": evaluation.reason,
                                   "challenger_accuracy": evaluation.challenger_accuracy,
                                   "champion_accuracy": evaluation.champion_accuracy, "margin": evaluation.margin,
                                   "holdout_rows": evaluation.holdout_rows, "rows": len(frame),
                                   "training_seconds": seconds}
        provenance.update(run_id=run_id, evaluation=outcome)
        if not evaluation.promote:
            provenance["report"] = _report(registry, champion, frame, settings, trigger, run_id)
            ledger.append("rejection", reason=evaluation.reason, model_name=registry.model_name,
                          event_id=event_id, payload=provenance)
            logger.info("challenger rejected: %s", evaluation.reason)
            _publish_decision(registry, settings, window, trigger, outcome, champion)
            return outcome
        reason = trigger.reason or evaluation.reason
        assert version is not None  # a promoted challenger was registered
        update = ModelUpdate(name=registry.model_name, version=version, run_id=run_id, reason=reason,
                             event_ids=trigger.event_ids, decision_id=trigger.decision_id,
                             previous_version=champion.ref.version if champion else None,
                             trained_on=(max(window.positions[0], window.positions[1] - len(frame)),
                                         window.positions[1]))
        promote(Change("promotion", update, champion.ref if champion else None, reason, provenance, event_id),
                registry, ledger, lease, window.bootstrap_servers, settings)
        logger.info("promoted %s version %s: %s", registry.model_name, version, evaluation.reason)
        # Done: nothing after this point may undo the promotion.
        # Evidence for the record, attached to the run (it never undoes the decision).
        outcome["report"] = _report(registry, champion, frame, settings, trigger, run_id)
        _publish_decision(registry, settings, window, trigger, outcome, champion)
        return outcome
    except Exception as exc:
        notes = []
        if run_id is not None:
            try:
                registry.set_run_tags(run_id, {"driftctl.decision": "failed", "driftctl.failure": str(exc)[:5000]})
            except Exception as tag_exc:
                notes.append(f"run not tagged: {tag_exc}")
        if not isinstance(exc, ChangeFailed):  # a failed change recorded its own failure, against its intent
            ledger.append("failure", reason=f"retrain failed, champion unchanged: {type(exc).__name__}: {exc}",
                          model_name=registry.model_name, event_id=event_id,
                          payload={**provenance, "run_id": run_id, "notes": notes})
        raise


@flow(name="scheduled_retrain", log_prints=True, flow_run_name=scheduled_run_name)
def scheduled_retrain(reason: str = "scheduled retrain: a model's value has a half life") -> dict:
    """The same path as `retrain`, on the latest window a monitor recorded in the ledger.

    The window is exact (topic, partition, offset ranges of the newest labelled records),
    written by the monitor every `retrain.checkpoint_every` labelled records: it never
    comes from `end_offsets`, which Tansu reports per batch.
    """
    settings = Settings()
    run_logger().info("scheduled retrain: %s", reason)
    ledger = Ledger.from_settings(settings)
    model_name = settings.mlflow.model_name
    try:
        checkpoint = ledger.latest("window", model_name=model_name)
        if checkpoint is None:
            message = (f"no training window recorded for {model_name} yet: a running monitor records one every "
                       f"{settings.retrain.checkpoint_every} labelled records")
            ledger.append("failure", reason=f"scheduled retrain failed, champion unchanged: {message}",
                          model_name=model_name,
                          payload={"trigger": RetrainTrigger(kind="schedule", reason=reason).model_dump(mode="json")})
            raise NoWindow(message)
        window = TrainingWindow.model_validate(checkpoint.payload["window"])
        age = time.time() - checkpoint.at
        trigger = RetrainTrigger(kind="schedule",
                                 reason=(f"{reason}; the latest {window.positions[1] - window.positions[0]} labelled "
                                         f"records (window recorded {age:.0f} s ago, ledger entry {checkpoint.id})"))
        ledger.append("decision", reason=trigger.reason, model_name=model_name,
                      payload={"action": "retrain", "id": trigger.decision_id, "window": list(window.positions),
                               "kind": "schedule"})
    finally:
        ledger.close()
    return retrain(window=window, trigger=trigger)


def _links(registry: Registry, settings: Settings, run_id: str, version: int | None) -> dict[str, str]:
    """Where the MLflow UI shows the run and the version (when `up` said where the UI is)."""
    ui = settings.mlflow.ui_url.rstrip("/")
    if not ui:
        return {}
    links = {"run": f"{ui}/#/experiments/{registry.experiment_id()}/runs/{run_id}"}
    if version:
        links["version"] = f"{ui}/#/models/{registry.model_name}/versions/{version}"
    return links


def decision_markdown(model_name: str, window: TrainingWindow, trigger: RetrainTrigger, outcome: dict[str, Any],
                      champion: ModelRef | None, links: dict[str, str]) -> str:
    """The decision as the retrain run's markdown artifact: evidence, window, both models'
    metrics, promoted or not and why, and where MLflow keeps the run and the version."""
    # A window spans labelled records (TrainingWindow.from_positions refuses none): its times are set.
    assert window.first_ts is not None and window.last_ts is not None

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f} %"

    promoted = outcome.get("promoted")
    verdict = (f"**promoted** as version {outcome.get('version')}" if promoted
               else "**rejected**: the champion keeps serving")
    run = f"[{outcome.get('run_id')}]({links['run']})" if "run" in links else f"`{outcome.get('run_id')}`"
    lines = [f"# {model_name}: {trigger.kind} retrain", "",
             f"Decision `{trigger.decision_id}`: {verdict}.", "",
             *([f"Incident `{trigger.incident}`: every drift event and decision of this drift, in "
                f"`driftctl history`.", ""] if trigger.incident else []),
             f"**Why:** {outcome.get('reason')}", "",
             f"**Asked for because:** {trigger.reason or '-'}", "",
             "## Drift evidence", ""]
    events = trigger.evidence
    if events:
        lines += ["| event | detector | kind | statistic | threshold | at record |", "|---|---|---|---|---|---|"]
        lines += [f"| `{e.id}` | {e.detector} | {e.kind} | {e.statistic:.4g} | {e.threshold:.4g} | {e.index} |"
                  for e in events]
    else:
        lines.append(evidence_summary(trigger))
    lines += ["", "## Training window", "",
              f"- labelled positions {window.positions[0]}-{window.positions[1]}",
              f"- data from {iso_time(window.first_ts)} to {iso_time(window.last_ts)}",
              f"- offsets: {window.describe()}",
              "", "## Champion against challenger", "",
              "| model | accuracy on the holdout |", "|---|---|",
              f"| champion ({f'version {champion.version}' if champion else 'none'}) | "
              f"{pct(outcome.get('champion_accuracy'))} |",
              f"| challenger | {pct(outcome.get('challenger_accuracy'))} |", "",
              f"Margin to beat: {pct(outcome.get('margin'))}; holdout {outcome.get('holdout_rows')} of "
              f"{outcome.get('rows')} rows; trained in {outcome.get('training_seconds', 0):.1f} s.", "",
              "## MLflow", "", f"- run {run}"]
    if outcome.get("version"):
        version = outcome["version"]
        lines.append(f"- model version [{model_name} {version}]({links['version']})" if "version" in links
                     else f"- model version `{model_name}` {version}")
    return "\n".join(lines)


def _publish_decision(registry: Registry, settings: Settings, window: TrainingWindow, trigger: RetrainTrigger,
                      outcome: dict[str, Any], champion: LoadedModel | None) -> None:
    """The run's markdown artifact; it never undoes a decision (the version's description is
    written when the version is registered)."""
    logger = run_logger()
    try:
        links = _links(registry, settings, outcome["run_id"], outcome.get("version"))
        markdown = decision_markdown(registry.model_name, window, trigger, outcome,
                                     champion.ref if champion else None, links)
        key = "".join(c if c.isalnum() else "-" for c in f"retrain-{registry.model_name}".lower())
        create_markdown_artifact(markdown, key=key, description=f"decision {trigger.decision_id}")
        logger.info("decision published: %s", links.get("version") or links.get("run") or outcome["run_id"])
    except Exception as exc:
        logger.error("decision artifact not published: %s", exc)


def version_description(trigger: RetrainTrigger, evaluation: Evaluation) -> str:
    """The model version's description in MLflow: why it exists, in two sentences."""
    before = f"the champion at {100 * evaluation.champion_accuracy:.1f} %" \
        if evaluation.champion_accuracy is not None else "no champion"
    return (f"{trigger.kind.capitalize()} retrain, decision {trigger.decision_id}: "
            f"{trigger.reason or evidence_summary(trigger)}. "
            f"Challenger {100 * evaluation.challenger_accuracy:.1f} % against {before} "
            f"on {evaluation.holdout_rows} holdout rows, margin to beat {100 * evaluation.margin:.1f} points.")


def _report(registry: Registry, champion: LoadedModel | None, frame: pd.DataFrame, settings: Settings,
            trigger: RetrainTrigger, run_id: str) -> dict[str, Any]:
    """The Evidently report, or why there is none; its failure never undoes a decision."""
    if champion is None:
        return {"skipped": "no champion to compare the window with"}
    try:
        return drift_report(registry, champion, frame, settings, trigger.decision_id, run_id)
    except Exception as exc:
        get_run_logger().error("Evidently report failed: %s", exc)
        return {"error": f"{type(exc).__name__}: {exc}"}


class _Aligned:
    """A champion that picks its own feature columns from a holdout frame."""

    def __init__(self, model: Any, features: list[str]):
        self.model, self.features = model, features

    def predict(self, X: pd.DataFrame) -> Any:
        return self.model.predict(X.reindex(columns=self.features))
