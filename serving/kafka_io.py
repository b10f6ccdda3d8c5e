"""kafka-python clients built from settings, and reading a bounded offset range."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError
from kafka.producer.future import FutureRecordMetadata

from driftctl.settings import KafkaSettings


def make_producer(bootstrap: str, kafka: KafkaSettings, **options: Any) -> KafkaProducer:
    delivery_ms = int(kafka.send_timeout * 1000)
    defaults = {"linger_ms": 5, "acks": "all", "retries": 5, "batch_size": 256 * 1024,
                "compression_type": None if kafka.compression == "none" else kafka.compression,
                # kafka-python wants the delivery timeout above linger + one request's timeout.
                "delivery_timeout_ms": delivery_ms, "request_timeout_ms": min(30_000, delivery_ms // 2)}
    return KafkaProducer(bootstrap_servers=bootstrap, **kafka.client_options(), **{**defaults, **options})


def make_group_consumer(bootstrap: str, kafka: KafkaSettings, group: str, **options: Any) -> KafkaConsumer:
    # A small max_poll_interval lets a group form in ~3 s on Tansu instead of ~20 s.
    defaults = {
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_interval_ms": 10_000,
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 1_000,
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
    }
    return KafkaConsumer(bootstrap_servers=bootstrap, **kafka.client_options(), **{**defaults, **options})


def make_reader(bootstrap: str, kafka: KafkaSettings, **options: Any) -> KafkaConsumer:
    """A consumer outside any group: it reads what it is assigned, commits nothing."""
    defaults = {"group_id": None, "enable_auto_commit": False, "auto_offset_reset": "earliest"}
    return KafkaConsumer(bootstrap_servers=bootstrap, **kafka.client_options(), **{**defaults, **options})


def read_ranges(bootstrap: str, kafka: KafkaSettings, topic: str, ranges: dict[int, tuple[int, int]],
                timeout: float = 30.0) -> Iterator[ConsumerRecord]:
    """Every record of `topic` with start <= offset < end per partition, in offset order.

    Ends when each partition's position passes its end: it never trusts `end_offsets`,
    which Tansu reports per batch, not per record.
    """
    wanted = {TopicPartition(topic, int(p)): (int(s), int(e)) for p, (s, e) in ranges.items() if int(e) > int(s)}
    if not wanted:
        return
    consumer = make_reader(bootstrap, kafka)
    try:
        consumer.assign(list(wanted))
        for tp, (start, _) in wanted.items():
            consumer.seek(tp, start)
        remaining = set(wanted)
        deadline = time.monotonic() + timeout
        while remaining:
            if time.monotonic() > deadline:
                missing = {tp.partition: (consumer.position(tp), wanted[tp][1]) for tp in remaining}
                raise TimeoutError(f"{topic}: offsets not reached within {timeout:.0f} s: {missing}")
            for tp, messages in consumer.poll(timeout_ms=200, max_records=5000).items():
                end = wanted[tp][1]
                for message in messages:
                    if message.offset < end:
                        yield message
                if consumer.position(tp) >= end:
                    remaining.discard(tp)
                    consumer.pause(tp)
    finally:
        consumer.close()


def read_topic(bootstrap: str, kafka: KafkaSettings, topic: str, *, until: Callable[[list], bool],
               timeout: float = 30.0) -> list[ConsumerRecord]:
    """Read `topic` from its beginning until `until(records)` holds or `timeout` passes."""
    consumer = make_reader(bootstrap, kafka)
    records: list[ConsumerRecord] = []
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout
        while not until(records) and time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=200, max_records=5000).values():
                records.extend(messages)
    finally:
        consumer.close()
    return records


def commit_or_warn(consumer: KafkaConsumer, what: str) -> bool:
    """Commit the consumer's position. A member that was slow between two polls is put out
    of its group and its commit refused: the next poll rejoins, and the records since the
    last commit are delivered again (at-least-once), so this is a warning, not a crash."""
    try:
        consumer.commit()
        return True
    except CommitFailedError as exc:
        logging.getLogger(__name__).warning("%s: commit refused, rejoining the group: %s", what, exc)
        return False


class SendFailed(Exception):
    """A batch's output was not acknowledged by the broker: its offsets must not be committed."""


def sent_or_raise(futures: list[FutureRecordMetadata]) -> None:
    """After `producer.flush()`: raise `SendFailed` if any send of the batch failed.

    `flush()` returns when every send is done, failed ones included; committing then would
    skip the records whose output was lost."""
    failed = [f for f in futures if not f.is_done or f.failed()]
    if failed:
        first = failed[0].exception if failed[0].is_done else "not acknowledged"
        raise SendFailed(f"{len(failed)} of {len(futures)} sends failed ({first})")


def rewind(consumer: KafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
    """Seek each partition of `batch` back to its first record: the batch is delivered again."""
    for tp, messages in batch.items():
        if messages:
            try:
                consumer.seek(tp, messages[0].offset)
            except Exception as exc:  # partition revoked meanwhile: its new owner reads from the commit
                logging.getLogger(__name__).warning("cannot rewind %s: %s", tp, exc)
