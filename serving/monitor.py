"""The drift monitor: joins telemetry, predictions and late labels; runs the detectors;
lets the policy decide; starts the retrain it asks for (one at a time)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

from drift.detectors import DataDriftDetector, ErrorRateDetector
from drift.events import Action, Decision, DriftEvent
from drift.policy import DriftPolicy
from driftctl.health import Heartbeat, monitor_vitals
from driftctl.ledger import Ledger
from driftctl.settings import Settings
from serving.codec import InvalidRecord, decode_label, decode_telemetry, encode
from serving.kafka_io import make_group_consumer, make_producer
from serving.updates import ModelUpdates
from training.datasets import TrainingWindow
from training.registry import ModelRef, Registry

log = logging.getLogger(__name__)

Retrain = Callable[[TrainingWindow, dict], dict]


class Monitor:
    def __init__(self, settings: Settings, bootstrap: str, registry: Registry, ledger: Ledger,
                 retrain: Retrain, stop: threading.Event, name: str = "monitor"):
        self.settings = settings
        self.bootstrap = bootstrap
        self.registry = registry
        self.ledger = ledger
        self.retrain = retrain
        self.stop = stop
        self.name = name
        self.topics = settings.kafka.topics
        drift = settings.drift
        self.policy = DriftPolicy(min_train_rows=drift.min_train_rows, data_persistence=drift.data_persistence,
                                  cooldown=drift.cooldown)
        self.error_detector = ErrorRateDetector(delta=drift.error_delta)
        self.data_detector: DataDriftDetector | None = None
        self.champion: ModelRef | None = None
        self.telemetry_seen = 0
        self.labelled = 0
        self.events: list[DriftEvent] = []
        self.decisions: list[Decision] = []
        self.outcomes: list[dict] = []
        self._pending: OrderedDict[str, dict] = OrderedDict()  # id -> what has arrived of it
        self._positions: list[tuple] = []  # per labelled record: telemetry (p, o), label (p, o), ts
        self._error_positions: list[int] = []  # error-stream index -> labelled position
        self._retraining: Future | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrain")
        self._producer = None
        self.recent: deque[dict] = deque(maxlen=settings.drift.data_window)  # newest features, for snapshots

    @property
    def busy(self) -> bool:
        return self._retraining is not None

    def run(self) -> None:
        updates = ModelUpdates(self.bootstrap, self.settings.kafka)
        self._producer = make_producer(self.bootstrap, self.settings.kafka)
        consumer = make_group_consumer(self.bootstrap, self.settings.kafka, self.settings.kafka.monitor_group)
        consumer.subscribe([self.topics.telemetry, self.topics.labels, self.topics.predictions])
        from driftctl.workspace import SnapshotRecorder

        heartbeat = Heartbeat.from_settings(self.settings, "monitor", self.bootstrap,
                                            self.settings.kafka.monitor_group)
        snapshots = SnapshotRecorder.from_settings(self.settings)
        try:
            ref = self.registry.champion()
            if ref is not None:
                self._on_champion(ref)
            while not self.stop.is_set():
                update = updates.poll()
                if update is not None and (self.champion is None or int(update["version"]) != self.champion.version):
                    self._on_champion(ModelRef(update["name"], int(update["version"]), update["run_id"]))
                self._collect_retrain()
                batch = consumer.poll(timeout_ms=self.settings.serving.poll_timeout_ms, max_records=2000)
                heartbeat.beat(consumer, records=self.telemetry_seen, extra=partial(monitor_vitals, self),
                               model_version=self.champion.version if self.champion else None)
                snapshots.maybe_record(self)
                for tp, messages in batch.items():
                    for message in messages:
                        self._dispatch(tp.topic, message)
                self._maybe_bootstrap()
                if batch:
                    self._producer.flush()
                    consumer.commit()
        finally:
            heartbeat.stopped(records=self.telemetry_seen,
                              model_version=self.champion.version if self.champion else None)
            snapshots.close(self)
            consumer.close()
            updates.close()
            self._producer.close()
            self._executor.shutdown(wait=True)

    # -- champion changes -------------------------------------------------------------
    def _on_champion(self, ref: ModelRef) -> None:
        log.info("monitor follows %s version %s", ref.name, ref.version)
        self.champion = ref
        self.error_detector.reset()
        self._error_positions = []
        try:
            reference = self.registry.reference(ref.run_id)
        except Exception as exc:  # no reference: label-based detection goes on, data drift pauses
            log.error("no training reference for %s version %s, data-drift checks paused: %s",
                      ref.name, ref.version, exc)
            self.data_detector = None
            return
        self.data_detector = DataDriftDetector(reference, window=self.settings.drift.data_window,
                                               alpha=self.settings.drift.data_alpha)

    # -- the join -----------------------------------------------------------------------
    def _dispatch(self, topic: str, message) -> None:
        try:
            if topic == self.topics.telemetry:
                value = decode_telemetry(message.value)
                self._on_telemetry(value)
                slot = {"telemetry": (message.partition, message.offset), "ts": value["ts"]}
            elif topic == self.topics.labels:
                value = decode_label(message.value)
                slot = {"label": value["label"], "label_at": (message.partition, message.offset)}
            else:
                value = _decode_prediction(message.value)
                slot = {"prediction": value["prediction"], "version": value["model"]["version"]}
        except InvalidRecord:
            return  # the scorer dead-letters bad input; the monitor only skips it
        state = self._pending.setdefault(value["id"], {})
        state.update(slot)
        self._join(value["id"], state)
        if len(self._pending) > self.settings.serving.join_max_records:
            self._pending.popitem(last=False)

    def _join(self, record_id: str, state: dict) -> None:
        if "label" not in state:
            return
        if "telemetry" in state and not state.get("positioned"):
            state["positioned"] = True
            self._positions.append((*state["telemetry"], *state["label_at"], state["ts"]))
            self.labelled += 1
            decision = self.policy.on_labelled(self.labelled)
            if decision is not None:
                self._act(decision)
        if "prediction" in state and not state.get("scored"):
            state["scored"] = True
            if self.champion is not None and state["version"] == self.champion.version:
                self._on_error(record_id, state["prediction"] != state["label"])
        if state.get("positioned") and state.get("scored"):
            self._pending.pop(record_id, None)

    def _on_telemetry(self, value: dict) -> None:
        self.telemetry_seen += 1
        self.recent.append(value["features"])
        if self.data_detector is None:
            return
        self.data_detector.update(value["features"])
        if self.data_detector.n_seen % self.data_detector.window:
            return
        event = None
        if self.data_detector.drift_detected:
            evidence = self.data_detector.evidence
            event = self._emit(DriftEvent(
                detector=self.data_detector.name, kind="data", index=self.telemetry_seen,
                statistic=evidence["statistic"], threshold=evidence["threshold"],
                window={"records": evidence["window"], "end_index": self.telemetry_seen, "record_id": value["id"]},
                evidence=evidence, model=self.champion.as_dict() if self.champion else {}))
        decision = self.policy.on_data_window(event, labelled=self.labelled)
        if decision is not None:
            self._act(decision)

    def _on_error(self, record_id: str, error: bool) -> None:
        self._error_positions.append(self.labelled)
        self.error_detector.update(error)
        if not self.error_detector.drift_detected:
            return
        evidence = self.error_detector.evidence
        # ADWIN's own cut point often lies well before the real change; the records
        # labelled from the detection on are the ones known to follow the new concept.
        change_at = self.labelled
        evidence["adwin_change_at_labelled"] = self._error_positions[self.error_detector.change_at]
        event = self._emit(DriftEvent(
            detector=self.error_detector.name, kind="concept", index=self.telemetry_seen,
            statistic=evidence["statistic"], threshold=evidence["threshold"],
            window={"errors": evidence["window"], "record_id": record_id, "change_at_labelled": change_at},
            evidence=evidence, model=self.champion.as_dict() if self.champion else {}))
        self._act(self.policy.on_event(event, change_at=change_at, labelled=self.labelled))

    # -- decisions ----------------------------------------------------------------------
    def _emit(self, event: DriftEvent) -> DriftEvent:
        log.warning("drift: %s at %s (%.4g vs %.4g)", event.detector, event.index, event.statistic, event.threshold)
        self.events.append(event)
        self._producer.send(self.topics.drift_events, key=self.name.encode(), value=event.to_json())
        self.ledger.append("drift_event", reason=f"{event.detector} {event.statistic:.4g} vs {event.threshold:.4g}",
                           model_name=event.model.get("name"), model_version=event.model.get("version"),
                           event_id=event.id, payload=event.model_dump(mode="json"))
        return event

    def _act(self, decision: Decision) -> None:
        self.decisions.append(decision)
        self.ledger.append("decision", reason=decision.reason, event_id=(decision.event_ids or (None,))[0],
                           model_name=self.champion.name if self.champion else None,
                           model_version=self.champion.version if self.champion else None,
                           payload=decision.model_dump(mode="json"))
        if decision.action is Action.RETRAIN:
            self._start_retrain(decision)

    def _maybe_bootstrap(self) -> None:
        warmup = self.settings.drift.warmup
        if self.champion is None and not self.busy and self.labelled >= warmup and not self.outcomes:
            decision = Decision(action=Action.RETRAIN, window=(0, warmup),
                                reason=f"bootstrap: no champion yet; training on the first {warmup} labelled records")
            self.policy.in_flight = True
            self._act(decision)

    def window(self, start: int, end: int) -> TrainingWindow:
        rows = self._positions[start:end]
        telemetry: dict[int, list[int]] = {}
        labels: dict[int, list[int]] = {}
        for t_part, t_off, l_part, l_off, _ in rows:
            for ranges, part, off in ((telemetry, t_part, t_off), (labels, l_part, l_off)):
                span = ranges.setdefault(part, [off, off + 1])
                span[0], span[1] = min(span[0], off), max(span[1], off + 1)
        return TrainingWindow(
            bootstrap_servers=self.bootstrap, telemetry_topic=self.topics.telemetry, labels_topic=self.topics.labels,
            telemetry={p: tuple(s) for p, s in telemetry.items()}, labels={p: tuple(s) for p, s in labels.items()},
            positions=(start, end), first_ts=min(r[4] for r in rows), last_ts=max(r[4] for r in rows))

    def _start_retrain(self, decision: Decision) -> None:
        window = self.window(*decision.window)
        trigger = {"decision_id": decision.id, "event_ids": list(decision.event_ids), "reason": decision.reason,
                   "evidence": [e.model_dump(mode="json") for e in self.events if e.id in decision.event_ids]}
        log.warning("retrain: %s", decision.reason)
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
        self.policy.on_retrain_finished(promoted=bool(outcome.get("promoted")), labelled=self.labelled)


def _decode_prediction(raw: bytes) -> dict:
    import json

    try:
        value = json.loads(raw)
        value["id"], value["model"]["version"], value["prediction"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidRecord(f"bad prediction: {exc}") from None
    return value
