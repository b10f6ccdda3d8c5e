"""`serving.kafka_io.BatchSender`: the same partitions, order and bytes as `KafkaProducer.send`,
its batches acknowledged through the producer's own sender thread, failures caught by `sent_or_raise`."""

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.producer.producer_batch import ProducerBatch
from kafka.record.memory_records import MemoryRecordsBuilder

from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
from driftctl.settings import KafkaSettings, Topics
from serving.codec import encode_telemetry
from serving.kafka_io import BatchSender, SendFailed, make_producer, sent_or_raise
from serving.producer import publish
from serving.synthetic import iot_stream


def _read(bootstrap: str, topic: str, partitions: int, expected: int) -> dict[int, list[tuple[bytes, bytes]]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    got: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in range(partitions)}
    for _ in range(200):
        for tp, messages in consumer.poll(timeout_ms=200).items():
            got[tp.partition] += [(m.key, m.value) for m in messages]
        if sum(map(len, got.values())) >= expected:
            break
    consumer.close()
    return got


@pytest.mark.integration
def test_same_partitions_order_and_bytes_as_send(tmp_path):
    kafka = KafkaSettings(partitions=3, topics=Topics(telemetry="by-send", predictions="by-batches"))
    messages = [(r.device.encode(), encode_telemetry(r.record)) for r in iot_stream(3000, drift_at=1500)]
    big = (b"device-big", b"x" * 300_000)  # larger than a batch: a batch of its own
    messages.insert(1000, big)
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        ensure_topics(broker.bootstrap_servers, kafka)
        producer = make_producer(broker.bootstrap_servers, kafka)
        for key, value in messages:
            producer.send("by-send", key=key, value=value)
        producer.flush()
        sender = BatchSender(producer)
        assert sender.batched
        handed = []
        for i, (key, value) in enumerate(messages):
            assert sender.send("by-batches", key, value) is None
            if i % 700 == 0:
                handed += sender.hand_over()
        handed += sender.hand_over()
        producer.flush()
        sent_or_raise(handed)  # every batch acknowledged
        assert len(handed) >= 4  # the full ones, the big one, and those handed over part-way
        by_send = _read(broker.bootstrap_servers, "by-send", 3, len(messages))
        by_batches = _read(broker.bootstrap_servers, "by-batches", 3, len(messages))
        producer.close()
    assert sum(map(len, by_batches.values())) == len(messages)
    assert all(by_send[p] for p in range(3))  # the keys spread over every partition
    assert by_batches == by_send


@pytest.mark.integration
def test_publish_in_batches_delivers_everything_in_order(tmp_path):
    kafka = KafkaSettings(partitions=2, topics=Topics(telemetry="t", labels="l"))
    readings = list(iot_stream(1200, drift_at=600))
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        ensure_topics(broker.bootstrap_servers, kafka)
        producer = make_producer(broker.bootstrap_servers, kafka)
        assert publish(producer, kafka.topics, readings, rate=4000, label_delay=50) == 1200
        telemetry = _read(broker.bootstrap_servers, "t", 2, 1200)
        labels = _read(broker.bootstrap_servers, "l", 2, 1200)
        producer.close()
    for got in (telemetry, labels):
        assert sum(map(len, got.values())) == 1200
    for part in telemetry.values():  # each partition's records in the order they were produced
        seqs = [int(value.split(b'"rec-')[1][:9]) for _, value in part]
        assert seqs == sorted(seqs)


class _StandIn:
    """Not a KafkaProducer: every message goes through its `send`."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    def send(self, topic, key=None, value=None, timestamp_ms=None):  # KafkaProducer.send's keywords
        self.sent.append((topic, key, value))
        return len(self.sent)


def test_a_stand_in_producer_gets_every_send():
    stand_in = _StandIn()
    sender = BatchSender(stand_in)
    assert not sender.batched
    assert sender.send("p", b"k", b"v") == 1
    assert sender.hand_over() == []
    assert stand_in.sent == [("p", b"k", b"v")]


def _batch() -> ProducerBatch:
    batch = ProducerBatch(TopicPartition("p", 0), MemoryRecordsBuilder(2, 0, 1024))
    batch.records.append(None, b"k", b"v", None)
    return batch


def test_sent_or_raise_checks_whole_batches():
    done, failed, pending = _batch(), _batch(), _batch()
    done.complete(0, -1)
    failed.complete_exceptionally(RuntimeError("broker said no"), lambda i: RuntimeError("no"))
    sent_or_raise([done])
    with pytest.raises(SendFailed, match=r"1 of 2 sends failed \(record batch FAILED"):
        sent_or_raise([done, failed])
    with pytest.raises(SendFailed, match="not acknowledged"):
        sent_or_raise([pending, done])
