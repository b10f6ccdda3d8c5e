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


class PacedReader:
    """Several topics read together, each by its own consumer, none far ahead of the others in time.

    One consumer on several topics hands back a whole partition's fetch (100,000 records and more)
    before the next, so a joiner of the topics sees one side run far ahead of the other (issue 11,
    the soak: telemetry 470,000 records ahead of its labels). Pausing partitions fights
    kafka-python's fetch buffer; here the caller decides: each turn reads at most `max_records`
    from each topic whose last record (its Kafka timestamp: when it arrived) is not more than
    `skew_ms` later than the last of a topic behind it. A topic holds the others back while it has
    records left to read (position below the high watermark, or not yet assigned and fetched),
    and no longer than `grace` seconds without delivering any (a group that cannot form, a
    partition that cannot be fetched): a topic with nothing new holds no one back. Each
    consumer commits its own offsets after the caller has handled what it returned
    (at-least-once, as with one consumer)."""

    def __init__(self, consumers: dict[str, KafkaConsumer], *, max_records: int, skew_ms: int,
                 grace: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.consumers = consumers
        self.max_records = max_records
        self.skew_ms = skew_ms
        self.grace = grace
        self.clock = clock
        # Per topic, per partition: the timestamp of the last record read from it.
        self._last: dict[str, dict[int, int]] = {t: {} for t in consumers}
        self._empty_since: dict[str, float | None] = dict.fromkeys(consumers, clock())
        self._read: set[str] = set()  # topics read since their last commit

    def _pace(self, topic: str) -> float | None:
        """Where `topic` holds the others: the earliest of its partitions with records left to read
        (the last timestamp read from it, -inf before its first record), or None when it holds no
        one (every partition read to its high watermark, or silent past the grace). Per partition:
        one consumer reads a partition's fetch to its end before the next's."""
        empty_since = self._empty_since[topic]
        if empty_since is not None and self.clock() - empty_since > self.grace:
            return None
        consumer, last = self.consumers[topic], self._last[topic]
        try:
            assignment = consumer.assignment()
            if not assignment:
                return float("-inf")  # its group is still forming
            left, started = [], False
            for tp in assignment:
                high, position = consumer.highwater(tp), consumer.position(tp, timeout_ms=0)
                started = started or tp.partition in last or high is not None
                if (high is None or position is None or position < high) and tp.partition in last:
                    left.append(float(last[tp.partition]))
        except Exception:  # a rebalance in progress: holds no one this turn
            return None
        if not started:
            return float("-inf")  # nothing fetched yet: the others wait for its first records
        return min(left, default=None)

    def poll(self, timeout_ms: int) -> list[tuple[str, list[ConsumerRecord]]]:
        """The next records of each topic due, in offset order per partition; waits up to
        `timeout_ms` (on the topic furthest behind) only when none has any."""
        paces = {t: self._pace(t) for t in self.consumers}
        behind = min((p for p in paces.values() if p is not None), default=None)
        due = [t for t, p in paces.items() if behind is None or p is None or p <= behind + self.skew_ms]
        due.sort(key=lambda t: float("inf") if paces[t] is None else paces[t])  # type: ignore[arg-type,return-value]
        out = [(t, self._take(t, 0)) for t in due]
        if due and not any(records for _, records in out):
            out = [(due[0], self._take(due[0], timeout_ms))]
        return [(t, records) for t, records in out if records]

    def _take(self, topic: str, timeout_ms: int) -> list[ConsumerRecord]:
        batch = self.consumers[topic].poll(timeout_ms=timeout_ms, max_records=self.max_records)
        records = [m for messages in batch.values() for m in messages]
        if not records:
            if self._empty_since[topic] is None:
                self._empty_since[topic] = self.clock()
            return records
        self._empty_since[topic] = None
        self._read.add(topic)
        for tp, messages in batch.items():
            if messages and messages[-1].timestamp is not None and messages[-1].timestamp >= 0:
                self._last[topic][tp.partition] = messages[-1].timestamp
        return records

    def commit(self, what: str) -> None:
        """Commit each consumer that returned records since its last commit."""
        for topic in sorted(self._read):
            commit_or_warn(self.consumers[topic], f"{what} ({topic})")
        self._read.clear()

    def close(self) -> None:
        for consumer in self.consumers.values():
            consumer.close()
