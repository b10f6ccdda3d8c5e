"""No message can stop a stage: the bad-input corpus, in batches of every codec Kafka
producers use, through a real scorer, a real monitor and the flow's window reader on the
real broker. Every good record is scored, every bad one is dead-lettered with its reason,
and no stage stops."""

from __future__ import annotations

import hashlib
import json
import threading

import pandas as pd
import pytest

from driftctl.messages import TrainingWindow
from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
from driftctl.runtime.stack import configure_environment
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from flows.retrain import load_window
from serving.codec import decode_telemetry, encode
from serving.kafka_io import make_producer, read_topic
from serving.monitor import Monitor
from serving.scorer import Scorer
from serving.synthetic import iot_stream
from tests.corpus.bad_inputs import LABELS, bad_inputs
from tests.waiting import wait_for
from training.datasets import to_frame
from training.evaluate import Evaluation
from training.recipes import make_classifier
from training.registry import Registry

pytestmark = pytest.mark.integration
CODECS = (None, "gzip", "snappy", "lz4", "zstd")


def good_stream(start: int, stop: int):
    """The IoT stream with a JSON boolean feature beside the others."""
    for r in iot_stream(stop, drift_at=10**9):
        if r.seq >= start:
            record = {**r.record, "features": {**r.record["features"], "alarm": r.seq % 7 == 0}}
            yield r.device, record, r.label


def register_champion(registry: Registry) -> int:
    rows = list(good_stream(0, 1500))
    # Through the codec, as the flow's window reader sees them: booleans become 1/0.
    frame = to_frame(decode_telemetry(encode(record))["features"] for _, record, _ in rows)
    labels = pd.Series([label for _, _, label in rows])
    model = make_classifier().fit(frame, labels)
    _, version = registry.record_candidate(
        model=model, frame=frame, labels=labels, evaluation=Evaluation(1.0, None, 0.0, 0, True, "test"),
        params={}, tags={}, reference_rows=200, training_seconds=0.0, promote=True)
    registry.move_champion(version, "test champion")
    return version


def test_every_bad_input_is_dead_lettered_and_every_good_record_scored(home):
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        settings = Settings()
        configure_environment(settings)
        ensure_topics(bootstrap, settings.kafka)
        topics = settings.kafka.topics
        registry = Registry.from_settings(settings)
        register_champion(registry)

        stop = threading.Event()
        scorer = Scorer(settings, bootstrap, registry, stop)
        ledger = Ledger(settings.ledger_url)
        retrains = []
        monitor = Monitor(settings, bootstrap, registry, ledger,
                          lambda w, t: retrains.append(t) or {"promoted": False}, stop)
        threads = [threading.Thread(target=stage.run, daemon=True, name=name)
                   for name, stage in (("scorer", scorer), ("monitor", monitor))]
        for thread in threads:
            thread.start()

        # One producer per codec; the good records and the bad inputs are dealt round-robin
        # between them, so bad messages travel inside compressed batches beside good ones.
        producers = [make_producer(bootstrap, settings.kafka, compression_type=codec,
                                   max_request_size=8 * 1024 * 1024) for codec in CODECS]
        bad = bad_inputs()
        good = list(good_stream(1500, 3500))
        telemetry_sent, label_sent = [], []
        for i, (device, record, label) in enumerate(good):
            producer = producers[i % len(producers)]
            telemetry_sent.append(producer.send(topics.telemetry, key=device.encode(), value=encode(record)))
            label_sent.append(producer.send(topics.labels, key=device.encode(),
                                            value=encode({"id": record["id"], "ts": record["ts"], "label": label})))
            if i % 50 == 0 and i // 50 < len(bad):
                item = bad[i // 50]
                topic = topics.labels if item.topic == LABELS else topics.telemetry
                producer.send(topic, key=b"poison", value=item.raw)
        for producer in producers:
            producer.flush()
            producer.close()
        good_ids = {record["id"] for _, record, _ in good}

        def predicted():
            return [json.loads(m.value) for m in read_topic(
                bootstrap, settings.kafka, topics.predictions,
                until=lambda got: len({json.loads(m.value)["id"] for m in got}) >= len(good_ids), timeout=120)]

        predictions = predicted()
        wait_for(lambda: monitor.invalid + monitor.telemetry_seen >= len(bad) + len(good_ids), 60,
                 lambda: f"the monitor to read every message: {monitor.invalid} invalid, "
                         f"{monitor.telemetry_seen} telemetry; scorer {scorer.scored} {scorer.dead_letters}")
        assert all(thread.is_alive() for thread in threads), "a stage stopped"
        letters = [json.loads(m.value) for m in read_topic(
            bootstrap, settings.kafka, topics.dead_letter, until=lambda got: len(got) >= len(bad), timeout=60)]
        stop.set()
        for thread in threads:
            thread.join(30)
        ledger.close()

        # The flow's window reader over the same offsets (the bad messages lie between the good
        # ones): the good records only, booleans as 1/0.
        rows = []
        for t, lab, (_, record, _) in zip(telemetry_sent, label_sent, good, strict=True):
            mt, ml = t.get(timeout=1), lab.get(timeout=1)
            rows.append((mt.partition, mt.offset, ml.partition, ml.offset, record["ts"]))
        window = TrainingWindow.from_positions(rows, bootstrap_servers=bootstrap, telemetry_topic=topics.telemetry,
                                               labels_topic=topics.labels, positions=(0, len(rows)))
        frame, target = load_window.fn(window, settings)
    assert len(frame) == len(good_ids) == len(target)
    assert set(frame["alarm"].unique()) == {0, 1}

    # Every good record scored (with the champion), no bad one.
    assert {p["id"] for p in predictions} == good_ids
    assert scorer.scored >= len(good_ids)
    # Every bad input dead-lettered once, with its reason, matched by the hash of its bytes.
    by_hash = {hashlib.sha256(b.raw).hexdigest() if b.raw is not None else None: b for b in bad}
    assert len(letters) == len(bad) == scorer.dead_letters
    found = {}
    for letter in letters:
        item = by_hash[letter["sha256"]]
        assert item.reason in letter["error"], (item.kind, letter["error"])
        assert letter["size"] == (len(item.raw) if item.raw is not None else None)
        assert letter["raw"] is None or len(letter["raw"].encode("utf-8")) <= 4 * 1024  # an excerpt, bounded
        found[item.kind] = letter
    assert sorted(found) == sorted(b.kind for b in bad)
    assert found["oversized record (2 MiB)"]["truncated"] is True
    # The monitor read them all and skipped the bad ones (the scorer letters those: no duplicates).
    # An unseen category is drift to watch, not a malformed record: the monitor keeps it.
    unseen = sum("unseen category" in b.reason for b in bad)
    assert monitor.invalid == len(bad) - unseen and monitor.dead_letters == 0
    assert monitor.telemetry_seen == len(good_ids) + unseen
    assert monitor.last_invalid

