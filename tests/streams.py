"""Test helpers: put labelled records on the real broker and name them as a training window."""

from __future__ import annotations

import random

from driftctl.messages import Label, RetrainTrigger, TrainingWindow
from driftctl.settings import Settings
from serving.codec import encode_label, encode_telemetry
from serving.kafka_io import make_producer
from serving.synthetic import Reading, iot_stream


def readings(start: int, stop: int, *, drift_at: int, seed: int = 42) -> list[Reading]:
    return [r for r in iot_stream(stop, drift_at=drift_at, seed=seed) if r.seq >= start]


def produce(bootstrap: str, settings: Settings, batch: list[Reading], *, random_labels: bool = False,
            flip_labels: bool = False, seed: int = 0) -> list[tuple]:
    """Send each reading's telemetry and label; return (t_part, t_off, l_part, l_off, ts) per reading.
    `flip_labels`: every label inverted (a labelling job gone wrong)."""
    rng = random.Random(seed)
    topics = settings.kafka.topics
    producer = make_producer(bootstrap, settings.kafka)
    sent = []
    try:
        for r in batch:
            label = rng.randint(0, 1) if random_labels else 1 - r.label if flip_labels else r.label
            t = producer.send(topics.telemetry, key=r.device.encode(), value=encode_telemetry(r.record))
            lab = producer.send(topics.labels, key=r.device.encode(),
                                value=encode_label(Label(id=r.record["id"], ts=r.record["ts"], label=label)))
            sent.append((t, lab, r.record["ts"]))
        producer.flush()
        rows = []
        for t, lab, ts in sent:
            mt, ml = t.get(timeout=10), lab.get(timeout=10)
            rows.append((mt.partition, mt.offset, ml.partition, ml.offset, ts))
        return rows
    finally:
        producer.close()


def window(bootstrap: str, settings: Settings, rows: list[tuple], start: int = 0) -> TrainingWindow:
    topics = settings.kafka.topics
    return TrainingWindow.from_positions(rows, bootstrap_servers=bootstrap, telemetry_topic=topics.telemetry,
                                         labels_topic=topics.labels, positions=(start, start + len(rows)))


def trigger(decision_id: str, reason: str = "test", **extra) -> RetrainTrigger:
    return RetrainTrigger(decision_id=decision_id, reason=reason, **extra)
