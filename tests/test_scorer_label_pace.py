"""A scorer far behind does not hold every label read early (issue 11, check 7): its one consumer
hands back fetches of a few MB, many more labels than records, so labels ran ahead of the
telemetry and waited in its join until their record came, as many as the scorer was behind.
A labels partition is paused while it is ahead (Kafka time) of its telemetry partition and that
one has records left. No broker: a consumer that says where each partition stands."""

from __future__ import annotations

import threading

from kafka import TopicPartition

from driftctl.settings import Settings
from serving.scorer import Scorer


class Consumer:
    def __init__(self, positions: dict, highs: dict):
        self.positions, self.highs, self._paused = positions, highs, set()

    def assignment(self):
        return set(self.positions)

    def paused(self):
        return set(self._paused)

    def pause(self, *tps):
        self._paused.update(tps)

    def resume(self, *tps):
        self._paused.difference_update(tps)

    def position(self, tp, timeout_ms=None):
        return self.positions[tp]

    def highwater(self, tp):
        return self.highs[tp]


def test_labels_ahead_of_their_telemetry_wait_until_it_passes_them(tmp_path):
    settings = Settings(home=tmp_path)
    topics = settings.kafka.topics
    records, labels = TopicPartition(topics.telemetry, 0), TopicPartition(topics.labels, 0)
    scorer = Scorer(settings, "unused:9092", None, threading.Event())
    consumer = Consumer({records: 1_000, labels: 9_000}, {records: 50_000, labels: 50_000})
    scorer._stamps = {records: 1_000, labels: 9_000}  # labels read 8 s of the stream ahead
    scorer.pace_labels(consumer)
    assert consumer.paused() == {labels}
    scorer._stamps[records] = 8_000  # still behind them
    scorer.pace_labels(consumer)
    assert consumer.paused() == {labels}
    scorer._stamps[records] = 9_500  # passed them
    scorer.pace_labels(consumer)
    assert consumer.paused() == set()


def test_labels_go_on_when_the_telemetry_is_read_to_its_end(tmp_path):
    """A label comes after its record: with no record left to read, the last ones must still be learned."""
    settings = Settings(home=tmp_path)
    topics = settings.kafka.topics
    records, labels = TopicPartition(topics.telemetry, 0), TopicPartition(topics.labels, 0)
    scorer = Scorer(settings, "unused:9092", None, threading.Event())
    consumer = Consumer({records: 50_000, labels: 49_000}, {records: 50_000, labels: 50_000})
    scorer._stamps = {records: 50_000, labels: 50_300}
    scorer.pace_labels(consumer)
    assert consumer.paused() == set()
