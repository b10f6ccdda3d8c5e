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
from serving.kafka_io import BatchSender
from serving.synthetic import Reading

if TYPE_CHECKING:
    from kafka import KafkaProducer


# The shortest sleep taken: a sleep costs ~10 us of CPU, more than a record's own work, and records
# wait for the producer's linger (5 ms) anyway; the rate stays the same on average.
PAUSE = 0.001


def publish(producer: KafkaProducer, topics: Topics, readings: Iterable[Reading], *, rate: float | None,
            label_delay: int, stop: threading.Event | None = None, gate: Callable[[int], None] | None = None,
            on_record: Callable[[int], None] | None = None,
            keep_going: Callable[[int], bool] | None = None) -> int:
    """Send each reading's telemetry, and each label `label_delay` records later, at
    `rate` records/s (None: as fast as possible). `gate(seq)` may block before a record
    is sent (the demo waits there for the first champion); `keep_going(sent)` returning
    False ends the stream. Returns records sent.

    Messages are written into record batches (`BatchSender`: ~2 us a message instead of
    `send`'s ~14), each handed to the producer's sender thread once it is full or as old as the
    producer's `linger_ms`, as `send`'s batches are. With a `gate` each message goes through
    `send` (a gate may wait for what the open batches hold: the first champion's labels)."""
    out = BatchSender(producer, batched=gate is None)
    linger = producer.config["linger_ms"] / 1000 if out.batched else 0.0
    pending: deque[Reading] = deque()
    started, sent = time.monotonic(), 0
    for reading in readings:
        if (stop is not None and stop.is_set()) or (keep_going is not None and not keep_going(sent)):
            break
        if gate is not None:
            paused = time.monotonic()
            gate(reading.seq)
            started += time.monotonic() - paused  # no burst to catch up after a pause
        out.send(topics.telemetry, reading.device.encode(), encode_telemetry(reading.record))
        pending.append(reading)
        while len(pending) > label_delay:
            _send_label(out, topics, pending.popleft())
        sent += 1
        if on_record is not None:
            on_record(sent)
        if rate or out.opened is not None:
            now = time.monotonic()
            ahead = started + sent / rate - now if rate else 0.0
            # Handed over once as old as the linger, or before a pause that would make it older.
            if out.opened is not None and now + max(ahead, 0.0) - out.opened >= linger:
                out.hand_over()
            if ahead > PAUSE:
                time.sleep(ahead)
    while pending:
        _send_label(out, topics, pending.popleft())
    out.hand_over()
    producer.flush()
    return sent


def _send_label(out: BatchSender, topics: Topics, reading: Reading) -> None:
    label = Label(id=reading.record["id"], ts=reading.record["ts"], label=reading.label)
    out.send(topics.labels, reading.device.encode(), encode_label(label))
