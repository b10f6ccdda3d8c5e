"""The online learner in its own process (serving/learner.py): the same predictions as the
learner inline, its checkpoints, and a restart after the child dies."""

import os
import signal

import pytest

from serving import checkpoint
from serving.learner import LearnerFailed, LearnerProcess
from serving.synthetic import iot_stream
from training.recipes import make_online_learner


def _pairs(n, start=0):
    readings = list(iot_stream(start + n, drift_at=10**9, seed=3))[start:]
    return [(r.record["features"], r.label) for r in readings]


def test_the_process_predicts_what_the_inline_learner_predicts(tmp_path):
    """Each answer comes from the state that learned exactly the first `n_learned` pairs handed over."""
    inline, learned = make_online_learner(0), 0
    process = LearnerProcess(make_online_learner(0), 0, tmp_path / "start", tmp_path / "ckpt")
    handed: list = []
    seen = set()
    try:
        for k in range(0, 3000, 300):
            batch = _pairs(300, k)
            rows = [features for features, _ in batch]
            process.ask(rows)
            n_learned, answers = process.answer()
            assert learned <= n_learned <= len(handed)  # never ahead of what was handed over, never back
            for x, y in handed[learned:n_learned]:
                inline.learn_one(x, y)
            learned = n_learned
            seen.add(n_learned)
            assert answers == [inline.predict_proba_one(x) for x in rows]
            process.learn(batch)
            handed.extend(batch)
        assert any(answers)  # a grown tree, not empty answers compared with empty answers
    finally:
        process.close({"telemetry:0": 3000})
    saved = checkpoint.load(tmp_path / "ckpt")
    assert saved is not None and saved.n_learned == 3000 and saved.offsets == {"telemetry:0": 3000}
    assert not (tmp_path / "start").exists()


def test_a_dead_learner_is_restarted_from_its_checkpoint(tmp_path):
    process = LearnerProcess(make_online_learner(0), 0, tmp_path / "start", tmp_path / "ckpt")
    try:
        process.learn(_pairs(500))
        process.request_checkpoint({})  # learns everything handed over first
        process.learn(_pairs(200, 500))  # handed over after the checkpoint: lost with the child
        process.ask([])
        assert process.answer()[0] >= 500
        os.kill(process.pid, signal.SIGKILL)
        os.waitpid(process.pid, 0)
        with pytest.raises(LearnerFailed):
            process.ask([{"x": 1.0}])
            process.answer()
        process.ask([])
        assert process.answer()[0] == 500  # the checkpoint, newer than the state it started from (0)
    finally:
        process.close(None)


def test_a_scorer_whose_learner_process_cannot_run_learns_inline(tmp_path, monkeypatch):
    """No broker: `Scorer.process` on recorded messages, a champion fitted here, a producer that
    acknowledges at once. The learner process cannot start (its interpreter exits at once)."""
    import sys
    import threading
    from collections import namedtuple

    import pandas as pd
    from kafka import TopicPartition

    from driftctl.settings import Settings
    from serving.codec import encode_label, encode_telemetry
    from serving.scorer import Scorer
    from training.datasets import FeatureSchema, to_frame
    from training.recipes import make_classifier
    from training.registry import LoadedModel, ModelRef

    readings = list(iot_stream(3000, drift_at=10**9, seed=5))
    frame = to_frame(r.record["features"] for r in readings[:1000])
    model = make_classifier().fit(frame, pd.Series([r.label for r in readings[:1000]]))
    settings = Settings(home=tmp_path)
    scorer = Scorer(settings, "unused:9092", None, threading.Event())
    scorer.current = LoadedModel(ModelRef("m", 1, "run"), model, FeatureSchema.from_frame(frame))
    message = namedtuple("Message", "topic partition offset timestamp key value")
    topics = settings.kafka.topics

    class Acked:
        is_done = True

        def failed(self):
            return False

    class Producer:
        def __init__(self):
            self.sent = []

        def send(self, topic, key=None, value=None, timestamp_ms=None):
            self.sent.append((topic, value))
            return Acked()

        def flush(self):
            pass

    producer = Producer()
    monkeypatch.setattr(sys, "executable", "/bin/false")
    for k in range(1000, 3000, 250):
        part = readings[k:k + 250]
        scorer.process({
            TopicPartition(topics.telemetry, 0): [message(topics.telemetry, 0, i, 0, b"k", encode_telemetry(r.record))
                                                  for i, r in enumerate(part, k)],
            TopicPartition(topics.labels, 0): [message(topics.labels, 0, i, 0, b"k", encode_label(
                {"id": r.record["id"], "ts": r.record["ts"], "label": r.label})) for i, r in enumerate(part, k)]},
            producer)
    scorer.close_learner()
    assert scorer.learner_mode == "inline" and scorer.n_learned > 1000  # learning went on, in the scorer
    predictions = [v for t, v in producer.sent if t == topics.predictions]
    assert len(predictions) == 2000  # every record scored, the champion serving while the learner failed
    assert b'"online":{"prediction":null' in predictions[0] and b'"online":{"prediction":null' not in predictions[-1]


def test_the_process_reports_the_renewals_of_a_renewing_learner(tmp_path):
    """After an abrupt change (the labels flip) a renewing learner renews itself in the child; its
    answers say so, with the recent accuracy the scorer's serving rule restarts it from."""
    process = LearnerProcess(make_online_learner(0, "renewing-hoeffding-tree"), 0, tmp_path / "start",
                             tmp_path / "ckpt")
    try:
        before = _pairs(3000)
        after = [(x, 1 - y) for x, y in _pairs(3000, 3000)]
        for k in range(0, 6000, 300):
            batch = (before + after)[k:k + 300]
            process.ask([x for x, _ in batch])
            process.answer()
            process.learn(batch)
        process.request_checkpoint({})
        process.ask([before[0][0]])
        process.answer()
        assert process.renewals >= 1 and process.accuracy is not None and process.accuracy > 0.5
    finally:
        process.close(None)


def test_a_scorer_removes_the_start_files_its_killed_predecessors_left(tmp_path):
    """kill -9 leaves a scorer's learner start file behind (close never ran): the next scorer of
    the same instance name removes those of dead processes, before it starts its own learner."""
    import subprocess
    import sys
    import threading

    from driftctl.settings import ServingSettings, Settings
    from serving.scorer import Scorer

    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    directory = tmp_path / "learner"
    directory.mkdir()
    stale = directory / f"edge-1-{killed.pid}-7f3a.start"  # an instance name with a dash in it
    live = directory / f"edge-1-{os.getppid()}-1b2c.start"  # a running scorer's
    other = directory / f"edge-2-{killed.pid}-9d9d.start"  # another instance's: not this scorer's to judge
    for path in (stale, live, other):
        checkpoint.save(path, checkpoint.Checkpoint(make_online_learner(0), 0))
    settings = Settings(home=tmp_path, serving=ServingSettings(instance="edge-1"))
    scorer = Scorer(settings, "unused:9092", None, threading.Event())
    try:
        scorer.start_learner()
        assert not stale.exists()
        assert live.exists() and other.exists()
        own = scorer._learner.start_file
        assert own.exists() and own.name.startswith(f"edge-1-{os.getpid()}-")
    finally:
        scorer.close_learner()
        scorer.audit.close()
    assert not own.exists()
