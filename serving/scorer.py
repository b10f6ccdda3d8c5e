"""The scorer: one consumer-group member that scores telemetry with the champion batch
model and an online River learner, learns from late labels, and hot-swaps models. Each record
is served by the champion, the online learner or their blend (`ServingSettings.serve`; with
``best``, `drift.arbiter.ServingRule` picks by recent labelled accuracy, as the backtest does)."""

from __future__ import annotations

import gc
import json
import logging
import os
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd
from threadpoolctl import threadpool_limits

from drift.arbiter import ServingRule
from driftctl.messages import ModelUpdate, Prediction
from driftctl.runtime.logs import quiet_libraries
from driftctl.runtime.stack import configure_environment
from driftctl.settings import Settings
from driftctl.stores.heartbeats import Heartbeat
from serving import checkpoint
from serving.audit import AuditLog
from serving.codec import dead_letter, decode_checked, decode_label, encode_prediction
from serving.deadletter import reason_of, safe_text
from serving.joiner import LabelJoiner
from serving.kafka_io import (
    BatchSender,
    SendFailed,
    commit_or_warn,
    make_group_consumer,
    make_producer,
    rewind,
    sent_or_raise,
)
from serving.learner import YOUNG_COLLECTION_THRESHOLD, LearnerFailed, LearnerProcess, remove_stale_start_files
from serving.memory import TRIM_EVERY, release_freed_memory, tune_allocator
from serving.metrics import ScorerMetrics
from serving.updates import ModelUpdates
from training.recipes import make_online_learner
from training.registry import LoadedModel, Registry

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import SynchronizedArray
    from multiprocessing.synchronize import Event as ProcessEvent

    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.consumer.fetcher import ConsumerRecord

    from driftctl.stores.ledger import Ledger

    Batch = dict[TopicPartition, list[ConsumerRecord]]

log = logging.getLogger(__name__)
FULL_COLLECTION_EVERY = 8  # swaps between two full collections (see freeze_heap)


class Scorer:
    def __init__(self, settings: Settings, bootstrap: str, registry: Registry,
                 stop: threading.Event | ProcessEvent, *, shared: SynchronizedArray[int] | None = None,
                 ledger: Ledger | None = None, metrics: ScorerMetrics | None = None):
        self.settings = settings
        self.bootstrap = bootstrap
        self.registry = registry
        self.stop = stop
        self.shared = shared  # optional multiprocessing.Array("q", 4): scored, dead letters, learned, version
        self.ledger = ledger  # None: the home's, opened when there is something to record
        self.metrics = metrics or ScorerMetrics()
        self.topics = settings.kafka.topics
        serving = settings.serving
        self._instance_name = serving.instance or socket.gethostname()
        self.instance = f"{self._instance_name}-{os.getpid()}"
        self._swept = False  # stale learner start files looked for (once, before the first learner starts)
        self.checkpoint_path = settings.home / "checkpoints" / f"{serving.instance or 'scorer'}.pkl"
        self.current: LoadedModel | None = None
        self.online = make_online_learner(settings.stream.seed, serving.online_learner)
        # serve=best: which of champion, online learner and blend serves; the rule the backtest replays.
        self.rule = ServingRule.from_settings(serving) if serving.serve == "best" else None
        self.n_learned = 0  # labels learned by the state that scored the last batch
        self._learner: LearnerProcess | None = None  # learner = process: started by the first batch
        self._to_learn: list[tuple[dict[str, Any], Any]] = []  # this batch's joined pairs, for the learner process
        self._renewals = 0  # times the online learner renewed itself, as last heard (training.online.Renewing)
        self.n_joined = 0  # labels joined to their records (and learned, or handed to the learner process)
        self.learner_mode = serving.learner  # "inline" after the learner process failed again and again
        self._learner_failures = 0  # in a row
        self.restored_from: int | None = None  # n_learned of the checkpoint this scorer resumed from
        self.scored = 0
        self.dead_letters = 0
        self.last_dead_letter: str | None = None  # its reason, for status ("every record invalid: why")
        self.send_failures = 0
        self._sends: list = []  # this batch's send futures: checked before its offsets are committed
        self.ack_wait = 0.0  # seconds the last batch waited in producer.flush() for its acknowledgements
        self._batches: BatchSender | None = None  # predictions as whole record batches (see BatchSender)
        self.load_failures: list[tuple[int, str]] = []
        self.audit_gaps = 0  # records scored whose audit lineage could not be written (their predictions carry it)
        self.faults = 0  # failures of the stage's own stores (audit, checkpoint, registry): logged, not fatal
        self.last_fault: str | None = None
        self.swaps: list[tuple[int, float]] = []  # (version, when it began serving) in this process
        self.joiner = LabelJoiner(serving.join_max_records, serving.join_max_age, max_bytes=serving.join_max_bytes)
        self.audit = AuditLog(settings.home / "audit.db", retention=serving.audit_retention)
        self._seen: dict[str, int] = {}  # "topic:partition" -> next offset, for checkpoints
        self._loading: Future[tuple[int | None, LoadedModel | None]] | None = None  # the alias read, and its load
        self._announced: ModelUpdate | None = None  # the newest update (a hint: the alias is read)
        self._due = False  # the alias is to be read (and its version loaded) at the next chance
        self._retry_at: float | None = None  # when to read the alias again after a failure
        self._retries = 0
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")
        self._records = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
        self._last_checkpoint = time.monotonic()
        self.heartbeat: Heartbeat | None = None

    def _beat(self, consumer: KafkaConsumer | None, stopped: bool = False) -> None:
        """A heartbeat row for `status` (written at most every health.heartbeat_interval s)."""
        version = self.current.ref.version if self.current else None
        if self.heartbeat is None:  # made on the first beat: the champion's load is already under way
            self.heartbeat = Heartbeat.from_settings(self.settings, "scorer", self.bootstrap,
                                                     self.settings.kafka.scorer_group, self.instance)
        if stopped:
            self.heartbeat.stopped(records=self.scored, dead_letters=self.dead_letters, model_version=version)
        else:
            extra: dict[str, Any] = {"last_rejection": self.last_dead_letter} if self.last_dead_letter else {}
            if self.last_fault:
                extra.update(faults=self.faults, last_fault=self.last_fault, audit_gaps=self.audit_gaps)
            self.heartbeat.beat(consumer, records=self.scored, dead_letters=self.dead_letters, model_version=version,
                                extra=extra or None)

    # -- hot swap ---------------------------------------------------------------------
    def _follow_updates(self, updates: ModelUpdates) -> None:
        """Every registry call (which version the alias names, the load) runs on the loader's
        thread: an MLflow that is down or hung delays a swap, never the scoring of a batch."""
        update = updates.poll()
        if update is not None:
            self._announced, self._due, self._retry_at = update, True, None  # a hint; the alias is the truth
        if self._loading is not None and self._loading.done():
            future, self._loading = self._loading, None
            try:
                _, loaded = future.result()
            except _LoadFailed as exc:
                self._load_failed(exc.version, exc.cause)
                self._retry_later()
            except Exception as exc:  # the alias unreadable (MLflow away): asked again later
                keeping = self.current.ref.version if self.current else None
                self._fault(f"model update not followed, version {keeping} keeps serving", exc)
                self._retry_later()
            else:
                self._retries = 0
                if loaded is not None:
                    self._swap(loaded)
        if self._retry_at is not None and time.monotonic() >= self._retry_at:
            self._due, self._retry_at = True, None
        # One load at a time; a newer update waits for the running load, never cancels it.
        if self._loading is not None or not self._due:
            return
        self._due = False
        current = self.current.ref.version if self.current else None
        self._loading = self._loader.submit(self._resolve_and_load, self._announced, current)

    def _retry_later(self) -> None:
        """A registry that could not answer, or a load that failed, is tried again, less and less
        often: once MLflow is back, the scorer follows the alias with no restart."""
        self._retry_at = time.monotonic() + min(30.0, 5.0 * 2 ** self._retries)
        self._retries += 1

    def _resolve_and_load(self, announced: ModelUpdate | None, current: int | None) -> tuple[int | None,
                                                                                             LoadedModel | None]:
        """On the loader's thread: the version the alias names now (the topic replays its history at
        start, and a rollback made without Kafka is not on it), loaded unless it already serves."""
        ref = self.registry.champion()  # raises when MLflow cannot say: asked again later
        wanted = ref.version if ref is not None else None
        if announced is not None and wanted is not None and wanted != announced.version:
            log.warning("model update names version %s but the champion alias points at %s: following the alias",
                        announced.version, wanted)
        if wanted is None or wanted == current:
            return wanted, None
        log.info("model update: loading %s version %s", self.registry.model_name, wanted)
        try:
            return wanted, self.registry.load(wanted)
        except Exception as exc:  # any failure to load leaves the current model serving
            raise _LoadFailed(wanted, exc) from exc

    def _swap(self, loaded: LoadedModel) -> None:
        # Swapped between two batches: no record is scored by a half-loaded model, and
        # the old model is released here (nothing else holds it).
        self.current = loaded
        if self.rule is not None:
            self.rule.on_champion(loaded.accuracy)  # a new champion starts from its holdout accuracy
        self.swaps.append((loaded.ref.version, time.time()))
        # The new model's objects set aside; every FULL_COLLECTION_EVERY swaps, the cycles of
        # the models it replaced (if a model kind has any) collected too.
        freeze_heap(full=len(self.swaps) % FULL_COLLECTION_EVERY == 0)
        self.metrics.model_version.set(loaded.ref.version)
        self._publish_stats()
        log.info("now serving %s version %s", loaded.ref.name, loaded.ref.version)

    def _fault(self, what: str, exc: Exception) -> None:
        """A store of the scorer's failed (disk full, database locked, MLflow away): logged, counted
        and in the heartbeat for `status`; the champion keeps serving."""
        self.faults += 1
        self.last_fault = f"{what}: {reason_of(exc)}"
        if self.faults <= 10 or self.faults % 100 == 0:
            log.error("scorer %s: %s (%d store faults so far)", self.instance, self.last_fault, self.faults)

    def _load_failed(self, version: int, exc: Exception) -> None:
        keeping = self.current.ref.version if self.current else None
        log.error("version %s failed to load, version %s keeps serving: %s", version, keeping, exc)
        if version in {v for v, _ in self.load_failures}:  # a retry of the same version: recorded once
            return
        self.load_failures.append((version, str(exc)))
        self.metrics.swap_failures.inc()
        reason = f"scorer {self.instance}: version {version} failed to load: {exc}"
        self._records.submit(self._record_failure, reason, version)

    def _record_failure(self, reason: str, version: int) -> None:
        """Written to the ledger in every mode (the demo's scorer gets none handed to it: it opens
        the home's), off the scoring thread: a locked or unreachable database waits there."""
        try:
            if self.ledger is None:
                from driftctl.stores.ledger import Ledger

                self.ledger = Ledger.from_settings(self.settings)
            self.ledger.append("failure", reason=reason, model_name=self.registry.model_name, model_version=version)
        except Exception as exc:  # the failure is in the log; the scorer goes on
            log.error("scorer %s: a failure not recorded in the ledger (%s): %s", self.instance, exc, reason)

    def _wait_for_champion(self, updates: ModelUpdates, consumer: KafkaConsumer) -> None:
        """Join the group at once (a join takes seconds) but read nothing until a model serves.
        The alias is asked again every few seconds while the registry cannot say (MLflow away)."""
        self._due = True
        while self.current is None and not self.stop.is_set():
            self._follow_updates(updates)
            for tp, messages in consumer.poll(timeout_ms=100).items():
                consumer.seek(tp, messages[0].offset)  # give back what arrived too early
            consumer.pause(*consumer.assignment())
            self._beat(consumer)
        consumer.resume(*consumer.paused())

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> None:
        # Scoring batches of a few hundred rows: OpenMP's thread start-up costs more than it saves,
        # and its spinning workers starve this process's Python threads.
        threadpool_limits(limits=1, user_api="openmp")
        # The C heap bounded as the monitor's: catching up on a backlog (full fetches, a join of
        # tens of thousands) left a scorer ~70 MB larger for good (soak, a scorer stopped 60 s).
        tune_allocator()
        trimmed = time.monotonic()
        self._restore()
        updates = ModelUpdates(self.bootstrap, self.settings.kafka)
        producer = make_producer(self.bootstrap, self.settings.kafka)
        consumer = make_group_consumer(self.bootstrap, self.settings.kafka, self.settings.kafka.scorer_group,
                                       fetch_max_wait_ms=self.settings.serving.fetch_max_wait_ms)
        consumer.subscribe([self.topics.telemetry, self.topics.labels])
        try:
            self._wait_for_champion(updates, consumer)
            freeze_heap()
            while not self.stop.is_set():
                self._follow_updates(updates)
                batch = consumer.poll(timeout_ms=self.settings.serving.poll_timeout_ms,
                                      max_records=self.settings.serving.batch_size)
                self._beat(consumer)
                if batch:
                    try:
                        self.process(batch, producer)
                    except SendFailed as exc:
                        # Nothing of this batch is committed: read it again (scored once or more, never skipped).
                        self.send_failures += 1
                        log.error("scorer %s: %s; the batch will be read again", self.instance, exc)
                        rewind(consumer, batch)
                        self.stop.wait(min(5.0, 0.5 * self.send_failures))
                        continue
                    self.send_failures = 0
                    # At-least-once: offsets move only after the batch's predictions are acknowledged.
                    commit_or_warn(consumer, f"scorer {self.instance}")
                    self._measure_lag(consumer)
                    self._publish_stats()
                if time.monotonic() - self._last_checkpoint > self.settings.serving.checkpoint_every:
                    self._checkpoint()
                if time.monotonic() - trimmed > TRIM_EVERY:
                    trimmed = time.monotonic()
                    release_freed_memory()
            self._checkpoint(final=True)
        finally:
            self.close_learner()
            self._beat(None, stopped=True)
            consumer.close()
            producer.close()
            updates.close()
            self.audit.close()
            self._loader.shutdown(wait=False, cancel_futures=True)
            self._records.shutdown(wait=True)  # a failure being recorded is not dropped

    def process(self, batch: Batch, producer: KafkaProducer) -> None:
        """Score and learn from one polled batch; returns once every prediction is acknowledged."""
        self._sends = []
        if self._batches is None or self._batches.producer is not producer:
            self._batches = BatchSender(producer)
        self._batches.discard()  # what a batch that raised left open: it is read again
        joined = self.n_joined
        telemetry = []
        for tp, messages in batch.items():
            if tp.topic == self.topics.labels:
                self._learn(messages, producer)
            else:
                telemetry.extend(messages)
            self._seen[f"{tp.topic}:{tp.partition}"] = messages[-1].offset + 1
        # Every partition's records at once: one champion call and one learner round trip per poll.
        scored = self._score(telemetry, producer) if telemetry else []
        self.metrics.labels.inc(self.n_joined - joined)
        if self._to_learn:  # learned on the other core while this batch's sends are acknowledged
            pairs, self._to_learn = self._to_learn, []
            try:
                self._learner_process().learn(pairs)
            except LearnerFailed as exc:  # scored already: a failure to learn from them is logged, not lettered
                self._learner_failed(f"{len(pairs)} labels not learned", exc)
        try:
            self._sends.extend(self._batches.hand_over())
        except Exception as exc:  # the producer closed meanwhile: the batch is read again
            raise SendFailed(f"send failed: {type(exc).__name__}: {exc}") from exc
        flushed = time.perf_counter()
        producer.flush()
        self.ack_wait = time.perf_counter() - flushed
        sends, self._sends = self._sends, []
        sent_or_raise(sends)  # a failed send must never be committed
        self.metrics.observe_latencies(time.time(), scored)

    def _score(self, messages: list[ConsumerRecord], producer: KafkaProducer) -> list[int]:
        assert self.current is not None  # nothing is read before a champion serves
        serving = self.settings.serving
        schema, missing, max_bytes = self.current.schema, serving.missing_features, serving.max_message_bytes
        good, records, rows = [], [], []  # the messages that decoded, their records and checked features
        decode = decode_checked
        for message in messages:
            try:
                record, features = decode(message.value, schema, missing, max_bytes=max_bytes)
            except Exception as exc:  # any failure on one message is its dead letter, never the stage's end
                self._dead_letter(producer, reason_of(exc), message)
                continue
            good.append(message)
            records.append(record)
            rows.append(features)
        if not good:
            return []
        current = self.current
        # As-is when missing features are rejected (none is null; River does not change its input);
        # otherwise nulls are dropped (absent to the learner).
        as_is = serving.missing_features == "reject"
        learner = None
        if self.learner_mode == "process":  # it predicts while the champion does
            try:
                learner = self._learner_process()
                learner.ask(rows if as_is else [_present(f) for f in rows])
            except LearnerFailed as exc:
                self._learner_failed(f"no predictions for {len(rows)} records", exc)
                learner = None
        try:
            # One pass (the class is its argmax); the compiled champion builds its array without pandas.
            probabilities = current.predict_proba(rows)
        except Exception:  # one record the model cannot take: find it, dead-letter it, score the rest
            probabilities = None
        online_probas = self._online_probas(learner, rows, as_is)
        if probabilities is None:
            good, records, rows, probabilities, online_probas = self._predict_each(producer, good, records, rows,
                                                                                   online_probas)
            if not good:
                return []
        self._serve(good, records, rows, np.asarray(probabilities), online_probas, producer)
        return [m.timestamp for m in good]

    def _serve(self, good: list[ConsumerRecord], records: list[Any], rows: list[dict[str, Any]],
               probabilities: np.ndarray, online_probas: list[dict[Any, float]], producer: KafkaProducer) -> None:
        """Each scored record's served prediction sent, its audit lineage written, and the record
        handed to the join to wait for its label. Per record only what differs between records is
        made: the batch's lineage, its champion's classes and its serving choice are made once."""
        current = self.current
        assert current is not None
        classes = [_plain(c) for c in current.model.classes_]
        keys = [str(c) for c in classes]
        pair = len(classes) == 2
        c0, c1 = (classes[0], classes[1]) if pair else (None, None)
        k0, k1 = (keys[0], keys[1]) if pair else ("", "")
        champions = [{"prediction": c} for c in classes]  # the "champion" lineage of each class (shared)
        winners = probabilities.argmax(axis=1).tolist()
        n_learned, now, version = self.n_learned, time.time(), current.ref.version
        model = current.ref.as_dict()
        # Labels are learned between batches, so one source serves the whole batch (champion where the
        # online learner has nothing to say yet).
        rule = self.rule
        chosen = rule.serving if rule is not None else self.settings.serving.serve
        stacked = rule.stacked if rule is not None else None
        # The stacked blend's two-class path called directly, as the backtest does (drift.backtest), for an
        # online learner with no class the champion lacks: what `rule.blend` would call, without the dict.
        combine_pair = stacked.combine_pair if stacked is not None and pair else None
        champion_keys = dict.fromkeys(classes).keys()
        learned_size = 3 * 56 + (8 + 2 * 32) * len(classes)
        assert self._batches is not None  # made by process
        sends, psend, topic, instance = self._sends, self._batches.send, self.topics.predictions, self.instance
        encode = encode_prediction
        # Audit rows per (topic, partition, source), and the (features, outcome) each record waits with for its label.
        segments: dict[tuple[str, int, str], tuple[list[int], list[str]]] = {}
        segment: tuple[str, int, str] | None = None
        offsets: list[int] = []
        ids: list[str] = []
        waiting: list[tuple[str, tuple[dict[str, Any], tuple[int, Any, Any, Any, int, Any]], int]] = []
        renewals = self._renewals  # of the online learner that predicted this batch
        for message, record, features, winner, row, online_proba in zip(
                good, records, rows, winners, probabilities.tolist(), online_probas, strict=True):
            champion = classes[winner]
            if online_proba:
                online = _plain(max(online_proba, key=online_proba.__getitem__))
                source = chosen
            else:
                online, source = None, "champion"
            learned = None  # what a learned blend (ServingSettings.serve_blend) takes with the label
            if stacked is not None:
                if combine_pair is not None and (not online_proba or online_proba.keys() <= champion_keys):
                    blended, blended_p, learned = combine_pair(c0, c1, row[0], row[1], online_proba)
                else:
                    blended, blended_p, learned = rule.blend(dict(zip(classes, row, strict=True)),  # type: ignore[union-attr]
                                                             online_proba)
            elif rule is not None:
                blended, blended_p = _blend_winner(classes, row, online_proba)
            else:
                blended, blended_p = None, 0.0
            if source == "champion":
                served, confidence = champion, row[winner]
            elif source == "blend":
                served, confidence = blended, blended_p
            else:
                served, confidence = online, online_proba[online]
            record_id = record["id"]
            partition, offset = message.partition, message.offset
            if segment is None or partition != segment[1] or source != segment[2] or message.topic != segment[0]:
                segment = (message.topic, partition, source)
                offsets, ids = segments.setdefault(segment, ([], []))
            offsets.append(offset)
            ids.append(record_id)
            # The join's byte cap counts what the record waits with: its message, and the learned blend's inputs
            # (about a float object and a few pointers per class, and their containers; StackedBlend.combine).
            waiting.append((record_id, (features, (version, champion, online, blended, renewals, learned)),
                            len(message.value) + (learned_size if learned is not None else 0)))
            # A literal, not Prediction(...): the call form copies the keywords once more per record.
            value: Prediction = {
                "id": record_id, "ts": record["ts"], "prediction": served,
                "proba": ({k0: round(row[0], 6), k1: round(row[1], 6)} if pair else
                          dict(zip(keys, [round(p, 6) for p in row], strict=True))),
                "model": model, "online": {"prediction": online, "n_learned": n_learned, "renewals": renewals},
                "champion": champions[winner], "served": source, "served_by": source,
                "confidence": round(float(confidence), 6), "scorer": instance,
                "scored_at": now, "source": {"partition": partition, "offset": offset},
            }
            try:
                payload = encode(value)
            except Exception as exc:
                self._dead_letter(producer, reason_of(exc), message)
                continue
            try:
                # Stamped with its telemetry's Kafka time, not when it was scored: the monitor reads
                # predictions in step with the telemetry (serving.kafka_io.PacedReader's `follow`).
                sent = psend(topic, message.key, payload, message.timestamp if message.timestamp >= 0 else None)
                if sent is not None:  # None: in a record batch, handed over after the loop
                    sends.append(sent)
            except Exception as exc:  # buffer full, metadata unavailable: the batch is read again
                raise SendFailed(f"send to {topic} failed: {type(exc).__name__}: {exc}") from exc
        for (topic_name, partition, source), (offsets, ids) in segments.items():
            try:
                self.audit.record(scorer=instance, topic=topic_name, partition=partition, offsets=offsets,
                                  ids=ids, model=model, n_learned=n_learned, served_by=source)
            except Exception as exc:  # disk full, database locked: the prediction itself names its model
                self.audit_gaps += len(offsets)
                self._fault("audit not written", exc)
        # Learning comes after the whole batch is scored, so one learner state scored it.
        add_record = self.joiner.add_record
        for record_id, scored, size in waiting:
            try:
                ready = add_record(record_id, scored, size)
                if ready is not None:
                    self._learn_one(*ready)
            except Exception as exc:  # scored already: a failure to learn from it is logged, not lettered
                log.warning("not learned from %s: %s", safe_text(record_id, 80), reason_of(exc))
        self.scored += len(good)
        self.metrics.records.inc(len(good))

    def _learn(self, messages: list[ConsumerRecord], producer: KafkaProducer) -> None:
        joiner = self.joiner
        before = (joiner.evicted_by_size, joiner.evicted_by_age)
        add_label, learn_one = joiner.add_label, self._learn_one
        for message in messages:
            raw = message.value
            try:
                value = decode_label(raw)
                ready = add_label(value["id"], value["label"], len(raw))
                if ready is not None:
                    learn_one(*ready)
            except Exception as exc:
                self._dead_letter(producer, reason_of(exc), message)
        self.metrics.join_evictions.labels("size").inc(joiner.evicted_by_size - before[0])
        self.metrics.join_evictions.labels("age").inc(joiner.evicted_by_age - before[1])

    def _learn_one(self, scored: tuple[dict[str, Any], tuple[int, Any, Any, Any, int, Any]], label: Any) -> None:
        features, (version, champion, online, blended, renewals, learned) = scored
        if self.settings.serving.missing_features != "reject":
            features = _present(features)
        after: int | None = None  # the learner's renewals once it learned this label (None: not known yet)
        accuracy = None
        if self.learner_mode == "process":
            self._to_learn.append((features, label))  # the child learns; its renewals come with its answers
        else:
            self.online.learn_one(features, label)
            self.n_learned += 1
            after, accuracy = getattr(self.online, "renewals", 0), getattr(self.online, "accuracy", None)
        rule = self.rule
        if rule is not None:
            # The backtest's call (drift.backtest): a renewed online learner (training.online.Renewing)
            # starts from its own accuracy and is judged by its own predictions only.
            current = self.current
            outcomes = ((champion == label, online == label, blended == label)
                        if current is not None and version == current.ref.version else None)
            rule.on_label(outcomes, scored_renewals=renewals, renewals=after, accuracy=accuracy,
                          blend_features=learned, label=label)
            if learned is not None and rule.stacked is not None:  # rule.learn_blend(learned, label), as the backtest
                rule.stacked.learn(learned, label)
        if after is not None:
            self._renewals = after
        self.n_joined += 1

    def _on_renewals(self, renewals: int, accuracy: float | None) -> None:
        """The learner process answered with its renewals: the serving rule follows them, and the
        predictions carry them (the monitor restarts the online calibration on a change)."""
        self._renewals = renewals
        if self.rule is not None:
            self.rule.on_renewals(renewals, accuracy)

    def _online_probas(self, learner: LearnerProcess | None, rows: list[dict[str, Any]],
                       as_is: bool) -> list[dict[Any, float]]:
        """The online learner's probabilities per row ({} where it has none); sets the `n_learned` of
        the state that gave them, which every prediction of the batch carries."""
        if learner is not None:
            try:
                self.n_learned, answers = learner.answer()
                self._on_renewals(learner.renewals, learner.accuracy)
                self._learner_failures = 0
                return answers
            except LearnerFailed as exc:
                self._learner_failed(f"no predictions for {len(rows)} records", exc)
        if self.learner_mode == "process" or learner is not None:
            return [{} for _ in rows]  # the online learner is advisory: the champion serves
        predict, answers = self.online.predict_proba_one, []
        for features in rows:
            try:
                answers.append(predict(features if as_is else _present(features)))
            except Exception as exc:  # the online learner is advisory: the champion still serves
                log.warning("online learner failed: %s", reason_of(exc))
                answers.append({})
        return answers

    def _predict_each(self, producer: KafkaProducer, good: list[Any], records: list[Any], rows: list[Any],
                      online: list[dict[Any, float]]) -> tuple[list, list, list, list, list]:
        """The batch's predict failed: predict record by record, dead-lettering those that fail."""
        current = self.current
        assert current is not None  # called by _score, which runs only once a champion serves
        kept, kept_records, kept_rows, probabilities, kept_online = [], [], [], [], []
        for message, record, features, proba in zip(good, records, rows, online, strict=True):
            try:
                frame = pd.DataFrame.from_records([features], columns=current.features)
                probabilities.append(current.model.predict_proba(frame)[0])
            except Exception as exc:
                self._dead_letter(producer, reason_of(exc), message)
                continue
            kept.append(message)
            kept_records.append(record)
            kept_rows.append(features)
            kept_online.append(proba)
        return kept, kept_records, kept_rows, probabilities, kept_online

    def _dead_letter(self, producer: KafkaProducer, reason: str, message: ConsumerRecord) -> None:
        reason = safe_text(reason)
        self.dead_letters += 1
        self.last_dead_letter = reason
        self.metrics.dead_letters.inc()
        log.warning("dead letter %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason)
        self._send(producer, self.topics.dead_letter, message.topic.encode(),
                   dead_letter(reason, message.topic, message.partition, message.offset, message.value))
        if message.topic == self.topics.telemetry:  # its label, when it comes, waits for nothing
            try:
                record_id = orjson.loads(message.value).get("id")
            except Exception:  # undecodable: its label waits until the caps drop it
                record_id = None
            if isinstance(record_id, str):
                self.joiner.never(record_id)

    def _send(self, producer: KafkaProducer, topic: str, key: bytes | None, value: bytes) -> None:
        try:
            self._sends.append(producer.send(topic, key=key, value=value))
        except Exception as exc:  # buffer full, metadata unavailable: the batch is read again
            raise SendFailed(f"send to {topic} failed: {type(exc).__name__}: {exc}") from exc

    # -- state and stats ----------------------------------------------------------------
    def _restore(self) -> None:
        saved = checkpoint.load(self.checkpoint_path)
        if saved is None:
            return
        self.online, self.n_learned, self._seen = saved.learner, saved.n_learned, dict(saved.offsets)
        self.restored_from = saved.n_learned
        self._renewals = getattr(self.online, "renewals", 0)  # the restored learner is no renewal
        if self.rule is not None:
            self.rule.renewals = self._renewals
        log.warning("online learner restored from %s: n_learned=%s", self.checkpoint_path, saved.n_learned)

    def _checkpoint(self, final: bool = False) -> None:
        if self._learner is None:  # inline, or nothing handed over yet: the serving state is the learner's
            try:
                checkpoint.save(self.checkpoint_path,
                                checkpoint.Checkpoint(self.online, self.n_learned, dict(self._seen)))
            except OSError as exc:  # disk full: the previous checkpoint stays; scoring goes on
                self._fault("learner checkpoint not written", exc)
        elif final:  # written by the learner process after its last pairs, before it ends
            self.close_learner(dict(self._seen))
        else:
            try:
                self._learner.request_checkpoint(dict(self._seen))
            except LearnerFailed as exc:
                log.error("no learner checkpoint: %s", exc)
        self._last_checkpoint = time.monotonic()

    # -- the learner process --------------------------------------------------------------
    def _learner_process(self) -> LearnerProcess:
        if self._learner is None:
            if not self._swept:  # start files of this instance's scorers killed before they closed theirs
                self._swept = True
                for path in remove_stale_start_files(self.settings.home / "learner", self._instance_name):
                    log.info("removed %s: its scorer is gone", path)
            self._learner = LearnerProcess(
                self.online, self.n_learned, self.settings.home / "learner" / f"{self.instance}-{id(self):x}.start",
                self.checkpoint_path)
        return self._learner

    def start_learner(self) -> int | None:
        """Start the learner process now and wait until it answers (learner = process); its pid."""
        if self.learner_mode != "process":
            return None
        learner = self._learner_process()
        learner.ask([])
        learner.answer()
        return learner.pid

    def _learner_failed(self, what: str, exc: Exception) -> None:
        """Logged; after three failures in a row (a learner process that cannot start, say), the
        scorer learns inline from the learner's last checkpoint rather than restart it every batch."""
        log.error("online learner: %s: %s", what, exc)
        self._learner_failures += 1
        if self._learner_failures >= 3 and self.learner_mode == "process":
            self.close_learner()
            saved = checkpoint.load(self.checkpoint_path)
            if saved is not None:
                self.online, self.n_learned = saved.learner, saved.n_learned
            self.learner_mode = "inline"
            log.error("the learner process failed %s times in a row: learning inline from n_learned=%s",
                      self._learner_failures, self.n_learned)

    def close_learner(self, offsets: dict[str, int] | None = None) -> None:
        """End the learner process (checkpointing with `offsets` first when given)."""
        learner, self._learner = self._learner, None
        if learner is not None:
            learner.close(offsets)

    def _measure_lag(self, consumer: KafkaConsumer) -> None:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(highwater - consumer.position(tp), 0))

    def _publish_stats(self) -> None:
        if self.shared is not None:
            self.shared[:] = [self.scored, self.dead_letters, self.n_learned,
                              self.current.ref.version if self.current else 0]


def freeze_heap(full: bool = True) -> None:
    """Collect, then set everything alive aside from the garbage collector (`gc.freeze`): the
    libraries, the champion and the clients are hundreds of thousands of objects that each full
    collection would walk again, about a third of the scorer's CPU per record before this
    (`benchmarks/results/bench.md`). Called at start (`full`) and after each swap.

    `full=False` collects only what is not frozen (what came since the last freeze: the new
    model, the load's garbage), a few ms instead of a full walk (0.25-0.8 s measured between two
    batches). An old model that was frozen is still freed by its reference counts; only garbage
    in cycles among frozen objects waits for the next full collection (none for the recipe's
    champions: measured, 0 objects after three swaps)."""
    if full:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])


def _blend_winner(classes: list[Any], champion: list[float], online: dict[Any, float]) -> tuple[Any, float]:
    """The class `drift.arbiter.blend` would put first, and its blended probability, without the dict:
    the same sums in the same order, so the same winner (the first of equals)."""
    best, best_p = None, -1.0
    get = online.get
    for c, p in zip(classes, champion, strict=True):
        mixed = 0.5 * p + 0.5 * get(c, 0.0) if online else 0.5 * p
        if mixed > best_p:
            best, best_p = c, mixed
    for c, p in online.items():
        if c not in classes and 0.5 * p > best_p:
            best, best_p = _plain(c), 0.5 * p
    return _plain(best), best_p


def _present(features: dict[str, Any]) -> dict[str, Any]:
    """The online learner sees missing values as absent features."""
    return {k: v for k, v in features.items() if v is not None}


class _LoadFailed(Exception):
    def __init__(self, version: int, cause: Exception):
        super().__init__(f"version {version}: {cause}")
        self.version, self.cause = version, cause


def _plain(value: Any) -> Any:
    """numpy scalars to JSON-able Python values."""
    return value.item() if hasattr(value, "item") else value


def run_scorer_process(settings_json: str, bootstrap: str, shared: SynchronizedArray[int] | None,
                       stop: ProcessEvent) -> None:
    """Entry point of a scorer in its own process (the demo spawns one): stages in one
    process contend for the GIL, and a retrain beside them slowed tenfold."""
    settings = Settings(**json.loads(settings_json))
    configure_environment(settings)
    quiet_libraries()
    Scorer(settings, bootstrap, Registry.from_settings(settings), stop, shared=shared).run()
