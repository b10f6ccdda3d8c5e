"""The drift monitor: joins telemetry, predictions and late labels; runs the detectors;
lets the policy decide; starts the retrain it asks for (one at a time)."""

from __future__ import annotations

import logging
import os
import threading
import time
from array import array
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
from driftctl.stores.ledger import Backlog, Ledger
from serving.codec import InvalidRecord, check_features, decode_label, decode_prediction, decode_telemetry
from serving.deadletter import dead_letter, reason_of
from serving.incidents import IncidentLog
from serving.joiner import Admission
from serving.kafka_io import PacedReader, make_producer
from serving.memory import TRIM_EVERY, release_freed_memory, tune_allocator
from serving.promotion import reconcile_if_free
from serving.rollback import RollbackBusy, RollbackSuperseded, roll_back
from serving.updates import ModelUpdates
from serving.workspace import SnapshotRecorder
from training.registry import ModelRef, Registry

if TYPE_CHECKING:
    from kafka import KafkaProducer

    from training.datasets import FeatureSchema

log = logging.getLogger(__name__)

Retrain = Callable[[TrainingWindow, RetrainTrigger], dict]

# The sides of a record the monitor joins, as bits; EVICTED marks an entry the join's caps dropped.
TELEMETRY, LABEL, PREDICTION, EVICTED = 1, 2, 4, 8
# How far (Kafka time) one of the monitor's partitions may be read ahead of the one furthest behind.
# None: a backlog written in a burst packs thousands of records in a millisecond's timestamps. Each
# turn reads at most PACE_RECORDS of each partition due, and no more than a tenth of what the join
# holds (a step of one partition spans partitions-times as much of the stream), which bounds the
# overshoot.
PACE_SKEW_MS, PACE_RECORDS = 0, 2000
# A turn that read fewer than TURN_RECORDS and drained what it read (each partition to its high
# watermark: no backlog) is followed by a wait until TURN_SECONDS have passed since it began: a monitor
# that keeps up with its scorer otherwise turned every few milliseconds, each turn polls of its nine
# consumers, a commit and a flush for a few dozen records, CPU the scorer needed on two cores.
TURN_RECORDS, TURN_SECONDS = 2000, 0.1
BOOTSTRAP_RETRY = 30.0  # seconds between tries of a bootstrap retrain that failed
# What the join counts for an entry besides its telemetry as received (the entry's dict, its id,
# the ordered map's node, positions and small values; a label's or prediction's message adds its own
# size until the entry is compacted): its memory, not just the messages', is what join_max_bytes caps.
ENTRY_BYTES = 500  # measured: ~490 for a labelled record waiting, ~560 for telemetry alone (tracemalloc)


class Monitor:
    def __init__(self, settings: Settings, bootstrap: str, registry: Registry, ledger: Ledger,
                 retrain: Retrain, stop: threading.Event, name: str = "monitor"):
        self.settings = settings
        self.bootstrap = bootstrap
        self.registry = registry
        self.ledger = ledger  # champion changes (under the lease) write to it directly
        # Its own records (events, decisions, windows) wait in order while the database cannot take
        # them: a locked or full ledger delays them, never the detectors, and loses none.
        # Tried again 5 s after a failure, the spacing doubling to twice the busy timeout: a database that
        # keeps failing holds the monitor at most a third of its time.
        # Written on a worker thread: a database that accepts the connection and never answers held the
        # loop (and every detector) for as long as the socket did.
        self.records = Backlog(ledger, self._fault, retry=5.0, retry_max=max(5.0, 2 * settings.ledger.busy_timeout),
                               background=True, stuck_after=max(10.0, 2 * settings.ledger.busy_timeout))
        self.incidents = IncidentLog(self.records)  # one drift, one incident: later events folded into it
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
        # The newest only (serving.monitor_history): a drift that lasts fires an event every data window.
        history = settings.serving.monitor_history
        self.events: deque[DriftEvent] = deque(maxlen=history)
        self.decisions: deque[Decision] = deque(maxlen=history)
        self.outcomes: deque[dict] = deque(maxlen=history)
        self._pending: OrderedDict[str, dict] = OrderedDict()  # id -> what has arrived of it
        self._pending_bytes = 0  # the messages (as received) behind _pending, capped by serving.join_max_bytes
        # Ids whose entry is finished (joined, not waited for, or evicted) -> the sides seen (bits
        # below, EVICTED if the join dropped it): a side seen again is a redelivery, a new one after
        # an eviction a near miss. Bounded like _pending, and keyed by the id's hash: an entry's size
        # does not depend on the id's length (ids are the producer's, as long as a message allows).
        # A dict and the order of its keys (an OrderedDict adds a linked node per entry and a table of
        # them: one long-lived object more per record, ~13 MB more at 200,000).
        self._done: dict[int, int] = {}
        self._done_order: deque[int] = deque()
        self._admit = Admission()  # new ids, while a side lags beyond what the join holds
        self._await = Admission()  # labelled records kept waiting for their prediction
        self.join_evicted = 0  # entries the caps dropped before they joined
        self.joined_predictions = 0  # labels joined to the prediction served
        # Per labelled record: telemetry (p, o), label (p, o), ts; the newest only (a sliding window).
        self._positions = PositionRing(settings.retrain.positions_kept)
        # Labelled positions below this were the champion's training data: its errors there are
        # in-sample (near zero) and would make the out-of-sample error rate look like a rise.
        self._trained_until = 0
        self._training_end: int | None = None  # window end of the retrain in flight
        self._training_replaces = True  # whether that retrain may replace a champion (False: a bootstrap)
        self._retraining: Future | None = None
        self._retraining_incident: str | None = None
        self._bootstrap_at = 0.0  # when a failed bootstrap may be tried again
        self._bootstrap_failed = False  # the last full bootstrap fit failed: tried again on the newest records
        self._bootstrapping = False  # the retrain being started is a bootstrap fit (drift.policy.Bootstrap)
        self._provisional: set[int] = set()  # provisional bootstrap champions: never archived champions
        self._incident_of: dict[str, str | None] = {}  # decision id -> incident, for the probation's row
        self._champion_incident: str | None = None  # the incident whose retrain made the champion
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrain")
        self._producer: KafkaProducer | None = None  # made by run()
        self.reader: PacedReader | None = None  # made by run()
        # Probation of a freshly promoted champion against the one it replaced.
        self.probation: ProbationWatch | None = None
        self._previous_model: Future | None = None
        self._probation_rows: list[tuple] = []  # (features, champion correct, label)
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="previous-model")
        self.rollbacks: deque = deque(maxlen=history)
        # An automatic rollback refused because a retrain held the lease: (arguments, when to try again).
        self._rollback_due: tuple[dict, float] | None = None
        self._alias_ahead = False  # the champion was followed from the alias before its own update arrived
        self._reconcile_at: float | None = None  # when to try again to end an interrupted champion change
        self.recent: deque[dict] = deque(maxlen=settings.drift.data_window)  # newest features, for snapshots
        self.faults = 0  # failures of its own stores (the ledger's database, MLflow): logged, never fatal
        self.last_fault: str | None = None
        self._unfollowed: ModelUpdate | None = None  # the newest update whose alias is still to be read
        self._follow_at = 0.0
        self._resolving: tuple[ModelUpdate, Future[ModelRef | None]] | None = None
        self._resolver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alias")
        # Per scorer instance: its online learner's renewals, the most seen in its predictions' lineage.
        self._renewals: OrderedDict[str, int] = OrderedDict()
        # The archive (DriftSettings.archive): the newest labelled records (position, features, label),
        # what archived champions are judged on after a concept drift, and the judgement in flight.
        # Each row keeps its telemetry as received, decoded only for the few probes judged: decoding every
        # labelled record's features again was ~4% of the monitor's dispatch (round13-perf12.md).
        self._labelled_rows: deque[tuple[int, bytes, Any]] = deque(maxlen=4 * settings.drift.archive_probe)
        self._archive_judging: Future[dict | None] | None = None
        self.reinstatements: deque = deque(maxlen=history)
        self._reinstated: dict[int, tuple[float, int]] = {}  # version -> (accuracy, rows) it came back on

    @property
    def busy(self) -> bool:
        return self._retraining is not None

    def vitals(self) -> dict[str, Any]:
        """What the monitor's heartbeat carries beyond counts: its detectors' current statistics,
        the champion's recent accuracy (1 - the error detector's estimate) and the label-free
        `estimated_accuracy` of the served predictions, for status and plots."""
        rejected = {"rejected": self.invalid, "last_rejection": self.last_invalid} if self.invalid else {}
        faults = {"faults": self.faults, "last_fault": self.last_fault} if self.faults else {}
        if self.records.waiting or self.records.dropped:
            faults |= {"ledger_waiting": self.records.waiting, "ledger_dropped": self.records.dropped}
        return {"index": self.telemetry_seen, "labelled": self.labelled, "busy": self.busy, **rejected, **faults,
                "join": self.join_vitals(), **self.watch.vitals()}

    def join_vitals(self) -> dict[str, Any]:
        """What the join holds and what it dropped: entries evicted by its caps, partners that came
        after their entry was evicted, and the share of records it keeps while a side lags."""
        return {"held": len(self._pending), "bytes": self._pending_bytes, "evicted": self.join_evicted,
                "labelled_predictions": self.joined_predictions, "records": self._admit.vitals(),
                "awaiting_prediction": self._await.vitals()}

    def _fault(self, what: str, exc: Exception) -> None:
        """A store failed under the monitor (ledger's database locked or full, MLflow away): logged,
        counted and in its heartbeat for `status`; the record being handled is not blamed for it."""
        self.faults += 1
        self.last_fault = f"{what}: {reason_of(exc)}"
        if self.faults <= 10 or self.faults % 100 == 0:
            log.error("monitor: %s (%d store faults so far)", self.last_fault, self.faults)

    def run(self) -> None:
        tune_allocator()  # before the threads below allocate
        updates = ModelUpdates(self.bootstrap, self.settings.kafka)
        producer = self._producer = make_producer(self.bootstrap, self.settings.kafka)
        # A consumer per partition, read in step by Kafka time (serving.kafka_io.PacedReader): one
        # consumer on the three topics ran one topic's backlog far past what the join holds.
        reader = PacedReader.open(self.bootstrap, self.settings.kafka, self.settings.kafka.monitor_group,
                                  [self.topics.telemetry, self.topics.labels, self.topics.predictions],
                                  max_records=max(1, min(PACE_RECORDS, self.settings.serving.join_max_records // 10)),
                                  skew_ms=PACE_SKEW_MS, stop=self.stop.is_set,
                                  # Stamped with their telemetry's time (the scorer): read in step with it,
                                  # the join holds the same stretch of the stream however far a scorer lags.
                                  follow=[self.topics.predictions])
        self.reader = reader  # for the soak's memory log
        consumers = list(reader.consumers.values())
        heartbeat = Heartbeat.from_settings(self.settings, "monitor", self.bootstrap,
                                            self.settings.kafka.monitor_group)
        snapshots = SnapshotRecorder.from_settings(self.settings)
        trimmed = time.monotonic()
        try:
            self._reconcile()
            ref = self._first_champion()
            if ref is not None:
                self._on_champion(ref)
            while not self.stop.is_set():
                if self._reconcile_at is not None and time.monotonic() > self._reconcile_at:
                    self._reconcile()
                if self._rollback_due is not None and time.monotonic() >= self._rollback_due[1]:
                    self._roll_back(self._rollback_due[0])
                update, wanted, alias = self._followed(updates.poll())
                if update is not None and wanted is not None and (self.champion is None
                                                                  or wanted != self.champion.version):
                    if wanted == update.version:
                        self._on_champion(ModelRef(update.name, wanted, update.run_id), update)
                    else:  # the alias moved elsewhere (a rollback without Kafka, or ahead of the topic)
                        assert alias is not None  # what the alias named when it was read
                        self._on_champion(alias)
                        self._alias_ahead = True
                elif update is not None and wanted == update.version and self._alias_ahead:
                    # The update of the version the alias was followed to: it names what it replaced.
                    self._on_champion(ModelRef(update.name, wanted, update.run_id), update)
                self._collect_retrain()
                self.records.flush()  # what waits for the ledger, when a try is due
                self._collect_archive()
                turn = time.monotonic()
                batch = reader.poll(timeout_ms=self.settings.serving.poll_timeout_ms)
                heartbeat.beat(consumers, records=self.telemetry_seen, extra=self.vitals,
                               dead_letters=self.dead_letters,
                               model_version=self.champion.version if self.champion else None)
                snapshots.maybe_record(self)
                for topic, messages in batch:
                    for message in messages:
                        self._dispatch_safely(topic, message)
                self._maybe_bootstrap()
                if time.monotonic() - trimmed > TRIM_EVERY:
                    trimmed = time.monotonic()
                    release_freed_memory()
                if batch:
                    producer.flush()
                    reader.commit("monitor")
                    if reader.drained and sum(len(messages) for _, messages in batch) < TURN_RECORDS:
                        self.stop.wait(TURN_SECONDS - (time.monotonic() - turn))
        finally:
            self._safely("incidents not flushed to the ledger", self.incidents.flush)
            if not self.records.flush(now=True):
                log.error("monitor stops with %d ledger entries not written", self.records.waiting)
            heartbeat.stopped(records=self.telemetry_seen,
                              model_version=self.champion.version if self.champion else None)
            snapshots.close(self)
            reader.close()
            updates.close()
            producer.close()
            self._executor.shutdown(wait=True)
            self._loader.shutdown(wait=False, cancel_futures=True)
            self._resolver.shutdown(wait=False, cancel_futures=True)

    # -- champion changes -------------------------------------------------------------
    def _first_champion(self) -> ModelRef | None:
        """The alias at start, asked again while MLflow cannot say: with no champion known the
        monitor would train one of its own."""
        while True:
            try:
                return self.registry.champion()
            except Exception as exc:
                self._fault("the champion alias cannot be read yet", exc)
                if self.stop.wait(5.0):
                    return None

    def _followed(self, update: ModelUpdate | None) -> tuple[ModelUpdate | None, int | None, ModelRef | None]:
        """An update with the version the alias names now (the topic is a hint), once read. The alias is
        read on another thread: a hung MLflow delays following a change, never the detectors. One the
        registry could not confirm is asked again every 10 s."""
        if update is not None:
            self._unfollowed, self._follow_at = update, 0.0
        if self._resolving is None and self._unfollowed is not None and time.monotonic() >= self._follow_at:
            pending, self._unfollowed = self._unfollowed, None
            self._resolving = (pending, self._resolver.submit(self._read_alias, pending))
        if self._resolving is None or not self._resolving[1].done():
            return None, None, None
        (done, future), self._resolving = self._resolving, None
        alias = future.result()
        if alias is None:
            if self._unfollowed is None:
                self._unfollowed, self._follow_at = done, time.monotonic() + 10.0
            return None, None, None
        return done, alias.version, alias

    def _read_alias(self, update: ModelUpdate) -> ModelRef | None:
        try:
            ref = self.registry.champion()
        except Exception as exc:
            self._fault(f"model update for version {update.version} not followed yet: the registry cannot say "
                        f"which version is champion", exc)
            return None
        if ref is not None and ref.version != update.version:
            log.warning("model update names version %s but the champion alias points at %s: following the alias",
                        update.version, ref.version)
        return ref

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
        if self._rollback_due is not None and self._rollback_due[0]["expect"] != ref.version:
            log.warning("automatic rollback from version %s dropped: version %s is champion now",
                        self._rollback_due[0]["expect"], ref.version)
            self._rollback_due = None
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
        holdout: tuple[float | None, int | None] | None = self._reinstated.pop(ref.version, None)
        options = self.settings.drift
        if holdout is None and (options.holdout_gap or options.first_train_gap is not None):
            try:
                holdout = self.registry.holdout(ref.run_id)
            except Exception as exc:  # unknown: the holdout and first-try tests stay silent for this champion
                log.error("no holdout accuracy for %s version %s: %s", ref.name, ref.version, exc)
        trained_on = update.trained_on if update is not None and update.version == ref.version else None
        self.watch.on_champion(ref.as_dict(), reference, holdout=holdout, trained_on=trained_on)

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
        # One branch per topic, so each decoded message keeps its own type. A side delivered
        # again after a rejoin (at-least-once) was counted once already: it is skipped.
        slot: dict[str, Any]
        if topic == self.topics.telemetry:
            telemetry: Telemetry = decode_telemetry(message.value, self.settings.serving.max_message_bytes)
            record_id, side = telemetry["id"], TELEMETRY
            if self.schema is not None:  # what the scorers reject must not feed the detectors either
                try:
                    check_features(telemetry["features"], self.schema, self.settings.serving.missing_features,
                                   unseen="accept")
                except InvalidRecord:
                    if record_id not in self._pending:  # its label, when it comes, is not kept waiting for it
                        self._finish(record_id, TELEMETRY)
                    raise
            if self._seen_before(record_id, side):
                return
            self._on_telemetry(telemetry)
            # The message as received, not its decoded features (~3 times the memory): a record may
            # wait long for its label or prediction; its features are decoded again when they are used.
            slot = {"telemetry": (message.partition, message.offset), "ts": telemetry["ts"],
                    "raw": message.value, "seq": self.telemetry_seen}
        elif topic == self.topics.labels:
            label: Label = decode_label(message.value)
            record_id, side = label["id"], LABEL
            if self._seen_before(record_id, side):
                return
            slot = {"label": label["label"], "label_at": (message.partition, message.offset)}
        else:
            prediction: Prediction = decode_prediction(message.value)
            record_id, side = prediction["id"], PREDICTION
            if self._seen_before(record_id, side):
                return
            online = prediction.get("online")
            # The champion's own prediction (what it is judged on) may differ from the one served.
            champion = prediction.get("champion")
            renewals = online.get("renewals") if online else None
            scorer = str(prediction.get("scorer"))
            if isinstance(renewals, int):
                self._follow_renewals(scorer, renewals)
            slot = {"prediction": champion["prediction"] if champion else prediction["prediction"],
                    "version": prediction["model"]["version"],
                    "online": online.get("prediction") if online else None, "served": prediction["prediction"],
                    "served_by": prediction.get("served_by") or "champion",
                    "confidence": prediction.get("confidence"), "scorer": scorer, "renewals": renewals}
            self.watch.served(slot["served_by"], slot["confidence"])  # the label-free accuracy estimate
            seq = self._pending.get(record_id, {}).get("seq")
            if seq is None or seq > self._trained_until:  # not a record the champion trained on
                self._on_prediction(prediction)
        marker = self._done.get(hash(record_id))
        if marker is not None:  # its entry is finished: nothing left to join this side to
            self._done[hash(record_id)] = marker | side
            if marker & EVICTED:  # it came after its entry was evicted: the join holds too short a stretch
                waiting_for_prediction = side == PREDICTION and marker & TELEMETRY and marker & LABEL
                if waiting_for_prediction:
                    self._await.near_miss()
                elif side != PREDICTION:
                    self._admit.near_miss()
            return
        state = self._pending.get(record_id)
        if state is None:
            held = len(self._pending)
            # A prediction alone may belong to a record not kept waiting for it: the same share decides.
            if not self._admit.admits(record_id, held) or (side == PREDICTION
                                                            and not self._await.admits(record_id, held)):
                return  # outside the share kept while a side lags (counted there)
            state = self._pending[record_id] = {}
        state.update(slot)
        size = len(message.value) + (0 if "bytes" in state else ENTRY_BYTES)
        state["bytes"] = state.get("bytes", 0) + size
        self._pending_bytes += size
        self._join(record_id, state)
        serving = self.settings.serving
        while self._pending and (len(self._pending) > serving.join_max_records
                                 or self._pending_bytes > serving.join_max_bytes):
            evicted_id, evicted = self._pending.popitem(last=False)
            self._pending_bytes -= evicted["bytes"]
            self.join_evicted += 1
            sides = _sides(evicted)
            # Evicted without telemetry that exists (it was labelled or scored): its telemetry came
            # too early or too late to meet it, a near miss even when the ids evicted are no longer
            # remembered. A prediction alone is most likely a scorer's far behind its label.
            if sides == PREDICTION:
                self._await.near_miss()
            elif sides & LABEL and not sides & TELEMETRY:
                self._admit.near_miss()
            self._finish(evicted_id, sides | EVICTED)

    def _seen_before(self, record_id: str, side: int) -> bool:
        """Whether this side of the record was handled already (a redelivery)."""
        marker = self._done.get(hash(record_id))
        if marker is not None:
            return bool(marker & side)
        state = self._pending.get(record_id)
        return state is not None and bool(_sides(state) & side)

    def _finish(self, record_id: str, marker: int) -> None:
        key = hash(record_id)
        if key not in self._done:
            self._done_order.append(key)
        self._done[key] = marker
        if len(self._done) > self.settings.serving.join_max_records:
            del self._done[self._done_order.popleft()]

    def _join(self, record_id: str, state: dict) -> None:
        if "label" not in state:
            return
        if "telemetry" in state and "position" not in state:
            state["position"] = self.labelled
            (t_partition, t_offset), (l_partition, l_offset) = state["telemetry"], state["label_at"]
            self._positions.append(t_partition, t_offset, l_partition, l_offset, state["ts"])
            self.labelled += 1
            if self.labelled % self.settings.retrain.checkpoint_every == 0:
                self._checkpoint()
            if self.settings.drift.archive:
                self._labelled_rows.append((state["position"], state["raw"], state["label"]))
            decision = self.watch.on_labelled(self.labelled)
            if decision is not None:
                self._act(decision)
        if "prediction" in state and not state.get("scored"):
            state["scored"] = True
            self.joined_predictions += 1
            if not self._renewed_since(state):
                self.watch.served_label(state["served_by"], state["confidence"], state["served"] == state["label"])
            in_sample = state.get("position", self._trained_until) < self._trained_until
            if self.champion is not None and state["version"] == self.champion.version and not in_sample:
                online = state.get("online")
                outcome = Observation(champion_right=state["prediction"] == state["label"],
                                      online_right=None if online is None else online == state["label"])
                self._take(self.watch.observe(outcome, index=self.telemetry_seen, labelled=self.labelled,
                                              context={"record_id": record_id}))
        if self.settings.drift.archive and self.champion is not None:
            self._maybe_judge_archive()
        if "position" in state and state.get("scored"):
            # Label, features and prediction all here (in any order): judge the probation once.
            online = state.get("online")
            self.watch.served_outcome(state["position"], state["served"] == state["label"],
                                      None if online is None else online == state["label"],
                                      self.champion is not None and state["version"] == self.champion.version)
            if self.probation is not None and self.champion is not None and state["version"] == self.champion.version:
                self._judge_probation(state)
            self._pending_bytes -= self._pending.pop(record_id, {}).get("bytes", 0)
            self._finish(record_id, TELEMETRY | LABEL | PREDICTION)
        elif "position" in state and "prediction" not in state:
            if not self._await.admits(record_id, len(self._pending)):
                # Labelled, its prediction far behind: not kept waiting (its prediction, when it comes,
                # still feeds the prediction-drift and label-free checks).
                self._pending_bytes -= self._pending.pop(record_id, {}).get("bytes", 0)
                self._finish(record_id, TELEMETRY | LABEL)
            elif "label_at" in state:
                # Waits for its prediction (a scorer behind, the long wait): only what that join
                # reads, in a dict of five keys (its table's smallest size); the label's message and
                # the positions are not held. The cap counts what is held.
                compact = {"raw": state["raw"], "label": state["label"], "position": state["position"],
                           "seq": state["seq"], "bytes": ENTRY_BYTES + len(state["raw"])}
                self._pending_bytes += compact["bytes"] - state["bytes"]
                self._pending[record_id] = compact

    def _follow_renewals(self, scorer: str, renewals: int) -> None:
        """A scorer's online learner renewed itself (`training.online.Renewing`; its predictions carry
        the count): the label-free estimate's online and blend calibration start afresh, as in the
        backtest. Counts only grow (a restarted scorer is a new instance): an older prediction read
        late from another partition is no renewal."""
        known = self._renewals.get(scorer)
        if known is not None and renewals <= known:
            return
        self._renewals[scorer] = renewals
        self._renewals.move_to_end(scorer)
        if len(self._renewals) > 64:  # instances that ended long ago
            self._renewals.popitem(last=False)
        if known is not None:
            self.watch.online_renewed()

    def _renewed_since(self, state: dict) -> bool:
        """Whether the online learner that scored this record (served by it or the blend) has renewed
        since: its label says nothing of the learner serving now, so it calibrates nothing."""
        renewals = state.get("renewals")
        return (state["served_by"] != "champion" and renewals is not None
                and renewals < self._renewals.get(state["scorer"], renewals))

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
        self._probation_rows.append((_features(state), state["prediction"] == state["label"], state["label"]))
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
            self.records.append("decision", reason=result.reason, model_name=champion.name,
                                model_version=watch.version,
                                payload={"action": "keep", "probation": evidence, "incident": incident})
            return
        log.warning("%s", result.reason)
        self._roll_back({"to": watch.previous, "expect": watch.version, "reason": result.reason,
                         "evidence": {"probation": evidence, "incident": incident}})

    def _roll_back(self, decided: dict) -> None:
        """The probation's rollback, against the version it judged (`expect`). Refused while a
        retrain or rollback holds the lease: tried again every 10 s, until it moves the alias or
        the champion is no longer that version (a newer promotion: dropped, logged)."""
        self._rollback_due = None
        name = self.champion.name if self.champion is not None else self.settings.mlflow.model_name
        try:
            rollback = roll_back(self.settings, to=decided["to"], reason=decided["reason"], automatic=True,
                                 bootstrap=self.bootstrap, registry=self.registry, ledger=self.ledger,
                                 evidence=decided["evidence"], expect=decided["expect"])
        except RollbackBusy as exc:
            log.warning("automatic rollback to version %s waits: %s", decided["to"], exc)
            self._rollback_due = (decided, time.monotonic() + 10.0)
            return
        except RollbackSuperseded as exc:
            log.warning("automatic rollback to version %s dropped: %s", decided["to"], exc)
            return
        except Exception as exc:  # recorded; the monitor goes on (an operator can roll back by hand)
            log.error("automatic rollback to version %s failed: %s", decided["to"], exc)
            self.records.append("failure", reason=f"automatic rollback to version {decided['to']} failed: {exc}",
                                model_name=name, model_version=decided["expect"], payload=decided["evidence"])
            return
        self.rollbacks.append(rollback)

    # -- the archive: an earlier champion back when its concept returns ---------------------
    def _maybe_judge_archive(self) -> None:
        """Once `archive_probe` labelled records follow a concept drift (`DriftWatch.archive_due`,
        as in the backtest), judge the archived champions on them, on the loader's thread."""
        if self._archive_judging is not None:
            return
        probe = self.watch.archive_due(self.labelled)
        if probe is None:
            return
        start, end = probe
        rows = [(position, decode_telemetry(raw)["features"], label)
                for position, raw, label in self._labelled_rows if start <= position < end]
        assert self.champion is not None  # the caller checks
        self._archive_judging = self._loader.submit(self._judge_archive, self.champion, rows,
                                                    dict(self.watch.probe_online))

    def _judge_archive(self, champion: ModelRef, rows: list[tuple[int, dict, Any]],
                       online: dict[int, bool]) -> dict | None:
        """The archived versions (served before, by the ledger's alias history) against the champion
        and the online learner (`online`: position -> right) on `rows` (position, features, label):
        a reinstatement when `DriftWatch.archive_verdict` says so, as in the backtest."""
        if not rows:
            return None
        history = self.ledger.alias_history(champion.name)  # oldest first
        archived = list(dict.fromkeys(h["version"] for h in reversed(history)
                                      if h["version"] != champion.version and h["version"] not in self._provisional))
        labels = [label for _, _, label in rows]
        holdouts: dict[int, float | None] = {}  # version -> its holdout accuracy when trained

        def right(version: int) -> list[bool]:
            loaded = self.registry.load(version)
            holdouts[version] = loaded.accuracy
            frame = pd.DataFrame([features for _, features, _ in rows]).reindex(columns=loaded.features)
            with threadpool_limits(limits=1, user_api="openmp"):
                predictions = loaded.model.predict(frame)
            return [bool(p == y) for p, y in zip(predictions, labels, strict=True)]

        if not archived:
            return None
        # The ten newest, as the backtest keeps; on a tie the oldest, as there.
        verdict = self.watch.archive_verdict([position for position, _, _ in rows], right(champion.version),
                                             [(v, right(v)) for v in reversed(archived[:10])], online, holdouts)
        if verdict is None or not verdict.pop("reinstate"):
            if verdict is not None:
                log.info("archive judged on %d labelled records: best version %s %.4f against champion %.4f "
                         "(online learner %s)", len(rows), verdict["to"], verdict["accuracy"],
                         verdict["champion_accuracy"], verdict.get("online_accuracy"))
            return None
        return {**verdict, "expect": champion.version}

    def _collect_archive(self) -> None:
        if self._archive_judging is None or not self._archive_judging.done():
            return
        future, self._archive_judging = self._archive_judging, None
        try:
            verdict = future.result()
        except Exception as exc:
            log.error("archived champions not judged: %s", exc)
            return
        if verdict is None:
            return
        if self.busy:  # a retrain answers the drift already (its outcome would end the policy's wait twice)
            log.warning("reinstatement of version %s dropped: a retrain is in flight", verdict["to"])
            return
        reason = (f"reinstated: archived version {verdict['to']} {verdict['accuracy']:.4f} against champion "
                  f"{verdict['champion_accuracy']:.4f} on {verdict['rows']} labelled records since the change")
        evidence = {"archive": verdict, "incident": self.watch.policy.open_incident}
        try:
            done = roll_back(self.settings, to=verdict["to"], reason=reason, automatic=True, bootstrap=self.bootstrap,
                             registry=self.registry, ledger=self.ledger, evidence=evidence,
                             expect=verdict["expect"], kind="reinstatement")
        except (RollbackBusy, RollbackSuperseded) as exc:  # a retrain or newer change answers the drift
            log.warning("reinstatement of version %s dropped: %s", verdict["to"], exc)
            return
        except Exception as exc:  # recorded; the pending retrain still answers the drift
            log.error("reinstatement of version %s failed: %s", verdict["to"], exc)
            return
        log.warning("%s", reason)
        self.reinstatements.append(done)
        self._reinstated[verdict["to"]] = (verdict["accuracy"], verdict["rows"])
        self.watch.reinstated(labelled=self.labelled, answers=verdict.get("answers", True))

    def _checkpoint(self) -> None:
        """Record the exact window of the newest labelled records: what a scheduled retrain learns from."""
        start = max(0, self.labelled - self.settings.retrain.scheduled_rows)
        window = self.window(start, self.labelled)
        # Waits in order while the database is locked or full (a scheduled retrain uses the previous one meanwhile).
        self.records.append("window", model_name=self.settings.mlflow.model_name,
                            reason=f"latest {self.labelled - start} labelled records",
                            payload={"window": window.model_dump(mode="json")})

    def _safely(self, what: str, write: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """A ledger write the monitor can go on without (a fault, logged), never a reason to stop."""
        try:
            write(*args, **kwargs)
        except Exception as exc:
            self._fault(what, exc)

    # -- decisions ----------------------------------------------------------------------
    def _emit(self, event: DriftEvent) -> DriftEvent:
        log.warning("drift: %s at %s (%.4g vs %.4g)", event.detector, event.index, event.statistic, event.threshold)
        self.events.append(event)
        assert self._producer is not None  # events come from messages, which only run() dispatches
        self._producer.send(self.topics.drift_events, key=self.name.encode(), value=event.to_json())
        # Its own rows when it opens an incident, else folded into it; the event is on its topic either way.
        self._safely("drift event not recorded in the ledger", self.incidents.event, event)
        return event

    def _act(self, decision: Decision) -> None:
        self.decisions.append(decision)
        if decision.action is Action.RETRAIN:
            self._incident_of[decision.id] = decision.incident
            if len(self._incident_of) > self.settings.serving.monitor_history:
                del self._incident_of[next(iter(self._incident_of))]
        self._safely("decision not recorded in the ledger", self.incidents.decision, decision,
                     model_name=self.champion.name if self.champion else None,
                     model_version=self.champion.version if self.champion else None)
        if decision.action is Action.RETRAIN:
            self._start_retrain(decision)

    def _maybe_bootstrap(self) -> None:
        """Train the first champion when `drift.policy.Bootstrap` says so, as the backtest does: once
        `warmup` records are labelled, and with labels late a provisional one before, on the labels in
        once `warmup` records were seen. A bootstrap that failed (the flow's server slow to start on a
        loaded machine, MLflow away) is tried again every BOOTSTRAP_RETRY s on the newest records:
        with no champion nothing is scored."""
        boot = self.watch.bootstrap
        if self.busy or boot.done:
            return
        if self.champion is not None and not boot.provisional:
            if boot.tried_early or not self._serves_provisional(self.champion):
                boot.done = True  # a champion serves already (the registry's at start): nothing to bootstrap
                return
            # Restarted while a provisional champion served (the ledger says so): the full v1 is still owed,
            # and the provisional version stays out of the archive.
            boot.provisional = boot.tried_early = True
            self._provisional.add(self.champion.version)
        decision: Decision | None
        if self._bootstrap_failed:
            if self.labelled < self.settings.drift.warmup or time.monotonic() < self._bootstrap_at:
                return
            decision = boot.again(self.labelled)
        else:
            decision = boot.due(scored=self.telemetry_seen, labelled=self.labelled)
            if decision is None:
                return
        self._bootstrapping = True
        self.watch.retrain_started()
        self._act(decision)

    def _serves_provisional(self, champion: ModelRef) -> bool:
        """Whether `champion` was promoted as a provisional bootstrap champion (its promotion's trigger in
        the ledger; unknown counts as no: the champion then serves until a drift replaces it)."""
        try:
            entry = self.ledger.last_promotion(champion.name, champion.version)
        except Exception as exc:
            log.error("could not read the promotion of %s version %s: %s", champion.name, champion.version, exc)
            return False
        trigger = (entry.payload or {}).get("trigger") if entry is not None else None
        return bool(isinstance(trigger, dict) and trigger.get("provisional"))

    def window(self, start: int, end: int) -> TrainingWindow:
        base = self.labelled - len(self._positions)  # the position of the oldest one kept
        if start < base:
            log.warning("window %d-%d: positions before %d are no longer kept (retrain.positions_kept=%d); "
                        "the window starts there", start, end, base, self.settings.retrain.positions_kept)
            start = base
        return TrainingWindow.from_columns(*self._positions.columns(start - base, end - base),
                                           bootstrap_servers=self.bootstrap, telemetry_topic=self.topics.telemetry,
                                           labels_topic=self.topics.labels, positions=(start, end))

    def _start_retrain(self, decision: Decision) -> None:
        assert decision.window is not None  # every RETRAIN decision carries the window to learn from
        window = self.window(*decision.window)
        bootstrap, self._bootstrapping = self._bootstrapping, False
        trigger = RetrainTrigger(decision_id=decision.id, event_ids=decision.event_ids, reason=decision.reason,
                                 kind="bootstrap" if bootstrap else "drift", incident=decision.incident,
                                 candidates=decision.candidates, promote_z=decision.promote_z,
                                 provisional=bootstrap and self.watch.bootstrap.in_flight == "early",
                                 evidence=tuple(e for e in self.events if e.id in decision.event_ids))
        log.warning("retrain: %s", decision.reason)
        self._training_end = decision.window[1]
        self._training_replaces = not bootstrap  # a bootstrap replaces no champion but a provisional one
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
        boot = self.watch.bootstrap
        if boot.in_flight is not None:  # a bootstrap fit ended
            full = boot.in_flight == "full"
            if outcome.get("promoted") and not full and isinstance(outcome.get("version"), int):
                self._provisional.add(outcome["version"])
            boot.finished(promoted=bool(outcome.get("promoted")))
            self._bootstrap_failed = full and not outcome.get("promoted")
            if self._bootstrap_failed:
                self._bootstrap_at = time.monotonic() + BOOTSTRAP_RETRY
        if self._retraining_incident is not None:  # what the incident folded while it trained, before its outcome
            self._safely("incident not flushed to the ledger", self.incidents.flush, self._retraining_incident)
        # The cooldown counts from the window's end, not from now (a worker may take long to
        # start), and a bootstrap (no champion replaced) starts none.
        # retrain_pay: what the challenger bought over the served predictions on its holdout (the newest
        # `holdout_rows` of its window); a bootstrap is no retrain, it buys nothing to judge.
        rows, end = outcome.get("holdout_rows"), self._training_end
        bought = (self.watch.bought(outcome.get("challenger_accuracy"), (end - rows, end))
                  if self._training_replaces and isinstance(rows, int) and end is not None else None)
        self.watch.retrain_finished(promoted=bool(outcome.get("promoted")), labelled=self.labelled,
                                    window_end=self._training_end, replaced=self._training_replaces, bought=bought)


class PositionRing:
    """The newest `size` labelled positions (telemetry partition and offset, label partition and
    offset, ts) in columns of machine numbers, overwritten in a ring. A deque of tuples held five
    Python objects a record for 50,000 records: long-lived objects made one by one among the
    short-lived ones pin the allocator's arenas, and the monitor's memory crept up with them."""

    def __init__(self, size: int):
        self.size = size
        self._ints = [array("q", bytes(8 * size)) for _ in range(4)]
        self._ts = array("d", bytes(8 * size))
        self._count = 0  # appended so far; the newest is at (_count - 1) % size

    def __len__(self) -> int:
        return min(self._count, self.size)

    def append(self, t_partition: int, t_offset: int, l_partition: int, l_offset: int, ts: float) -> None:
        i = self._count % self.size
        t_parts, t_offs, l_parts, l_offs = self._ints
        t_parts[i], t_offs[i], l_parts[i], l_offs[i], self._ts[i] = t_partition, t_offset, l_partition, l_offset, ts
        self._count += 1

    def columns(self, start: int, end: int) -> tuple[array, array, array, array, array]:
        """Rows [start, end) of those kept, oldest first, as five arrays (slices copied in C)."""
        kept = len(self)
        start = max(0, start)
        end = max(min(end, kept), start)
        first = (self._count - kept + start) % self.size
        kept_columns: list[array] = [*self._ints, self._ts]
        if first + end - start <= self.size:  # no wrap inside the span
            t_parts, t_offs, l_parts, l_offs, ts = (c[first:first + end - start] for c in kept_columns)
        else:
            last = first + end - start - self.size
            t_parts, t_offs, l_parts, l_offs, ts = (c[first:] + c[:last] for c in kept_columns)
        return t_parts, t_offs, l_parts, l_offs, ts


def _sides(state: dict) -> int:
    positioned = "position" in state  # telemetry and label joined (a compact entry keeps neither's position)
    return ((TELEMETRY if positioned or "telemetry" in state else 0) | (LABEL if "label" in state else 0)
            | (PREDICTION if "prediction" in state else 0))


def _features(state: dict) -> dict[str, Any]:
    """The features of a joined entry, decoded again from its telemetry as received (checked when it came)."""
    return decode_telemetry(state["raw"])["features"]
