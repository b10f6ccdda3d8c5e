"""The drift monitor: joins telemetry, predictions and late labels; runs the detectors;
lets the policy decide; starts the retrain it asks for (one at a time)."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pandas as pd
from threadpoolctl import threadpool_limits

from drift.guard import ProbationWatch, Verdict
from drift.watch import DriftWatch, Observation, Step
from driftctl.messages import (
    Action,
    Decision,
    DriftEvent,
    Label,
    ModelUpdate,
    Prediction,
    RetrainTrigger,
    Telemetry,
    TrainingWindow,
)
from driftctl.settings import Settings
from driftctl.stores.heartbeats import Heartbeat
from driftctl.stores.ledger import Ledger
from serving.codec import InvalidRecord, decode_checked, decode_label, decode_prediction, decode_telemetry
from serving.deadletter import dead_letter, reason_of
from serving.incidents import IncidentLog
from serving.kafka_io import commit_or_warn, make_group_consumer, make_producer
from serving.promotion import reconcile_if_free
from serving.rollback import roll_back
from serving.updates import ModelUpdates, follow_alias
from serving.workspace import SnapshotRecorder
from training.registry import ModelRef, Registry

if TYPE_CHECKING:
    from kafka import KafkaProducer

    from training.datasets import FeatureSchema

log = logging.getLogger(__name__)

Retrain = Callable[[TrainingWindow, RetrainTrigger], dict]


class Monitor:
    def __init__(self, settings: Settings, bootstrap: str, registry: Registry, ledger: Ledger,
                 retrain: Retrain, stop: threading.Event, name: str = "monitor"):
        self.settings = settings
        self.bootstrap = bootstrap
        self.registry = registry
        self.ledger = ledger
        self.incidents = IncidentLog(ledger)  # one drift, one incident: later events folded into it
        self.retrain = retrain
        self.stop = stop
        self.name = name
        self.topics = settings.kafka.topics
        self.watch = DriftWatch(settings.drift)  # detectors and policy: the same engine the backtest replays
        self.champion: ModelRef | None = None
        # The champion's FeatureSchema: records it would reject feed no detector.
        self.schema: FeatureSchema | None = None
        self.telemetry_seen = 0
        self.labelled = 0
        self.invalid = 0  # telemetry and labels it could not use (the scorers dead-letter those)
        self.last_invalid: str | None = None
        self.dead_letters = 0  # what the monitor itself dead-lettered: bad predictions, failures on one message
        self.events: list[DriftEvent] = []
        self.decisions: list[Decision] = []
        self.outcomes: list[dict] = []
        self._pending: OrderedDict[str, dict] = OrderedDict()  # id -> what has arrived of it
        self._pending_bytes = 0  # the messages (as received) behind _pending, capped by serving.join_max_bytes
        self._done: OrderedDict[str, None] = OrderedDict()  # ids fully joined, bounded like _pending
        # Per labelled record: telemetry (p, o), label (p, o), ts; the newest only (a sliding window).
        self._positions: deque[tuple] = deque(maxlen=settings.retrain.positions_kept)
        # Labelled positions below this were the champion's training data: its errors there are
        # in-sample (near zero) and would make the out-of-sample error rate look like a rise.
        self._trained_until = 0
        self._training_end: int | None = None  # window end of the retrain in flight
        self._training_replaces = True  # whether that retrain may replace a champion (False: a bootstrap)
        self._retraining: Future | None = None
        self._retraining_incident: str | None = None
        self._incident_of: dict[str, str | None] = {}  # decision id -> incident, for the probation's row
        self._champion_incident: str | None = None  # the incident whose retrain made the champion
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrain")
        self._producer: KafkaProducer | None = None  # made by run()
        # Probation of a freshly promoted champion against the one it replaced.
        self.probation: ProbationWatch | None = None
        self._previous_model: Future | None = None
        self._probation_rows: list[tuple] = []  # (features, champion correct, label)
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="previous-model")
        self.rollbacks: list = []
        self._alias_ahead = False  # the champion was followed from the alias before its own update arrived
        self._reconcile_at: float | None = None  # when to try again to end an interrupted champion change
        self.recent: deque[dict] = deque(maxlen=settings.drift.data_window)  # newest features, for snapshots

    @property
    def busy(self) -> bool:
        return self._retraining is not None

    def vitals(self) -> dict[str, Any]:
        """What the monitor's heartbeat carries beyond counts: its detectors' current statistics,
        the champion's recent accuracy (1 - the error detector's estimate) and the label-free
        `estimated_accuracy` of the served predictions, for status and plots."""
        rejected = {"rejected": self.invalid, "last_rejection": self.last_invalid} if self.invalid else {}
        return {"index": self.telemetry_seen, "labelled": self.labelled, "busy": self.busy, **rejected,
                **self.watch.vitals()}

    def run(self) -> None:
        updates = ModelUpdates(self.bootstrap, self.settings.kafka)
        producer = self._producer = make_producer(self.bootstrap, self.settings.kafka)
        consumer = make_group_consumer(self.bootstrap, self.settings.kafka, self.settings.kafka.monitor_group)
        consumer.subscribe([self.topics.telemetry, self.topics.labels, self.topics.predictions])
        heartbeat = Heartbeat.from_settings(self.settings, "monitor", self.bootstrap,
                                            self.settings.kafka.monitor_group)
        snapshots = SnapshotRecorder.from_settings(self.settings)
        try:
            self._reconcile()
            ref = self.registry.champion()
            if ref is not None:
                self._on_champion(ref)
            while not self.stop.is_set():
                if self._reconcile_at is not None and time.monotonic() > self._reconcile_at:
                    self._reconcile()
                update = updates.poll()
                wanted = follow_alias(self.registry, update) if update is not None else None
                if update is not None and wanted is not None and (self.champion is None
                                                                  or wanted != self.champion.version):
                    if wanted == update.version:
                        self._on_champion(ModelRef(update.name, wanted, update.run_id), update)
                    else:  # the alias moved elsewhere (a rollback without Kafka, or ahead of the topic)
                        self._on_champion(self.registry.ref(wanted))
                        self._alias_ahead = True
                elif update is not None and wanted == update.version and self._alias_ahead:
                    # The update of the version the alias was followed to: it names what it replaced.
                    self._on_champion(ModelRef(update.name, wanted, update.run_id), update)
                self._collect_retrain()
                batch = consumer.poll(timeout_ms=self.settings.serving.poll_timeout_ms, max_records=2000)
                heartbeat.beat(consumer, records=self.telemetry_seen, extra=self.vitals, dead_letters=self.dead_letters,
                               model_version=self.champion.version if self.champion else None)
                snapshots.maybe_record(self)
                for tp, messages in batch.items():
                    for message in messages:
                        self._dispatch_safely(tp.topic, message)
                self._maybe_bootstrap()
                if batch:
                    producer.flush()
                    commit_or_warn(consumer, "monitor")
        finally:
            self.incidents.flush()
            heartbeat.stopped(records=self.telemetry_seen,
                              model_version=self.champion.version if self.champion else None)
            snapshots.close(self)
            consumer.close()
            updates.close()
            producer.close()
            self._executor.shutdown(wait=True)
            self._loader.shutdown(wait=False, cancel_futures=True)

    # -- champion changes -------------------------------------------------------------
    def _reconcile(self) -> None:
        """End a champion change a crash left half done (serving.promotion), so the alias, the
        ledger and the scorers agree; while a retrain or rollback holds the lease, try again later."""
        try:
            done = reconcile_if_free(registry=self.registry, ledger=self.ledger, bootstrap=self.bootstrap,
                                     kafka=self.settings.kafka, holder=f"monitor/{self.name}/{os.getpid()}",
                                     ttl=self.settings.retrain.lease_seconds)
        except Exception as exc:
            log.error("interrupted champion changes not reconciled yet: %s", exc)
            done = None
        self._reconcile_at = None if done is not None else time.monotonic() + 10.0

    def _on_champion(self, ref: ModelRef, update: ModelUpdate | None = None) -> None:
        log.info("monitor follows %s version %s", ref.name, ref.version)
        self.champion = ref
        self._alias_ahead = False
        self._champion_incident = self._incident_of.get((update.decision_id if update is not None else None) or "")
        self.probation, self._previous_model, self._probation_rows = None, None, []
        previous = update.previous_version if update is not None and not update.rollback else None
        if self.settings.retrain.auto_rollback and previous and previous != ref.version:
            # Judge the new champion against the one it replaced on the next labelled records.
            self.probation = ProbationWatch(version=ref.version, previous=previous,
                                            rows=self.settings.retrain.probation_rows,
                                            margin=self.settings.retrain.rollback_margin)
            self._previous_model = self._loader.submit(self.registry.load, previous)
        if self._training_end is not None:
            self._trained_until = self._training_end
        try:
            self.schema = self.registry.schema(ref.run_id)
        except Exception as exc:
            log.error("no feature schema for %s version %s, records unchecked: %s", ref.name, ref.version, exc)
            self.schema = None
        try:
            reference = self.registry.reference(ref.run_id)
        except Exception as exc:  # no reference: label-based detection goes on, data drift pauses
            log.error("no training reference for %s version %s, data-drift checks paused: %s",
                      ref.name, ref.version, exc)
            reference = None
        self.watch.on_champion(ref.as_dict(), reference)

    # -- the join -----------------------------------------------------------------------
    def _dispatch_safely(self, topic: str, message: Any) -> None:
        """No message can stop the monitor: any failure on one is counted with its reason and,
        unless a scorer letters it already (bad telemetry, bad labels), dead-lettered here."""
        try:
            self._dispatch(topic, message)
        except Exception as exc:
            reason = reason_of(exc)
            self.invalid += 1
            self.last_invalid = reason
            lettered_by_scorer = isinstance(exc, InvalidRecord) and topic != self.topics.predictions
            if self.invalid <= 10 or self.invalid % 1000 == 0:
                log.warning("monitor skips %s[%s]@%s (%d so far): %s", topic, message.partition, message.offset,
                            self.invalid, reason)
            if not lettered_by_scorer and self._producer is not None:
                self.dead_letters += 1
                self._producer.send(self.topics.dead_letter, key=topic.encode(),
                                    value=dead_letter(reason, topic, message.partition, message.offset,
                                                      message.value, stage=f"monitor {self.name}"))

    def _dispatch(self, topic: str, message: Any) -> None:  # a kafka ConsumerRecord
        # One branch per topic, so each decoded message keeps its own type. A record delivered
        # again after a rejoin (at-least-once) was counted once already: it is skipped.
        slot: dict[str, Any]
        if topic == self.topics.telemetry:
            serving = self.settings.serving
            telemetry: Telemetry
            if self.schema is not None:  # what the scorers reject must not feed the detectors either
                telemetry, _ = decode_checked(message.value, self.schema, serving.missing_features, unseen="accept",
                                              max_bytes=serving.max_message_bytes)
            else:
                telemetry = decode_telemetry(message.value, serving.max_message_bytes)
            record_id = telemetry["id"]
            if record_id in self._done:
                return
            self._on_telemetry(telemetry)
            slot = {"telemetry": (message.partition, message.offset), "ts": telemetry["ts"],
                    "features": telemetry["features"], "seq": self.telemetry_seen}
        elif topic == self.topics.labels:
            label: Label = decode_label(message.value)
            record_id = label["id"]
            if record_id in self._done:
                return
            slot = {"label": label["label"], "label_at": (message.partition, message.offset)}
        else:
            prediction: Prediction = decode_prediction(message.value)
            record_id = prediction["id"]
            if record_id in self._done:
                return
            online = prediction.get("online")
            # The champion's own prediction (what it is judged on) may differ from the one served.
            champion = prediction.get("champion")
            slot = {"prediction": champion["prediction"] if champion else prediction["prediction"],
                    "version": prediction["model"]["version"],
                    "online": online.get("prediction") if online else None, "served": prediction["prediction"],
                    "served_by": prediction.get("served_by") or "champion",
                    "confidence": prediction.get("confidence")}
            self.watch.served(slot["served_by"], slot["confidence"])  # the label-free accuracy estimate
            seq = self._pending.get(record_id, {}).get("seq")
            if seq is None or seq > self._trained_until:  # not a record the champion trained on
                self._on_prediction(prediction)
        state = self._pending.setdefault(record_id, {})
        state.update(slot)
        state["bytes"] = state.get("bytes", 0) + len(message.value)
        self._pending_bytes += len(message.value)
        self._join(record_id, state)
        serving = self.settings.serving
        while self._pending and (len(self._pending) > serving.join_max_records
                                 or self._pending_bytes > serving.join_max_bytes):
            self._pending_bytes -= self._pending.popitem(last=False)[1]["bytes"]

    def _join(self, record_id: str, state: dict) -> None:
        if "label" not in state:
            return
        if "telemetry" in state and not state.get("positioned"):
            state["positioned"] = True
            state["position"] = self.labelled
            self._positions.append((*state["telemetry"], *state["label_at"], state["ts"]))
            self.labelled += 1
            if self.labelled % self.settings.retrain.checkpoint_every == 0:
                self._checkpoint()
            decision = self.watch.on_labelled(self.labelled)
            if decision is not None:
                self._act(decision)
        if "prediction" in state and not state.get("scored"):
            state["scored"] = True
            self.watch.served_label(state["served_by"], state["confidence"], state["served"] == state["label"])
            in_sample = state.get("position", self._trained_until) < self._trained_until
            if self.champion is not None and state["version"] == self.champion.version and not in_sample:
                online = state.get("online")
                outcome = Observation(champion_right=state["prediction"] == state["label"],
                                      online_right=None if online is None else online == state["label"])
                self._take(self.watch.observe(outcome, index=self.telemetry_seen, labelled=self.labelled,
                                              context={"record_id": record_id}))
        if state.get("positioned") and state.get("scored"):
            # Label, features and prediction all here (in any order): judge the probation once.
            if self.probation is not None and self.champion is not None and state["version"] == self.champion.version:
                self._judge_probation(state)
            self._pending_bytes -= self._pending.pop(record_id, {}).get("bytes", 0)
            self._done[record_id] = None
            if len(self._done) > self.settings.serving.join_max_records:
                self._done.popitem(last=False)

    def _on_telemetry(self, value: Telemetry) -> None:
        self.telemetry_seen += 1
        self.recent.append(value["features"])
        self._take(self.watch.observe(Observation(features=value["features"]), index=self.telemetry_seen,
                                      labelled=self.labelled, context={"record_id": value["id"]}))

    def _on_prediction(self, value: Prediction) -> None:
        """Prediction drift: the served classes and confidence of the current champion."""
        if self.champion is None or value["model"]["version"] != self.champion.version:
            return
        proba = value.get("proba") or {}
        champion = value.get("champion")
        served = Observation(prediction=champion["prediction"] if champion else value["prediction"],
                             score=max(proba.values()) if proba else None)
        self._take(self.watch.observe(served, index=self.telemetry_seen, labelled=self.labelled,
                                      context={"record_id": value["id"]}))

    def _take(self, step: Step) -> None:
        for event in step.events:
            self._emit(event)
        for decision in step.decisions:
            self._act(decision)

    # -- probation and automatic rollback ------------------------------------------------
    def _judge_probation(self, state: dict) -> None:
        """Collect the new champion's first labelled records; once there are enough and the
        previous model has loaded, score them all with it in one batch (a per-record
        predict would stall the poll loop) and let the watch decide."""
        # _join calls this only with a probation running and a champion set.
        probation, champion = self.probation, self.champion
        assert probation is not None and champion is not None
        self._probation_rows.append((state["features"], state["prediction"] == state["label"], state["label"]))
        if len(self._probation_rows) < probation.rows:
            return
        if self._previous_model is None or not self._previous_model.done():
            return
        try:
            previous = self._previous_model.result()
        except Exception as exc:
            log.error("probation of version %s abandoned: %s", probation.version, exc)
            self.probation, self._probation_rows = None, []
            return
        rows, self._probation_rows = self._probation_rows, []
        frame = pd.DataFrame([features for features, _, _ in rows]).reindex(columns=previous.features)
        with threadpool_limits(limits=1, user_api="openmp"):  # OpenMP spinning against GIL-bound threads
            predictions = previous.model.predict(frame)
        for (_, champion_correct, label), previous_prediction in zip(rows, predictions, strict=True):
            result = probation.update(champion_correct, previous_prediction == label)
        if result.verdict is Verdict.PENDING:
            return
        watch, self.probation, self._previous_model = probation, None, None
        evidence = {"rows": result.rows, "champion_accuracy": result.champion_accuracy,
                    "previous_accuracy": result.previous_accuracy, "margin": watch.margin,
                    "version": watch.version, "previous_version": watch.previous}
        incident = self._champion_incident
        if result.verdict is Verdict.KEEP:
            self.ledger.append("decision", reason=result.reason, model_name=champion.name,
                               model_version=watch.version,
                               payload={"action": "keep", "probation": evidence, "incident": incident})
            return
        log.warning("%s", result.reason)
        try:
            rollback = roll_back(self.settings, to=watch.previous, reason=result.reason, automatic=True,
                                 bootstrap=self.bootstrap, registry=self.registry, ledger=self.ledger,
                                 evidence={"probation": evidence, "incident": incident})
        except Exception as exc:  # recorded; the monitor goes on (an operator can roll back by hand)
            log.error("automatic rollback to version %s failed: %s", watch.previous, exc)
            self.ledger.append("failure", reason=f"automatic rollback to version {watch.previous} failed: {exc}",
                               model_name=champion.name, model_version=watch.version,
                               payload={"probation": evidence, "incident": incident})
            return
        self.rollbacks.append(rollback)

    def _checkpoint(self) -> None:
        """Record the exact window of the newest labelled records: what a scheduled retrain learns from."""
        start = max(0, self.labelled - self.settings.retrain.scheduled_rows)
        window = self.window(start, self.labelled)
        self.ledger.append("window", model_name=self.settings.mlflow.model_name,
                           reason=f"latest {self.labelled - start} labelled records",
                           payload={"window": window.model_dump(mode="json")})

    # -- decisions ----------------------------------------------------------------------
    def _emit(self, event: DriftEvent) -> DriftEvent:
        log.warning("drift: %s at %s (%.4g vs %.4g)", event.detector, event.index, event.statistic, event.threshold)
        self.events.append(event)
        assert self._producer is not None  # events come from messages, which only run() dispatches
        self._producer.send(self.topics.drift_events, key=self.name.encode(), value=event.to_json())
        self.incidents.event(event)  # its own rows when it opens an incident, else folded into it
        return event

    def _act(self, decision: Decision) -> None:
        self.decisions.append(decision)
        if decision.action is Action.RETRAIN:
            self._incident_of[decision.id] = decision.incident
        self.incidents.decision(decision, model_name=self.champion.name if self.champion else None,
                                model_version=self.champion.version if self.champion else None)
        if decision.action is Action.RETRAIN:
            self._start_retrain(decision)

    def _maybe_bootstrap(self) -> None:
        warmup = self.settings.drift.warmup
        if self.champion is None and not self.busy and self.labelled >= warmup and not self.outcomes:
            decision = Decision(action=Action.RETRAIN, window=(0, warmup),
                                reason=f"bootstrap: no champion yet; training on the first {warmup} labelled records")
            self.watch.retrain_started()
            self._act(decision)

    def window(self, start: int, end: int) -> TrainingWindow:
        base = self.labelled - len(self._positions)  # the position of the oldest one kept
        if start < base:
            log.warning("window %d-%d: positions before %d are no longer kept (retrain.positions_kept=%d); "
                        "the window starts there", start, end, base, self.settings.retrain.positions_kept)
            start = base
        rows = list(itertools.islice(self._positions, start - base, end - base))
        return TrainingWindow.from_positions(rows, bootstrap_servers=self.bootstrap,
                                             telemetry_topic=self.topics.telemetry, labels_topic=self.topics.labels,
                                             positions=(start, end))

    def _start_retrain(self, decision: Decision) -> None:
        assert decision.window is not None  # every RETRAIN decision carries the window to learn from
        window = self.window(*decision.window)
        trigger = RetrainTrigger(decision_id=decision.id, event_ids=decision.event_ids, reason=decision.reason,
                                 kind="drift" if decision.event_ids else "bootstrap", incident=decision.incident,
                                 evidence=tuple(e for e in self.events if e.id in decision.event_ids))
        log.warning("retrain: %s", decision.reason)
        self._training_end = decision.window[1]
        self._training_replaces = self.champion is not None
        self._retraining_incident = decision.incident
        self._retraining = self._executor.submit(self.retrain, window, trigger)

    def _collect_retrain(self) -> None:
        if self._retraining is None or not self._retraining.done():
            return
        future, self._retraining = self._retraining, None
        try:
            outcome = future.result()
        except Exception as exc:  # the flow recorded the failure in the ledger; the champion stays
            log.error("retrain failed, champion unchanged: %s", exc)
            outcome = {"promoted": False, "error": str(exc)}
        self.outcomes.append(outcome)
        if self._retraining_incident is not None:  # what the incident folded while it trained, before its outcome
            self.incidents.flush(self._retraining_incident)
        # The cooldown counts from the window's end, not from now (a worker may take long to
        # start), and a bootstrap (no champion replaced) starts none.
        self.watch.retrain_finished(promoted=bool(outcome.get("promoted")), labelled=self.labelled,
                                    window_end=self._training_end, replaced=self._training_replaces)

