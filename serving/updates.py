"""The control stream: every stage reads every model update, outside any consumer group."""

from __future__ import annotations

import logging

from kafka import TopicPartition

from driftctl.messages import InvalidMessage, ModelUpdate
from driftctl.settings import KafkaSettings
from serving.kafka_io import make_producer, make_reader

log = logging.getLogger(__name__)


class ModelUpdates:
    """Follows the model-updates topic from its beginning; `poll()` returns the newest
    update seen since the last call (later promotions supersede earlier ones)."""

    def __init__(self, bootstrap: str, kafka: KafkaSettings):
        self._consumer = make_reader(bootstrap, kafka)
        self._consumer.assign([TopicPartition(kafka.topics.model_updates, 0)])
        self._consumer.seek_to_beginning()

    def poll(self, timeout_ms: int = 0) -> ModelUpdate | None:
        newest = None
        for messages in self._consumer.poll(timeout_ms=timeout_ms).values():
            for message in messages:
                try:
                    newest = ModelUpdate.from_json(message.value)
                except InvalidMessage as exc:
                    log.error("ignoring malformed model update at offset %s: %s", message.offset, exc)
        return newest

    def close(self) -> None:
        self._consumer.close()


def publish_update(bootstrap: str, kafka: KafkaSettings, update: ModelUpdate) -> None:
    """Announce a champion change on the control stream; every scorer and monitor swaps to it."""
    # Bounded: a broker that is away fails the announcement in seconds (and the change is undone),
    # instead of blocking on metadata for the client's default minute.
    bound = min(kafka.send_timeout, 15.0)
    producer = make_producer(bootstrap, kafka, max_block_ms=int(bound * 1000), bootstrap_timeout_ms=int(bound * 1000))
    try:
        future = producer.send(kafka.topics.model_updates, key=update.name.encode(), value=update.to_json())
        future.get(timeout=bound)  # raises when the broker did not take it
    finally:
        producer.close()
