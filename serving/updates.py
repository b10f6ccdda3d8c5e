"""The control stream: every stage reads every model update, outside any consumer group."""

from __future__ import annotations

import json
import logging

from kafka import TopicPartition

from driftctl.settings import KafkaSettings
from serving.kafka_io import make_reader

log = logging.getLogger(__name__)


class ModelUpdates:
    """Follows the model-updates topic from its beginning; `poll()` returns the newest
    update seen since the last call (later promotions supersede earlier ones)."""

    def __init__(self, bootstrap: str, kafka: KafkaSettings):
        self._consumer = make_reader(bootstrap, kafka)
        self._consumer.assign([TopicPartition(kafka.topics.model_updates, 0)])
        self._consumer.seek_to_beginning()

    def poll(self, timeout_ms: int = 0) -> dict | None:
        newest = None
        for messages in self._consumer.poll(timeout_ms=timeout_ms).values():
            for message in messages:
                try:
                    update = json.loads(message.value)
                    int(update["version"])
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("ignoring malformed model update at offset %s: %s", message.offset, exc)
                    continue
                newest = update
        return newest

    def close(self) -> None:
        self._consumer.close()
