"""Publishing a telemetry stream with its labels arriving `label_delay` records late."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from driftctl.messages import Label
from driftctl.settings import Topics
from serving.codec import encode_label, encode_telemetry
from serving.synthetic import Reading

if TYPE_CHECKING:
    from kafka import KafkaProducer


def publish(producer: KafkaProducer, topics: Topics, readings: Iterable[Reading], *, rate: float | None,
            label_delay: int, stop: threading.Event | None = None, gate: Callable[[int], None] | None = None,
            on_record: Callable[[int], None] | None = None,
            keep_going: Callable[[int], bool] | None = None) -> int:
    """Send each reading's telemetry, and each label `label_delay` records later, at
    `rate` records/s (None: as fast as possible). `gate(seq)` may block before a record
    is sent (the demo waits there for the first champion); `keep_going(sent)` returning
    False ends the stream. Returns records sent."""
    pending: deque[Reading] = deque()
    started, sent = time.monotonic(), 0
    for reading in readings:
        if (stop is not None and stop.is_set()) or (keep_going is not None and not keep_going(sent)):
            break
        if gate is not None:
            paused = time.monotonic()
            gate(reading.seq)
            started += time.monotonic() - paused  # no burst to catch up after a pause
        producer.send(topics.telemetry, key=reading.device.encode(), value=encode_telemetry(reading.record))
        pending.append(reading)
        while len(pending) > label_delay:
            _send_label(producer, topics, pending.popleft())
        sent += 1
        if on_record is not None:
            on_record(sent)
        if rate:
            ahead = started + sent / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    while pending:
        _send_label(producer, topics, pending.popleft())
    producer.flush()
    return sent


def _send_label(producer: KafkaProducer, topics: Topics, reading: Reading) -> None:
    label = Label(id=reading.record["id"], ts=reading.record["ts"], label=reading.label)
    producer.send(topics.labels, key=reading.device.encode(), value=encode_label(label))
