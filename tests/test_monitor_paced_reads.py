"""The monitor reads its topics in step (issue 11, the soak): with a backlog of telemetry and
labels far larger than its join on a real Tansu broker, one consumer on the three topics handed
back a partition's whole fetch of telemetry before the labels and the join fell back to a sample
(18,010 of 30,000 labelled with partitions paused; fewer without). A consumer per topic, read by
Kafka time (serving.kafka_io.PacedReader), labels (nearly) all of it. Real broker, ledger and
MLflow store; the monitor run by its own loop on a thread."""

from __future__ import annotations

import threading
import time

from kafka import TopicPartition

from driftctl.messages import Label
from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
from driftctl.runtime.stack import configure_environment
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from serving.codec import encode_label, encode_telemetry
from serving.kafka_io import make_group_consumer, make_producer
from serving.monitor import Monitor
from serving.synthetic import iot_stream
from training.registry import Registry

RECORDS, CAP, LATE = 30_000, 3_000, 300


def test_a_backlog_far_beyond_the_join_is_labelled(home):
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        settings = Settings()
        settings.serving.join_max_records = CAP
        configure_environment(settings)
        ensure_topics(bootstrap, settings.kafka)
        topics = settings.kafka.topics
        # The backlog as the producer writes it (labels LATE records after their telemetry), all on
        # the topics before the monitor starts: 10x what its join holds.
        stream = list(iot_stream(RECORDS, drift_at=10**9))
        producer = make_producer(bootstrap, settings.kafka)
        try:
            for i in range(RECORDS + LATE):
                if i < RECORDS:
                    r = stream[i]
                    producer.send(topics.telemetry, key=r.device.encode(), value=encode_telemetry(r.record))
                if i >= LATE:
                    r = stream[i - LATE]
                    producer.send(topics.labels, key=r.device.encode(),
                                  value=encode_label(Label(id=r.record["id"], ts=r.record["ts"], label=r.label)))
            producer.flush()
        finally:
            producer.close()

        stop = threading.Event()
        ledger = Ledger(settings.ledger_url)
        monitor = Monitor(settings, bootstrap, Registry.from_settings(settings), ledger,
                          lambda w, t: {"promoted": False}, stop)
        thread = threading.Thread(target=monitor.run, daemon=True, name="monitor")
        thread.start()
        try:
            deadline, last = time.monotonic() + 240, (-1, -1)
            while time.monotonic() < deadline:  # until every telemetry is read and the count stands still
                time.sleep(3)
                now = (monitor.telemetry_seen, monitor.labelled)
                if monitor.telemetry_seen >= RECORDS and now == last:
                    break
                last = now
        finally:
            stop.set()
            thread.join(timeout=60)
            ledger.close()
        assert monitor.telemetry_seen == RECORDS, monitor.telemetry_seen
        assert monitor.labelled >= 0.98 * RECORDS, (monitor.labelled, monitor.join_vitals())
        assert len(monitor._pending) <= CAP
        # Fetches sized to what a turn reads: nine full 4 MB buffers held 36 MB while it was behind.
        assert monitor.reader is not None
        assert all(c.config["max_partition_fetch_bytes"] <= 1 << 20 for c in monitor.reader.consumers.values())
        # Every partition's offset committed to the monitor's group: a restart reads on from there.
        group = make_group_consumer(bootstrap, settings.kafka, settings.kafka.monitor_group)
        try:
            committed = {}
            for topic in (topics.telemetry, topics.labels):
                partitions = [TopicPartition(topic, p) for p in group.partitions_for_topic(topic)]
                committed[topic] = sum(group.committed(tp) or 0 for tp in partitions)
        finally:
            group.close()
        assert committed == {topics.telemetry: RECORDS, topics.labels: RECORDS}, committed
