"""The scorer on the real broker: hot-swap, dead letters, audit, crash safety, scale-out.
Each test has a fresh broker and a copy of the session's home with champion v1
(tests/conftest.py `champion_v1`, trained once on the stream's first 2,000 records)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
from driftctl.settings import Settings
from serving.codec import encode
from serving.kafka_io import make_producer, read_topic
from serving.producer import publish
from serving.scorer import Scorer
from serving.synthetic import iot_stream
from tests.waiting import wait_for
from training.datasets import to_frame
from training.evaluate import Evaluation
from training.recipes import make_classifier
from training.registry import Registry

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def stack(champion_v1, tmp_path, monkeypatch):
    """A fresh broker; a copy of the session's home with champion v1 (tests/conftest.py)."""
    champion_v1.copy_to(tmp_path / "home")
    with EmbeddedBroker() as broker:
        monkeypatch.setenv("DRIFTCTL_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS", broker.bootstrap_servers)
        monkeypatch.setenv("DRIFTCTL_SERVING__CHECKPOINT_EVERY", "1")
        settings = Settings()
        from driftctl.runtime.stack import configure_environment

        configure_environment(settings)
        ensure_topics(broker.bootstrap_servers, settings.kafka)
        registry = Registry.from_settings(settings)
        assert registry.champion().version == 1
        yield settings, broker.bootstrap_servers, registry


def register(registry, start, n=1500, drift_at=10**9):
    readings = [r for r in iot_stream(start + n, drift_at=drift_at)][start:]
    frame = to_frame(r.record["features"] for r in readings)
    labels = pd.Series([r.label for r in readings])
    model = make_classifier().fit(frame, labels)
    evaluation = Evaluation(1.0, None, 0.0, 0, True, "test model")
    _, version = registry.record_candidate(model=model, frame=frame, labels=labels, evaluation=evaluation,
                                           params={}, tags={}, reference_rows=100, training_seconds=0.0,
                                           promote=True)
    registry.move_champion(version, "test model")
    return version


def announce(settings, bootstrap, registry, version):
    producer = make_producer(bootstrap, settings.kafka)
    ref = registry.champion()
    producer.send(settings.kafka.topics.model_updates, key=b"m",
                  value=encode({"name": ref.name, "version": version, "run_id": ref.run_id,
                                "promoted_at": time.time()}))
    producer.flush()
    producer.close()


def predictions(settings, bootstrap, expected, timeout=120):
    def enough(got):
        return len({json.loads(m.value)["id"] for m in got}) >= expected
    return [json.loads(m.value) for m in read_topic(bootstrap, settings.kafka, settings.kafka.topics.predictions,
                                                    until=enough, timeout=timeout)]


def bad_messages():
    good = next(iter(iot_stream(1, drift_at=10)))
    features = good.record["features"]

    def record(**changes):
        return encode({"id": "bad-" + str(len(changes)), "ts": 1.0, "features": {**features, **changes}})
    return {
        "not JSON": b"{definitely not json",
        "not a JSON object": b"[1, 2, 3]",
        "no id": encode({"ts": 1.0, "features": features}),
        "missing feature 'pressure'": encode({"id": "m", "ts": 1.0,
                                              "features": {k: v for k, v in features.items() if k != "pressure"}}),
        "unexpected features: voltage": record(voltage=3.3),
        "should be a number": record(vibration="high"),
        "not finite": b'{"id": "n", "ts": 1.0, "features": {"vibration": NaN}}',
        "oversized": encode({"id": "big", "ts": 1.0, "features": {**features, "pad": "x" * 70_000}}),
        "unseen category": record(firmware="9.9.9"),
        "has type list": record(humidity=[1, 2]),
    }


def test_hot_swap_dead_letters_and_audit(stack, cli):
    settings, bootstrap, registry = stack
    stop = threading.Event()
    scorer = Scorer(settings, bootstrap, registry, stop)
    thread = threading.Thread(target=scorer.run, daemon=True)
    thread.start()
    producer = make_producer(bootstrap, settings.kafka)
    bad = bad_messages()
    for raw in bad.values():
        producer.send(settings.kafka.topics.telemetry, key=b"device-x", value=raw)
    publish(producer, settings.kafka.topics, iot_stream(2000, drift_at=10**9), rate=None, label_delay=100)
    deadline = time.monotonic() + 60
    while scorer.scored < 2000 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert scorer.scored == 2000
    v2 = register(registry, 5000)
    announce(settings, bootstrap, registry, v2)
    deadline = time.monotonic() + 60  # its own: registering v2 took part of the first one
    while (scorer.current.ref.version != v2) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert scorer.current.ref.version == v2
    publish(producer, settings.kafka.topics,
            (r for r in iot_stream(4000, drift_at=10**9) if r.seq >= 2000), rate=None, label_delay=100)
    producer.close()
    got = predictions(settings, bootstrap, 4000)
    stop.set()
    thread.join(30)

    ids = [p["id"] for p in got]
    assert len(set(ids)) == 4000 == len(ids)
    by_seq = sorted(got, key=lambda p: p["id"])
    assert {p["model"]["version"] for p in by_seq[:2000]} == {1}
    assert {p["model"]["version"] for p in by_seq[2000:]} == {v2}
    assert by_seq[-1]["online"]["n_learned"] > 1000  # the learner learned from the late labels
    assert [version for version, _ in scorer.swaps] == [1, v2]

    letters = [json.loads(m.value) for m in read_topic(
        bootstrap, settings.kafka, settings.kafka.topics.dead_letter, until=lambda g: len(g) >= len(bad), timeout=30)]
    assert len(letters) == len(bad)
    for reason, letter in zip(bad, sorted(letters, key=lambda letter: letter["offset"]), strict=True):
        assert reason in letter["error"], (reason, letter["error"])
        assert letter["topic"] == settings.kafka.topics.telemetry and letter["partition"] >= 0

    for p in (by_seq[10], by_seq[3000]):
        done = cli("audit", p["id"], "--json")
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["model"] == p["model"]
        assert answer["online"]["n_learned"] == p["online"]["n_learned"]
        assert answer["source"]["partition"] == p["source"]["partition"]
        assert answer["source"]["offset"] == p["source"]["offset"]
        assert answer["served_by"] == p["served_by"]  # which prediction was served is in the lineage

    # serve=best: each prediction names its source, and the served prediction is that source's.
    assert {p["served_by"] for p in got} <= {"champion", "online", "blend"}
    for p in got:
        assert 0 < p["confidence"] <= 1
        if p["served_by"] == "champion":
            assert p["prediction"] == p["champion"]["prediction"]
        elif p["served_by"] == "online":
            assert p["prediction"] == p["online"]["prediction"]


def test_a_model_that_fails_to_load_leaves_the_champion_serving(stack):
    """And the failure is in the ledger, for a scorer built as the demo's scorer process builds it
    (serving.scorer.run_scorer_process: no ledger handed to it, the home's is opened)."""
    from driftctl.stores.ledger import Ledger

    settings, bootstrap, registry = stack
    stop = threading.Event()
    scorer = Scorer(settings, bootstrap, registry, stop)
    assert scorer.ledger is None
    thread = threading.Thread(target=scorer.run, daemon=True)
    thread.start()
    # Version 2's model file is altered after registration: its hash no longer matches.
    v2 = register(registry, 5000)
    altered = sorted(settings.home.rglob("model.skops"), key=lambda p: p.stat().st_mtime)[-1]
    altered.write_bytes(altered.read_bytes() + b"\0")
    announce(settings, bootstrap, registry, v2)
    producer = make_producer(bootstrap, settings.kafka)
    publish(producer, settings.kafka.topics, iot_stream(500, drift_at=10**9), rate=None, label_delay=10)
    producer.close()
    got = predictions(settings, bootstrap, 500)
    stop.set()
    thread.join(30)
    assert {p["model"]["version"] for p in got} == {1}
    assert [v for v, _ in scorer.load_failures] == [v2]
    assert "sha256" in scorer.load_failures[0][1]
    ledger = Ledger(settings.ledger_url)  # the run ended: a failure being recorded was waited for
    failures = [e for e in ledger.entries("failure") if e.model_version == v2]
    assert len(failures) == 1 and "failed to load" in failures[0].reason and "sha256" in failures[0].reason
    assert scorer.instance in failures[0].reason


def serve(instance, settings):
    env = {**os.environ, "DRIFTCTL_SERVING__INSTANCE": instance, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "driftctl", "serve"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def scored_by(settings):
    import sqlite3

    db = sqlite3.connect(settings.home / "audit.db")
    try:
        return dict(db.execute("SELECT scorer, COUNT(*) FROM segments GROUP BY scorer").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()


def test_kill_9_and_restart_leaves_nothing_unscored_and_keeps_the_learner(stack):
    settings, bootstrap, _ = stack
    first = serve("crashy", settings)
    producer = make_producer(bootstrap, settings.kafka)
    # At least 20,000 records at 1,000/s, and on until 2,000 after the kill: however long the
    # first scorer takes to start on a busy machine, it is killed while the stream still runs.
    killed, stop, stream = threading.Event(), threading.Event(), {"end": 20_000, "sent": 0}

    def keep_going(sent: int) -> bool:
        if killed.is_set() and "killed_at" not in stream:
            stream["killed_at"], stream["end"] = sent, max(stream["end"], sent + 2_000)
        return sent < stream["end"] or not killed.is_set()

    def send() -> None:
        stream["sent"] = publish(producer, settings.kafka.topics, iot_stream(None, drift_at=10**9), rate=1_000,
                                 label_delay=50, stop=stop, keep_going=keep_going)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    checkpoint = settings.home / "checkpoints" / "crashy.pkl"
    from serving.checkpoint import load

    try:
        wait_for(lambda: checkpoint.exists() and load(checkpoint).n_learned > 0, 90, "a checkpoint of a learner")
    except AssertionError:
        stop.set()
        raise
    first.send_signal(signal.SIGKILL)
    killed.set()
    first.wait(10)
    second = serve("crashy", settings)
    sender.join(120)
    producer.close()
    total = stream["sent"]
    assert total >= 20_000 and total >= stream["killed_at"] + 2_000, stream
    got = predictions(settings, bootstrap, total, timeout=120)
    second.send_signal(signal.SIGTERM)
    second.wait(30)
    ids = [p["id"] for p in got]
    assert len(set(ids)) == total
    assert len(ids) - len(set(ids)) <= settings.serving.batch_size  # duplicates: at most one batch
    before = [p for p in got if p["scorer"] == f"crashy-{first.pid}"]
    after = [p for p in got if p["scorer"] == f"crashy-{second.pid}"]
    assert before and after and len(before) + len(after) == len(got)
    checkpointed = load(checkpoint).n_learned
    assert checkpointed > 0
    # The restarted learner resumed from its checkpoint: n_learned did not fall back to zero.
    assert min(p["online"]["n_learned"] for p in after) > 0


def test_two_scorers_split_the_partitions_and_survive_losing_one(stack):
    settings, bootstrap, _ = stack
    a, b = serve("a", settings), serve("b", settings)
    producer = make_producer(bootstrap, settings.kafka)
    publish(producer, settings.kafka.topics, iot_stream(3000, drift_at=10**9), rate=1_000, label_delay=50)
    wait_for(lambda: len(scored_by(settings)) >= 2, 90, "both scorers to score")
    before = scored_by(settings)
    assert len(before) == 2, before  # the partitions were split between the two
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    publish(producer, settings.kafka.topics,
            (r for r in iot_stream(6000, drift_at=10**9) if r.seq >= 3000), rate=2_000, label_delay=50)
    producer.close()
    got = predictions(settings, bootstrap, 6000, timeout=150)
    b.send_signal(signal.SIGTERM)
    b.wait(30)
    assert len({p["id"] for p in got}) == 6000


class _Node:
    pass


def test_a_swap_sets_aside_the_new_model_without_walking_the_frozen_heap():
    """After a swap only what came since the last freeze is collected (a few ms, not a full walk):
    a cycle already frozen waits for a full collection; a young one goes at once."""
    import gc
    import weakref

    from serving.learner import YOUNG_COLLECTION_THRESHOLD
    from serving.scorer import freeze_heap

    threshold = gc.get_threshold()
    try:
        old = _Node()
        old.self = old  # a cycle in the model being replaced
        old_ref = weakref.ref(old)
        freeze_heap()
        frozen = gc.get_freeze_count()
        del old
        young = _Node()
        young.self = young  # the load's garbage, made since the freeze
        young_ref = weakref.ref(young)
        del young
        freeze_heap(full=False)
        assert young_ref() is None and old_ref() is not None
        # Nothing was unfrozen (that would empty the permanent generation); the test process's other
        # threads (pytest-xdist's channel) may free a few frozen objects meanwhile.
        assert gc.get_freeze_count() >= 0.99 * frozen
        assert gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD
        freeze_heap(full=True)
        assert old_ref() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_a_stacked_blend_learns_from_the_labels_the_scorer_joins(stack):
    """`serve_blend = stacked`: the scorer asks its serving rule for the blend of each record and
    teaches it the record's label once joined (the rule the backtest replays)."""
    settings, bootstrap, registry = stack
    settings = settings.model_copy(update={"serving": settings.serving.model_copy(update={"serve_blend": "stacked"})})
    stop = threading.Event()
    scorer = Scorer(settings, bootstrap, registry, stop)
    thread = threading.Thread(target=scorer.run, daemon=True)
    thread.start()
    producer = make_producer(bootstrap, settings.kafka)
    publish(producer, settings.kafka.topics, iot_stream(1500, drift_at=10**9), rate=None, label_delay=100)
    producer.close()
    got = predictions(settings, bootstrap, 1500)
    wait_for(lambda: scorer.n_joined >= 1000, 60, lambda: f"{scorer.n_joined} labels joined", alive=[thread])
    stop.set()
    thread.join(30)
    assert scorer.rule is not None and scorer.rule.stacked is not None
    assert scorer.rule.stacked.weights != [1.0, 1.0]  # it learned from the joined labels
    assert {p["served_by"] for p in got} <= {"champion", "online", "blend"}
    assert all(0 < p["confidence"] <= 1 for p in got)


@pytest.mark.parametrize("serve_blend", ["stacked", "mean"])
def test_the_join_counts_the_learned_blends_inputs_in_its_bytes(tmp_path, monkeypatch, serve_blend):
    """No broker: `Scorer.process` on recorded telemetry whose labels have not come (the learner inline:
    its process cannot start). What each record waits with counts against `join_max_bytes`: its message,
    and with a learned blend its inputs too."""
    from collections import namedtuple

    from kafka import TopicPartition
    from threadpoolctl import threadpool_limits

    from serving.codec import encode_telemetry
    from training.datasets import FeatureSchema
    from training.registry import LoadedModel, ModelRef

    readings = list(iot_stream(1500, drift_at=10**9, seed=3))
    frame = to_frame(r.record["features"] for r in readings[:1000])
    with threadpool_limits(1):  # OpenMP threads spinning on a busy machine make a small fit take minutes
        model = make_classifier().fit(frame, pd.Series([r.label for r in readings[:1000]]))
    settings = Settings(home=tmp_path)
    settings = settings.model_copy(update={"serving": settings.serving.model_copy(update={"serve_blend": serve_blend})})
    scorer = Scorer(settings, "unused:9092", None, threading.Event())
    scorer.current = LoadedModel(ModelRef("m", 1, "run"), model, FeatureSchema.from_frame(frame))
    message = namedtuple("Message", "topic partition offset timestamp key value")
    topic = settings.kafka.topics.telemetry
    batch = [message(topic, 0, i, 1_700_000_000_000 + i, b"k", encode_telemetry(r.record))
             for i, r in enumerate(readings[1000:], 1000)]

    stamps = []

    class Producer:
        def send(self, topic, key=None, value=None, timestamp_ms=None):
            stamps.append(timestamp_ms)
            return type("Acked", (), {"is_done": True, "failed": lambda self: False})()

        def flush(self):
            pass

    monkeypatch.setattr(sys, "executable", "/bin/false")
    scorer.process({TopicPartition(topic, 0): batch}, Producer())
    scorer.close_learner()
    # Each prediction stamped with its telemetry's Kafka time (the monitor reads them in step).
    assert stamps == [m.timestamp for m in batch]
    received = sum(len(m.value) for m in batch)
    assert len(scorer.joiner) == len(batch)
    if serve_blend == "stacked":
        assert scorer.joiner.bytes > received + 100 * len(batch)  # three lists a record, not free
    else:
        assert scorer.joiner.bytes == received  # the 50/50 blend keeps nothing more
