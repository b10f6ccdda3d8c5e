"""Heartbeats and the health rules, on a real SQLite ledger database; no broker."""

import socket

import pytest

from driftctl.app.health import CRITICAL, HEALTHY, UNKNOWN, WARNING, assess_retrains, assess_stage, broker_reachable
from driftctl.settings import HealthSettings, Settings
from driftctl.stores.heartbeats import Beat, HealthStore, Heartbeat, consumer_lag
from driftctl.stores.ledger import Ledger

RULES = HealthSettings()


class Clock:
    def __init__(self, now=1_000.0):
        self.now = now

    def __call__(self):
        return self.now


def beat(at, *, records=0, lag=0, dead=0, state="running", instance="a"):
    return Beat(at=at, stage="scorer", instance=instance, state=state, records=records, rps=10.0, lag=lag,
                lag_detail={"t[0]": lag}, group_id="g", dead_letters=dead, model_version=1,
                bootstrap="127.0.0.1:1", extra={})


def test_heartbeat_writes_at_most_once_per_interval_and_measures_throughput(tmp_path):
    store = HealthStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    clock = Clock()
    heart = Heartbeat(store, "scorer", interval=2.0, clock=clock, instance="x")
    assert heart.beat(records=0)
    clock.now += 1.0
    assert not heart.beat(records=500)  # within the interval: nothing written
    clock.now += 1.5
    assert heart.beat(records=1_000)
    heart.stopped(records=1_000)
    rows = HealthStore(store.url).since(0)
    assert [r.state for r in rows] == ["running", "running", "stopped"]
    assert rows[1].rps == pytest.approx(1_000 / 2.5)
    assert HealthStore(store.url).latest()[0].state == "stopped"


def test_stages_starting_together_on_a_fresh_database_do_not_race_on_the_schema(tmp_path):
    import threading

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    errors, start = [], threading.Barrier(6)

    def open_store(kind):
        start.wait()
        try:
            (HealthStore if kind else Ledger)(url)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store, args=(i % 2,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_heartbeat_that_cannot_be_written_does_not_raise(tmp_path):
    store = HealthStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    store.engine.dispose()
    (tmp_path / "ledger.db").unlink()
    (tmp_path / "ledger.db").mkdir()  # the database is now a directory: every write fails
    heart = Heartbeat(store, "scorer", interval=0.0, instance="x")
    assert heart.beat(records=1) is False


def test_rules():
    now = 2_000.0
    fresh = [beat(now - 4, records=100, lag=10), beat(now - 2, records=200, lag=10), beat(now, records=300, lag=10)]
    assert assess_stage(fresh[-1], fresh, now=now, rules=RULES, broker_reachable=True).health == HEALTHY

    stale = assess_stage(fresh[-1], fresh, now=now + 60, rules=RULES, broker_reachable=True)
    assert stale.health == CRITICAL and "no heartbeat for 60 s" in stale.reason

    down = assess_stage(fresh[-1], fresh, now=now + 60, rules=RULES, broker_reachable=False)
    assert down.health == UNKNOWN and "unreachable" in down.reason

    stopped = beat(now, state="stopped")
    assert assess_stage(stopped, [stopped], now=now, rules=RULES, broker_reachable=True).health == UNKNOWN

    growing = [beat(now - 6, lag=900), beat(now - 4, lag=1_500), beat(now - 2, lag=1_500), beat(now, lag=4_000)]
    result = assess_stage(growing[-1], growing, now=now, rules=RULES, broker_reachable=True)
    assert result.health == WARNING and "lag growing: 900 -> 4,000" in result.reason

    shrinking = [beat(now - 4, lag=4_000), beat(now - 2, lag=3_000), beat(now, lag=2_000)]
    assert assess_stage(shrinking[-1], shrinking, now=now, rules=RULES, broker_reachable=True).health == HEALTHY

    dead = [beat(now - 2, records=1_000, dead=0), beat(now, records=1_900, dead=100)]
    result = assess_stage(dead[-1], dead, now=now, rules=RULES, broker_reachable=True)
    assert result.health == WARNING and "10.0%" in result.reason


def test_a_failed_retrain_warns_until_a_later_one_succeeds(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.append("promotion", model_name="m", model_version=1, reason="bootstrap")
    ledger.append("failure", reason="retrain failed: no rows")
    entries = ledger.entries()
    now = entries[0].at + 5
    result = assess_retrains(entries, now=now, rules=RULES)
    assert result.health == WARNING and "no rows" in result.reason
    ledger.append("promotion", model_name="m", model_version=2, reason="drift")
    result = assess_retrains(ledger.entries(), now=now, rules=RULES)
    assert result.health == HEALTHY and result.model_version == 2
    assert assess_retrains([], now=now, rules=RULES) is None


def test_broker_reachable():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert broker_reachable(f"127.0.0.1:{port}") is True
    assert broker_reachable(f"127.0.0.1:{port}") is False
    assert broker_reachable(None) is None


def test_consumer_lag_is_highwater_minus_position():
    from kafka import TopicPartition

    class Consumer:  # the two numbers kafka-python's consumer reports, nothing else
        def assignment(self):
            return {TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("t", 2)}

        def highwater(self, tp):
            return {0: 100, 1: None, 2: 5}[tp.partition]

        def position(self, tp, timeout_ms=None):
            return {0: 40, 1: 0, 2: 9}[tp.partition]

    assert consumer_lag(Consumer()) == {"t[0]": 60, "t[2]": 0}


def test_status_with_stale_heartbeats_and_no_broker_is_unknown_not_an_error(home):
    from driftctl.app.status import collect_status

    settings = Settings()
    settings.home.mkdir(parents=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    store = HealthStore(settings.ledger_url)
    heart = Heartbeat(store, "scorer", bootstrap=f"127.0.0.1:{port}", interval=0.0, instance="s1")
    heart.beat(records=10)
    report = collect_status(settings)
    assert report["health"] == UNKNOWN
    assert [s["health"] for s in report["stages"]] == [UNKNOWN]
    assert report["broker"] == {"bootstrap": f"127.0.0.1:{port}", "reachable": False}
    assert any(e.startswith("broker:") for e in report["errors"])
    assert report["champion"] is None


def test_status_cli_with_mlflow_and_broker_down_says_unknown(home):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "DRIFTCTL_MLFLOW__TRACKING_URI": f"http://127.0.0.1:{port}",
           "DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}
    # Without a bound on MLflow's retries this waits out minutes of back-off: the guard catches a hang.
    done = subprocess.run([sys.executable, "-m", "driftctl", "status", "--json"], capture_output=True, text=True,
                          env=env, timeout=90)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["health"] == UNKNOWN and report["champion"] is None
    assert report["broker"]["reachable"] is False
    assert [e.split(":")[0] for e in report["errors"]] == ["mlflow", "broker"]


def test_a_stage_that_rejects_every_record_is_critical_and_says_why():
    """A stream whose every record is invalid (a JSON boolean once was) must not look like a quiet
    one: status (and the console, which shows the same assessment) says so, with the last reason."""
    now = 2_000.0
    why = "feature 'x' has type list"

    def rejecting(at, dead):
        return Beat(at=at, stage="scorer", instance="a", state="running", records=0, rps=0.0, lag=0,
                    lag_detail={}, group_id="g", dead_letters=dead, model_version=1, bootstrap="127.0.0.1:1",
                    extra={"last_rejection": why} if dead else {})

    beats = [rejecting(now - 4, 0), rejecting(now - 2, 400), rejecting(now, 900)]
    result = assess_stage(beats[-1], beats, now=now, rules=RULES, broker_reachable=True)
    assert result.health == CRITICAL
    assert result.reason == f"every record invalid: 900 rejected, none accepted; last reason: {why}"
    some_good = [*beats[:-1], Beat(**{**beats[-1].__dict__, "records": 5})]
    assert "every record invalid" not in (assess_stage(some_good[-1], some_good, now=now, rules=RULES,
                                                       broker_reachable=True).reason or "")
