"""The scorer: one consumer-group member that scores telemetry with the champion batch
model and an online River learner, learns from late labels, and hot-swaps models."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import pandas as pd
from river import tree

from driftctl.health import Heartbeat
from driftctl.settings import Settings
from serving.codec import InvalidRecord, check_schema, dead_letter, decode_label, decode_telemetry, encode
from serving.kafka_io import make_group_consumer, make_producer
from serving.updates import ModelUpdates
from training.registry import LoadedModel, Registry, RegistryError

log = logging.getLogger(__name__)


def make_online_learner(seed: int = 0):
    return tree.HoeffdingAdaptiveTreeClassifier(grace_period=100, seed=seed)


class Scorer:
    def __init__(self, settings: Settings, bootstrap: str, registry: Registry, stop: threading.Event,
                 shared=None):
        self.settings = settings
        self.bootstrap = bootstrap
        self.registry = registry
        self.stop = stop
        self.topics = settings.kafka.topics
        self.current: LoadedModel | None = None
        self.online = make_online_learner(settings.stream.seed)
        self.n_learned = 0
        self.scored = 0
        self.dead_letters = 0
        self.swaps: list[tuple[int, float]] = []  # (version, at)
        self._features: OrderedDict[str, dict] = OrderedDict()  # id -> features, to learn from late labels
        self._early_labels: OrderedDict[str, object] = OrderedDict()  # labels that came before their record
        self._loading: Future | None = None
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")
        self.shared = shared  # optional multiprocessing.Array("q", 4): scored, dead letters, learned, version
        self.heartbeat: Heartbeat | None = None

    def _beat(self, consumer, stopped: bool = False) -> None:
        """A heartbeat row for `status` (written at most every health.heartbeat_interval s)."""
        version = self.current.ref.version if self.current else None
        if stopped:
            self.heartbeat.stopped(records=self.scored, dead_letters=self.dead_letters, model_version=version)
        else:
            self.heartbeat.beat(consumer, records=self.scored, dead_letters=self.dead_letters, model_version=version)

    def _publish_stats(self) -> None:
        if self.shared is not None:
            self.shared[:] = [self.scored, self.dead_letters, self.n_learned,
                              self.current.ref.version if self.current else 0]

    # -- hot swap -------------------------------------------------------------------
    def _follow_updates(self, updates: ModelUpdates) -> None:
        update = updates.poll()
        if update is not None and (self.current is None or int(update["version"]) != self.current.ref.version):
            log.info("model update: loading %s version %s", update["name"], update["version"])
            self._loading = self._loader.submit(self.registry.load, int(update["version"]))
        if self._loading is not None and self._loading.done():
            future, self._loading = self._loading, None
            try:
                loaded = future.result()
            except RegistryError as exc:
                log.error("keeping version %s: %s", self.current.ref.version if self.current else None, exc)
                return
            # Swapped between two batches: no record is scored by a half-loaded model.
            self.current = loaded
            self.swaps.append((loaded.ref.version, time.time()))
            self._publish_stats()
            log.info("now serving %s version %s", loaded.ref.name, loaded.ref.version)

    def _wait_for_champion(self, updates: ModelUpdates, consumer) -> None:
        """Join the group at once (a join takes seconds) but read nothing until a model serves."""
        ref = self.registry.champion()
        if ref is not None:
            self._loading = self._loader.submit(self.registry.load, ref.version)
        while self.current is None and not self.stop.is_set():
            self._follow_updates(updates)
            for tp, messages in consumer.poll(timeout_ms=100).items():
                consumer.seek(tp, messages[0].offset)  # give back what arrived too early
            consumer.pause(*consumer.assignment())
            self._beat(consumer)
        consumer.resume(*consumer.paused())

    # -- scoring --------------------------------------------------------------------
    def run(self) -> None:
        updates = ModelUpdates(self.bootstrap, self.settings.kafka)
        producer = make_producer(self.bootstrap, self.settings.kafka)
        consumer = make_group_consumer(self.bootstrap, self.settings.kafka, self.settings.kafka.scorer_group)
        consumer.subscribe([self.topics.telemetry, self.topics.labels])
        self.heartbeat = Heartbeat.from_settings(self.settings, "scorer", self.bootstrap, self.settings.kafka.scorer_group)
        try:
            self._wait_for_champion(updates, consumer)
            while not self.stop.is_set():
                self._follow_updates(updates)
                batch = consumer.poll(timeout_ms=self.settings.serving.poll_timeout_ms,
                                      max_records=self.settings.serving.batch_size)
                self._beat(consumer)
                if not batch:
                    continue
                for tp, messages in batch.items():
                    if tp.topic == self.topics.labels:
                        self._learn(messages, producer)
                    else:
                        self._score(messages, producer)
                producer.flush()
                consumer.commit()  # at-least-once: offsets move only after predictions are acknowledged
                self._publish_stats()
        finally:
            self._beat(None, stopped=True)
            consumer.close()
            producer.close()
            updates.close()
            self._loader.shutdown(wait=False, cancel_futures=True)

    def _score(self, messages, producer) -> None:
        good, rows = [], []
        for message in messages:
            try:
                record = decode_telemetry(message.value)
                check_schema(record["features"], self.current.features)
            except InvalidRecord as exc:
                self._dead_letter(producer, str(exc), message)
                continue
            good.append((message, record))
            rows.append(record["features"])
        if not good:
            return
        ref = self.current.ref
        frame = pd.DataFrame.from_records(rows).reindex(columns=self.current.features)
        predictions = self.current.model.predict(frame)
        probabilities = self.current.model.predict_proba(frame)
        classes = [_plain(c) for c in self.current.model.classes_]
        model = ref.as_dict()
        now = time.time()
        for (message, record), prediction, proba in zip(good, predictions, probabilities):
            features = record["features"]
            value = {
                "id": record["id"], "ts": record["ts"], "prediction": _plain(prediction),
                "proba": {str(c): round(float(p), 6) for c, p in zip(classes, proba)},
                "model": model,
                "online": {"prediction": _plain(self.online.predict_one(features)), "n_learned": self.n_learned},
                "scored_at": now, "source": {"partition": message.partition, "offset": message.offset},
            }
            producer.send(self.topics.predictions, key=message.key, value=encode(value))
            self._remember(record["id"], features)
        self.scored += len(good)

    def _remember(self, record_id: str, features: dict) -> None:
        label = self._early_labels.pop(record_id, None)
        if label is not None:
            self._learn_one(features, label)
            return
        self._features[record_id] = features
        if len(self._features) > self.settings.serving.feature_cache:
            self._features.popitem(last=False)

    def _learn(self, messages, producer) -> None:
        for message in messages:
            try:
                value = decode_label(message.value)
            except InvalidRecord as exc:
                self._dead_letter(producer, str(exc), message)
                continue
            features = self._features.pop(value["id"], None)
            if features is None:
                self._early_labels[value["id"]] = value["label"]
                if len(self._early_labels) > self.settings.serving.feature_cache:
                    self._early_labels.popitem(last=False)
                continue
            self._learn_one(features, value["label"])

    def _learn_one(self, features: dict, label) -> None:
        self.online.learn_one(features, label)
        self.n_learned += 1

    def _dead_letter(self, producer, reason: str, message) -> None:
        self.dead_letters += 1
        log.warning("dead letter %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason)
        producer.send(self.topics.dead_letter, key=message.topic.encode(),
                      value=dead_letter(reason, message.topic, message.partition, message.offset, message.value))


def _plain(value):
    """numpy scalars to JSON-able Python values."""
    return value.item() if hasattr(value, "item") else value


def run_scorer_process(settings_json: str, bootstrap: str, shared, stop) -> None:
    """Entry point of a scorer in its own process (the demo spawns one): stages in one
    process contend for the GIL, and a retrain beside them slowed tenfold."""
    import json

    from driftctl.logs import quiet_libraries
    from driftctl.stack import configure_environment

    settings = Settings(**json.loads(settings_json))
    configure_environment(settings)
    quiet_libraries()
    Scorer(settings, bootstrap, Registry.from_settings(settings), stop, shared=shared).run()
