"""The monitor's paced reads follow a lagging scorer (issue 11, check 7): predictions are stamped
with their telemetry's Kafka time, and a predictions partition read to its end still holds the
telemetry at its last timestamp, so the join holds the same stretch of the stream however far
behind the scorer is. No broker: consumers that hand out (offset, timestamp) records."""

from __future__ import annotations

from collections import namedtuple

from kafka import TopicPartition

from serving.kafka_io import PacedReader

Record = namedtuple("Record", "offset timestamp")
TELEMETRY, PREDICTIONS = TopicPartition("telemetry", 0), TopicPartition("predictions", 0)


class Partition:
    """One partition's consumer: `stamps` are its records' Kafka timestamps, in offset order. Its high
    watermark is the one its last fetch saw, as kafka-python's (None before the first)."""

    def __init__(self, tp: TopicPartition, stamps: list[int]):
        self.tp, self.stamps, self.at, self.high = tp, list(stamps), 0, None

    def highwater(self, tp):
        return self.high

    def position(self, tp, timeout_ms=0):
        return self.at

    def poll(self, timeout_ms, max_records):
        self.high = len(self.stamps)
        taken = [Record(o, self.stamps[o]) for o in range(self.at, min(self.at + max_records, len(self.stamps)))]
        self.at += len(taken)
        return {self.tp: taken} if taken else {}


def read_all(reader: PacedReader) -> None:
    for _ in range(1000):
        if not reader.poll(timeout_ms=0):
            return


def setup(follow: tuple[str, ...], scored: int):
    now = [0.0]
    telemetry, predictions = Partition(TELEMETRY, list(range(1000))), Partition(PREDICTIONS, list(range(scored)))
    reader = PacedReader({TELEMETRY: telemetry, PREDICTIONS: predictions}, max_records=10, skew_ms=0,
                         clock=lambda: now[0], follow=follow, follow_grace=30.0)
    return reader, telemetry, predictions, now


def test_telemetry_waits_for_the_predictions_of_a_scorer_behind():
    reader, telemetry, predictions, now = setup(("predictions",), scored=100)
    read_all(reader)
    assert predictions.at == 100
    assert 100 <= telemetry.at <= 110  # up to the last prediction's time, and one turn's step past it
    predictions.stamps += range(100, 400)  # the scorer goes on
    now[0] += 5.0
    read_all(reader)
    assert 400 <= telemetry.at <= 410


def test_a_reader_that_keeps_up_with_the_producer_still_waits_for_the_scorer():
    """Telemetry read to its end at every turn (the monitor as fast as the producer) was read on as
    it came, whatever the predictions: a partition read to its end held no one and was always due."""
    reader, telemetry, predictions, now = setup(("predictions",), scored=50)
    telemetry.stamps = list(range(50))
    read_all(reader)  # both read to their end, in step
    for n in range(50, 1000, 5):  # the producer writes 5 records a turn; the scorer is stuck at 50
        telemetry.stamps += range(n, n + 5)
        reader.poll(timeout_ms=0)
        now[0] += 0.01
    assert predictions.at == 50
    assert telemetry.at <= 60


def test_without_follow_the_telemetry_runs_ahead_of_the_scorer():
    reader, telemetry, _predictions, _now = setup((), scored=100)
    read_all(reader)
    assert telemetry.at == 1000


def test_a_scorer_silent_past_the_grace_no_longer_holds_the_telemetry():
    reader, telemetry, _predictions, now = setup(("predictions",), scored=100)
    read_all(reader)
    assert telemetry.at <= 110
    now[0] += 29.0
    read_all(reader)
    assert telemetry.at <= 110
    now[0] += 2.0  # 31 s without a prediction: a scorer stopped
    read_all(reader)
    assert telemetry.at == 1000


def test_no_prediction_yet_holds_nothing():
    """Before the first champion the monitor reads telemetry (and labels) alone, to train it."""
    reader, telemetry, _predictions, _now = setup(("predictions",), scored=0)
    read_all(reader)
    assert telemetry.at == 1000


def test_drained_only_once_every_partition_read_stands_at_its_end():
    """The monitor lets records gather only after a turn that left nothing to read (its wait must not
    slow a backlog): a partition handing out a full `max_records`, or one behind its high watermark, is
    not drained."""
    reader, telemetry, _predictions, _now = setup((), scored=15)
    telemetry.stamps = list(range(15))
    reader.poll(timeout_ms=0)  # 10 of each: full turns
    assert not reader.drained
    reader.poll(timeout_ms=0)  # the last 5 of each, both at their end
    assert reader.drained
    telemetry.stamps += range(15, 40)
    telemetry.high = 40  # a fetch saw more than a turn hands out
    reader.poll(timeout_ms=0)
    assert not reader.drained
