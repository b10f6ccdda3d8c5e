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
    inline = make_online_learner(0)
    process = LearnerProcess(make_online_learner(0), 0, tmp_path / "start", tmp_path / "ckpt")
    try:
        for k in range(0, 1200, 300):
            batch = _pairs(300, k)
            rows = [features for features, _ in batch]
            process.ask(rows)
            n_learned, answers = process.answer()
            assert n_learned == k  # the state that predicted: everything handed over before
            assert answers == [inline.predict_proba_one(x) for x in rows]
            process.learn(batch)
            for x, y in batch:
                inline.learn_one(x, y)
        assert any(answers)  # a grown tree, not empty answers compared with empty answers
    finally:
        process.close({"telemetry:0": 1200})
    saved = checkpoint.load(tmp_path / "ckpt")
    assert saved is not None and saved.n_learned == 1200 and saved.offsets == {"telemetry:0": 1200}
    assert not (tmp_path / "start").exists()


def test_a_dead_learner_is_restarted_from_its_checkpoint(tmp_path):
    process = LearnerProcess(make_online_learner(0), 0, tmp_path / "start", tmp_path / "ckpt")
    try:
        process.learn(_pairs(500))
        process.request_checkpoint({})
        process.learn(_pairs(200, 500))  # learned, not checkpointed: lost with the child
        process.ask([])
        assert process.answer()[0] == 700
        os.kill(process.pid, signal.SIGKILL)
        os.waitpid(process.pid, 0)
        with pytest.raises(LearnerFailed):
            process.ask([{"x": 1.0}])
            process.answer()
        process.ask([])
        assert process.answer()[0] == 500
    finally:
        process.close(None)
