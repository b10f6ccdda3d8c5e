"""kafka-python clients built from settings, and reading a bounded offset range."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, IllegalStateError
from kafka.partitioner.default import DefaultPartitioner, murmur2
from kafka.producer.future import FutureRecordMetadata
from kafka.producer.producer_batch import FinalState, ProducerBatch
from kafka.record.memory_records import MemoryRecordsBuilder

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


def sent_or_raise(futures: list[FutureRecordMetadata | ProducerBatch]) -> None:
    """After `producer.flush()`: raise `SendFailed` if any send of the batch failed (a record's
    future, or a whole record batch handed over by `BatchSender`).

    `flush()` returns when every send is done, failed ones included; committing then would
    skip the records whose output was lost."""
    failed = [f for f in futures if not _acknowledged(f)]
    if failed:
        first = failed[0]
        if isinstance(first, ProducerBatch):
            reason = "not acknowledged" if first.final_state is None else f"record batch {first.final_state.name}"
        else:
            reason = first.exception if first.is_done else "not acknowledged"
        raise SendFailed(f"{len(failed)} of {len(futures)} sends failed ({reason})")


def _acknowledged(sent: FutureRecordMetadata | ProducerBatch) -> bool:
    if isinstance(sent, ProducerBatch):
        return sent.final_state is FinalState.SUCCEEDED
    return bool(sent.is_done and not sent.failed())


def _has_internals(producer: KafkaProducer) -> bool:
    """Whether the producer's accumulator is the one BatchSender was written against (kafka-python
    3.0): another version's producer gets every message through `send`."""
    accumulator: Any = getattr(producer, "_accumulator", None)
    config = getattr(accumulator, "config", {})
    return (all(hasattr(accumulator, name) for name in ("_batches", "_incomplete", "_tp_lock",
                                                        "_appends_in_progress", "_closed"))
            and all(name in config for name in ("message_version", "compression_attrs", "batch_size"))
            and hasattr(getattr(producer, "_sender", None), "wakeup"))


class BatchSender:
    """Messages sent through a KafkaProducer as whole record batches, built by kafka-python's own
    batch builder and handed to the producer's accumulator: its sender thread sends, retries,
    times out and acknowledges them exactly as it does the batches `send` makes.

    `KafkaProducer.send` costs ~14 us a message in Python (argument checks, metadata, the
    partitioner's pure-Python murmur2, a lock, a future per record); appending to the batch
    builder costs ~1.6. Each message goes to the partition the default partitioner picks (murmur2
    of the key, hashes cached per key, the topic's partitions read again at each hand-over), in the
    order appended; a message without a key, a producer that is transactional or not a
    KafkaProducer (a test's stand-in), goes through `send` as before. Results are per batch:
    `hand_over` returns the batches, and `sent_or_raise` checks them after `producer.flush()`.
    Not thread-safe: one sender per thread (the producer itself may be shared)."""

    MAX_KEYS = 65_536  # hashes cached (a stream's keys are devices; anything else is bounded)

    def __init__(self, producer: Any, *, batched: bool = True):
        self.producer = producer
        config = getattr(producer, "config", None)
        accumulator: Any = getattr(producer, "_accumulator", None)
        manager = getattr(producer, "_transaction_manager", None)
        self.batched = (batched and isinstance(producer, KafkaProducer) and _has_internals(producer)
                        and isinstance(config.get("partitioner"), DefaultPartitioner)  # type: ignore[union-attr]
                        and not (manager is not None and manager.is_transactional()))
        self._accumulator = accumulator
        # What the accumulator builds its own batches with (message version, compression, batch size).
        self._config = accumulator.config if self.batched else {}
        self._max_size = config["max_request_size"] if self.batched else 0  # type: ignore[index]
        self._hashes: dict[bytes, int] = {}
        self._partitions: dict[str, list[int]] = {}  # per topic, sorted; read again after each hand-over
        self._open: dict[tuple[str, int], ProducerBatch] = {}
        self._handed: list[ProducerBatch] = []
        self.opened: float | None = None  # when the oldest open batch was started (time.monotonic)

    def send(self, topic: str, key: bytes | None, value: bytes,
             timestamp_ms: int | None = None) -> FutureRecordMetadata | None:
        """Append one message (stamped `timestamp_ms`, else now); None when it waits in a batch for
        `hand_over`, the record's future when it went through `producer.send`."""
        if not self.batched or key is None or len(value) > self._max_size:
            self._enqueue_open()  # what was appended before goes first
            return self.producer.send(topic, key=key, value=value, timestamp_ms=timestamp_ms)  # its own checks
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = self._partitions[topic] = sorted(self.producer.partitions_for(topic))
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self.MAX_KEYS:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7fffffff
        partition = partitions[hashed % len(partitions)]
        batch = self._open.get((topic, partition))
        if batch is None:
            batch = self._new(topic, partition)
        written = batch.records.append(timestamp_ms, key, value, None)
        if written is None:  # full: hand it over, start the next
            self._enqueue(self._open.pop((topic, partition)))
            batch = self._new(topic, partition)
            written = batch.records.append(timestamp_ms, key, value, None)  # a batch always takes its first
        if written.size > batch.max_record_size:  # the producer's record-size-max metric
            batch.max_record_size = written.size
        return None

    def _new(self, topic: str, partition: int) -> ProducerBatch:
        config = self._config
        records = MemoryRecordsBuilder(config["message_version"], config["compression_attrs"], config["batch_size"])
        batch = self._open[(topic, partition)] = ProducerBatch(TopicPartition(topic, partition), records)
        if self.opened is None:
            self.opened = batch.created
        return batch

    def _enqueue(self, batch: ProducerBatch) -> None:
        # What RecordAccumulator.append does with a batch it made, under the same lock.
        accumulator = self._accumulator
        tp = batch.topic_partition
        accumulator._appends_in_progress.increment()
        try:
            with accumulator._tp_lock(tp):
                if accumulator._closed:
                    raise IllegalStateError("RecordAccumulator is closed")
                accumulator._batches[tp].append(batch)
                accumulator._incomplete.add(batch)
        finally:
            accumulator._appends_in_progress.decrement()
        self.producer._sender.wakeup()
        self._handed.append(batch)

    def discard(self) -> None:
        """Drop the open batches unsent (after a failure, when their records are read again)."""
        self._open.clear()
        self._handed.clear()
        self.opened = None

    def hand_over(self) -> list[ProducerBatch]:
        """Every open batch to the producer's sender thread (which sends it at once if its linger has
        passed, or on `producer.flush()`); returns the batches handed over since the last call."""
        self._enqueue_open()
        self._partitions.clear()
        handed, self._handed = self._handed, []
        return handed

    def _enqueue_open(self) -> None:
        for key in list(self._open):
            self._enqueue(self._open.pop(key))
        self.opened = None


def rewind(consumer: KafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
    """Seek each partition of `batch` back to its first record: the batch is delivered again."""
    for tp, messages in batch.items():
        if messages:
            try:
                consumer.seek(tp, messages[0].offset)
            except Exception as exc:  # partition revoked meanwhile: its new owner reads from the commit
                logging.getLogger(__name__).warning("cannot rewind %s: %s", tp, exc)


PACED_FETCH_BYTES = 1024 * 1024  # a PacedReader consumer's fetch per partition (kafka-python's default)


class PacedReader:
    """Several topics read together, a consumer per partition, none far ahead of the others in time.

    One consumer hands back a whole partition's fetch (100,000 records and more) before the
    next, so a joiner of the topics saw one side run far ahead of the other (issue 11, the soak:
    telemetry 470,000 records ahead of its labels); a consumer per topic still drains its
    partitions one after another, in another order than its partner's. Pausing partitions fights
    kafka-python's fetch buffer (a 3.0.12 bug parks a paused partition's records for good). Here
    each partition has its own consumer (assigned, committing to `group`) and the caller decides:
    each turn reads at most `max_records` from each partition whose last record (its Kafka
    timestamp: when it arrived) is not more than `skew_ms` later than the last of the partition
    furthest behind. A partition holds the others back while it has records left to read
    (position below its high watermark, or not fetched yet), and no longer than `grace` seconds
    without delivering any (one that cannot be fetched). Offsets are committed after the caller
    has handled what was returned (at-least-once). Partitions are read from the
    topics' metadata at start; the consumers are in no group (one monitor reads them all).

    A topic in `follow` is written by a stage from another topic's records, stamped with their
    time (the scorer's predictions): read to its high watermark, a partition of it still holds the
    others at its last timestamp, for up to `follow_grace` seconds without a new record (a stage
    stopped). Otherwise the others ran ahead of a lagging scorer and the joiner held everything
    it read in between, however far behind the scorer was."""

    def __init__(self, consumers: dict[TopicPartition, KafkaConsumer], *, max_records: int, skew_ms: int,
                 grace: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 follow: Collection[str] = (), follow_grace: float = 30.0):
        self.consumers = consumers
        self.follow = frozenset(follow)
        self.follow_grace = follow_grace
        self.max_records = max_records
        self.skew_ms = skew_ms
        self.grace = grace
        self.clock = clock
        self._last: dict[TopicPartition, int | None] = dict.fromkeys(consumers)  # last record's timestamp
        self._empty_since: dict[TopicPartition, float | None] = dict.fromkeys(consumers, clock())
        self._read: set[TopicPartition] = set()  # read since their last commit
        self._next: dict[TopicPartition, int] = {}  # the offset after the last record handed out
        # The last poll found nothing more to read: each partition it read returned less than
        # `max_records` and stands at its high watermark (the caller may let records gather).
        self.drained = False

    @classmethod
    def open(cls, bootstrap: str, kafka: KafkaSettings, group: str, topics: list[str], *, max_records: int,
             skew_ms: int, stop: Callable[[], bool] = lambda: False, follow: Collection[str] = ()) -> PacedReader:
        """A consumer per partition of `topics` (waiting for their metadata), each at `group`'s committed offset."""
        probe = make_reader(bootstrap, kafka)
        try:
            partitions: list[TopicPartition] = []
            for topic in topics:
                found = probe.partitions_for_topic(topic)
                while not found and not stop():
                    logging.getLogger(__name__).warning("no partitions for %s yet: waiting", topic)
                    time.sleep(1.0)
                    found = probe.partitions_for_topic(topic)
                partitions += [TopicPartition(topic, p) for p in sorted(found or ())]
        finally:
            probe.close()
        consumers = {}
        for tp in partitions:
            # A turn takes at most `max_records` of a partition: a fetch of 4 MB (the group
            # consumers' default, ~16,000 records) only held memory, nine of them full while the
            # reader was behind (the soak: the monitor's mapped blocks 11 -> 73 MB as it fell behind).
            consumer = make_group_consumer(bootstrap, kafka, group, max_partition_fetch_bytes=PACED_FETCH_BYTES)
            consumer.assign([tp])
            consumers[tp] = consumer
        return cls(consumers, max_records=max_records, skew_ms=skew_ms, follow=follow)

    def _pace(self, tp: TopicPartition) -> float | None:
        """Where `tp` holds the others: its last timestamp (-inf before its first record), or None
        when it holds no one (read to its high watermark, or silent past the grace)."""
        empty_since, last = self._empty_since[tp], self._last[tp]
        following = tp.topic in self.follow and last is not None
        grace = self.follow_grace if following else self.grace
        if empty_since is not None and self.clock() - empty_since > grace:
            return None
        consumer = self.consumers[tp]
        try:
            high, position = consumer.highwater(tp), consumer.position(tp, timeout_ms=0)
        except Exception:
            return None
        if high is not None and position is not None and position >= high and not following:
            return None
        return float("-inf") if last is None else float(last)

    def poll(self, timeout_ms: int) -> list[tuple[str, list[ConsumerRecord]]]:
        """The next records of each partition due, in offset order; waits up to `timeout_ms` (on
        the partition furthest behind) only when none has any."""
        paces = {tp: self._pace(tp) for tp in self.consumers}
        behind = min((p for p in paces.values() if p is not None), default=None)
        # A partition that holds no one is not read past the others either: one read to its end by a
        # reader that keeps up with the producer was read on as records came, whatever held the rest
        # (the telemetry ran ahead of a lagging scorer's predictions).
        reach = {tp: p if p is not None else float("-inf") if self._last[tp] is None else float(self._last[tp])  # type: ignore[arg-type]
                 for tp, p in paces.items()}
        due = [tp for tp in paces if behind is None or reach[tp] <= behind + self.skew_ms]
        due.sort(key=lambda tp: float("inf") if paces[tp] is None else paces[tp])  # type: ignore[arg-type,return-value]
        out = [(tp, self._take(tp, 0)) for tp in due]
        if due and not any(records for _, records in out):
            out = [(due[0], self._take(due[0], timeout_ms))]
        self.drained = all(len(records) < self.max_records and self._at_end(tp) for tp, records in out)
        return [(tp.topic, records) for tp, records in out if records]

    def _at_end(self, tp: TopicPartition) -> bool:
        try:
            high, position = self.consumers[tp].highwater(tp), self.consumers[tp].position(tp, timeout_ms=0)
        except Exception:
            return False
        return high is not None and position is not None and position >= high

    def _take(self, tp: TopicPartition, timeout_ms: int) -> list[ConsumerRecord]:
        batch = self.consumers[tp].poll(timeout_ms=timeout_ms, max_records=self.max_records)
        records = [m for messages in batch.values() for m in messages]
        if not records:
            if self._empty_since[tp] is None:
                self._empty_since[tp] = self.clock()
            return records
        self._empty_since[tp] = None
        self._read.add(tp)
        self._next[tp] = records[-1].offset + 1
        stamp = records[-1].timestamp
        if stamp is not None and stamp >= 0:
            self._last[tp] = stamp
        return records

    def commit(self, what: str) -> None:
        """Commit, in one request, the offset after the last record handed out of each partition
        read since the last commit (any of the consumers can: they are in no group)."""
        if not self._read:
            return
        offsets = {tp: OffsetAndMetadata(self._next[tp], "", -1) for tp in self._read}
        try:
            next(iter(self.consumers.values())).commit(offsets=offsets)
        except CommitFailedError as exc:  # read again after a restart (at-least-once)
            logging.getLogger(__name__).warning("%s: commit refused: %s", what, exc)
            return
        self._read.clear()

    def close(self) -> None:
        for consumer in self.consumers.values():
            consumer.close()
