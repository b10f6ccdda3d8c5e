"""Faults while the stages run: the ledger's database locked, the disk of the home full, MLflow's
tracking server gone or hung. A scorer and a monitor run on the real broker (Tansu, started here),
the real MLflow store and the ledger, from a copy of the home with champion v1 (tests/conftest.py
`champion_v1`). For each fault: the scorer scores every record with the current champion, neither
stage dies, both say what failed (counted, in the heartbeat, in the log), a retrain run by Prefect
under the fault fails cleanly and leaves the champion serving, and once the fault is gone the
stages go on with no restart. Goal: 0 records lost, 0 restarts."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
from driftctl.runtime.stack import configure_environment
from driftctl.settings import Settings
from driftctl.stores.heartbeats import HealthStore
from driftctl.stores.ledger import Ledger
from serving.kafka_io import read_topic
from serving.monitor import Monitor
from serving.promotion import lease_name
from serving.scorer import Scorer
from tests.streams import produce, readings, trigger, window
from tests.waiting import wait_for
from training.registry import Registry

pytestmark = pytest.mark.integration

NO_DRIFT = 10**9


def no_retrain(window, trigger):  # these streams do not drift: a retrain decision is a failure of the test
    raise AssertionError(f"unexpected retrain decision {trigger.decision_id}: {trigger.reason}")


class Stages:
    """A scorer and a monitor in threads of this process, as `driftctl serve` and `driftctl monitor` run them."""

    def __init__(self, settings: Settings, bootstrap: str):
        self.settings, self.bootstrap = settings, bootstrap
        self.stop = threading.Event()
        self.scorer = Scorer(settings, bootstrap, Registry.from_settings(settings), self.stop,
                             ledger=Ledger.from_settings(settings))
        self.monitor = Monitor(settings, bootstrap, Registry.from_settings(settings), Ledger.from_settings(settings),
                               no_retrain, self.stop)
        self.threads = [threading.Thread(target=self.scorer.run, name="scorer", daemon=True),
                        threading.Thread(target=self.monitor.run, name="monitor", daemon=True)]
        self.seq = 4_000  # past what champion v1 learned from

    def __enter__(self) -> Stages:
        for thread in self.threads:
            thread.start()
        self.wait(lambda: self.serving() == (1, 1), 90)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def serving(self) -> tuple[int | None, int | None]:
        scorer, monitor = self.scorer.current, self.monitor.champion
        return (scorer.ref.version if scorer else None, monitor.version if monitor else None)

    def state(self) -> str:
        s, m = self.scorer, self.monitor
        return (f"scorer: serves {self.serving()[0]}, scored {s.scored}, faults {s.faults} ({s.last_fault}), audit "
                f"gaps {s.audit_gaps}; monitor: champion {self.serving()[1]}, labelled {m.labelled}, invalid "
                f"{m.invalid} ({m.last_invalid}), faults {m.faults} ({m.last_fault})")

    def wait(self, condition, timeout: float) -> None:
        wait_for(condition, timeout, self.state, alive=self.threads)

    def stream(self, n: int) -> tuple[list, list[tuple]]:
        batch = readings(self.seq, self.seq + n, drift_at=NO_DRIFT, seed=3)
        rows = produce(self.bootstrap, self.settings, batch)
        self.seq += n
        return batch, rows

    def predictions(self, batch) -> dict[str, set[int]]:
        """Every record of `batch` has a prediction (else this times out): the versions that scored each."""
        wanted = {r.record["id"] for r in batch}
        got: dict[str, set[int]] = {}
        for message in read_topic(self.bootstrap, self.settings.kafka, self.settings.kafka.topics.predictions,
                                  until=lambda ms: wanted <= {json.loads(m.value)["id"] for m in ms}, timeout=60):
            value = json.loads(message.value)
            got.setdefault(value["id"], set()).add(value["model"]["version"])
        return {i: got[i] for i in wanted}

    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self.threads)


@pytest.fixture
def broker():
    with EmbeddedBroker() as running:
        yield running.bootstrap_servers


def start(champion_v1, home: Path, bootstrap: str, monkeypatch, *, copy: bool = True, **env: str) -> Settings:
    if copy:
        champion_v1.copy_to(home)
    monkeypatch.setenv("DRIFTCTL_HOME", str(home))
    monkeypatch.setenv("DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("DRIFTCTL_KAFKA__TOPICS__MODEL_UPDATES", f"driftctl.model-updates.{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("DRIFTCTL_HEALTH__HEARTBEAT_INTERVAL", "0.5")
    monkeypatch.setenv("DRIFTCTL_RETRAIN__CHECKPOINT_EVERY", "250")  # the monitor writes windows to the ledger often
    monkeypatch.setenv("DRIFTCTL_SERVING__CHECKPOINT_EVERY", "1")  # and the scorer its learner's checkpoint
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    configure_environment(settings)
    ensure_topics(bootstrap, settings.kafka)
    champion_v1.announce(bootstrap, settings)
    return settings


def retrain_under_fault(settings: Settings, bootstrap: str, rows: list[tuple]) -> BaseException:
    """The real retrain flow, run by Prefect, under the fault: it must fail, not promote."""
    from flows.retrain import retrain

    try:
        outcome = retrain(window=window(bootstrap, settings, rows), trigger=trigger(f"fault-{uuid.uuid4().hex[:6]}"))
    except Exception as exc:
        return exc
    raise AssertionError(f"the retrain did not fail under the fault: {outcome}")


def beats_since(settings: Settings, at: float, stage: str) -> list:
    store = HealthStore(settings.ledger_url)
    try:
        return store.since(at, stage)
    finally:
        store.close()


# -- the ledger's database locked -----------------------------------------------------------------

def test_the_ledgers_database_locked(champion_v1, tmp_path, broker, monkeypatch):
    """Another process holds the ledger's SQLite database in an exclusive transaction for longer than
    a writer waits (`ledger.busy_timeout`: 1 s here, 30 s by default): heartbeats, windows and the
    flow's lease cannot be written meanwhile. The stages go on; the monitor's windows wait, in order,
    and every one is written once the database is free."""
    settings = start(champion_v1, tmp_path / "home", broker, monkeypatch, DRIFTCTL_LEDGER__BUSY_TIMEOUT="1")
    with Stages(settings, broker) as stages:
        ledger = Ledger(settings.ledger_url)
        before = {e.id for e in ledger.entries("window")}
        lock = sqlite3.connect(settings.home / "ledger.db", timeout=30, isolation_level=None)  # waits a beat out
        lock.execute("BEGIN EXCLUSIVE")
        locked_at = time.monotonic()
        failed: list[BaseException] = []
        try:
            batch, rows = stages.stream(1_000)
            flow = threading.Thread(target=lambda: failed.append(retrain_under_fault(settings, broker, rows)),
                                    name="retrain", daemon=True)
            flow.start()
            flow.join(timeout=90)  # it fails at its lease, under the lock
            # Every record scored and labelled under the lock; the monitor's 4 windows (one per 250) wait.
            stages.wait(lambda: stages.scorer.scored >= 1_000 and stages.monitor.labelled >= 1_000
                        and stages.monitor.records.waiting >= 4, 60)
            waited = stages.monitor.records.waiting
            held = time.monotonic() - locked_at
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        released = time.time()
        assert failed and "locked" in str(failed[0]), failed
        more, _ = stages.stream(250)
        stages.wait(lambda: stages.monitor.labelled >= 1_250 and stages.scorer.scored >= 1_250
                    and not stages.monitor.records.waiting, 30)
        stages.wait(lambda: beats_since(settings, released, "scorer") and beats_since(settings, released, "monitor"),
                    30)
        predictions = stages.predictions(batch + more)
        assert stages.alive()
    print(f"\nledger locked {held:.0f} s (busy timeout 1 s): {waited} windows waited; {stages.state()}")
    assert set().union(*predictions.values()) == {1}  # every record scored (0 lost), by the champion
    assert stages.monitor.invalid == 0  # the database's fault is not blamed on a record
    assert "window not recorded yet" in stages.monitor.last_fault and "locked" in stages.monitor.last_fault
    assert stages.scorer.faults == 0  # nothing of the scorer's waits on the ledger
    # Nothing lost, in order: a window per 250 labelled records, those made under the lock dated then.
    windows = sorted((e for e in ledger.entries("window") if e.id not in before), key=lambda e: e.id)
    assert [e.payload["window"]["positions"][1] for e in windows] == [250, 500, 750, 1_000, 1_250]
    assert [e.at for e in windows] == sorted(e.at for e in windows)
    assert all(e.at < released for e in windows[:waited])
    assert stages.monitor.records.dropped == 0
    assert Registry.from_settings(settings).champion().version == 1
    assert not ledger.entries("promotion")[1:]  # only v1's, from the template
    beats = [b for b in beats_since(settings, released, "monitor") if b.state == "running"]
    assert any(b.extra.get("faults", 0) >= 1 and "locked" in b.extra["last_fault"] for b in beats)  # status says so


# -- the ledger on PostgreSQL, refused then hung ------------------------------------------------------

@pytest.fixture
def pg_database():
    """A fresh database on the local PostgreSQL (or a throwaway server: tests/postgres.py), dropped after."""
    import psycopg

    from tests.postgres import postgres_server

    with postgres_server() as (server, _):
        name = f"driftctl_faults_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield server.rsplit("/", 1)[0] + f"/{name}"
        finally:
            with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_windows(ledger: Ledger, before: set[int]) -> list:
    return sorted((e for e in ledger.entries("window") if e.id not in before), key=lambda e: e.id)


def test_the_ledgers_postgresql_refused_then_hung(champion_v1, tmp_path, broker, monkeypatch, pg_database):
    """The ledger on PostgreSQL, reached through a forwarder that goes away (connections refused),
    then accepts connections and never answers: the stages score and label on, a retrain fails
    cleanly under each, and every window the monitor made meanwhile is written, in order, once the
    database answers again; no restart."""
    from urllib.parse import urlsplit

    from tests.faultproxy import FaultProxy

    server = urlsplit(pg_database)
    proxy = FaultProxy(free_port(), (server.hostname or "127.0.0.1", server.port or 5432)).start()
    url = pg_database.replace(server.netloc.rsplit("@", 1)[-1], f"127.0.0.1:{proxy.port}")
    # A write waits at most 2 s for a connection (libpq's least) and the monitor tries again every 5 s.
    settings = start(champion_v1, tmp_path / "home", broker, monkeypatch, DRIFTCTL_LEDGER__URL=url,
                     DRIFTCTL_LEDGER__BUSY_TIMEOUT="1")
    ledger = Ledger(pg_database)  # the test's own view, around the forwarder
    failures: list[BaseException] = []
    try:
        with Stages(settings, broker) as stages:
            assert stages.monitor.ledger.engine.dialect.name == "postgresql"
            before = {e.id for e in ledger.entries("window")}
            proxy.stop()  # refused
            refused, rows = stages.stream(500)
            failures.append(retrain_under_fault(settings, broker, rows))
            stages.wait(lambda: stages.scorer.scored >= 500 and stages.monitor.labelled >= 500
                        and stages.monitor.records.waiting >= 2, 60)
            proxy.start()  # back, but it never answers
            proxy.hang()
            hung, _ = stages.stream(500)
            failures.append(retrain_under_fault(settings, broker, rows))
            stages.wait(lambda: stages.scorer.scored >= 1_000 and stages.monitor.labelled >= 1_000
                        and stages.monitor.records.waiting >= 4, 60)
            waited = stages.monitor.records.waiting
            # A write waits for a connection that never completes at most the busy timeout (2 s here).
            stages.wait(lambda: "timeout" in (stages.monitor.last_fault or ""), 30)
            assert not new_windows(ledger, before)  # nothing got through meanwhile
            proxy.unhang()  # answering again
            back = time.time()
            after, _ = stages.stream(250)
            stages.wait(lambda: stages.monitor.labelled >= 1_250 and stages.scorer.scored >= 1_250
                        and not stages.monitor.records.waiting, 60)
            stages.wait(lambda: beats_since(settings, back, "monitor"), 30)
            predictions = stages.predictions(refused + hung + after)
            assert stages.alive()
    finally:
        proxy.stop()
    print(f"\nPostgreSQL refused then hung: {waited} windows waited; retrains failed with "
          f"{[type(f).__name__ for f in failures]}; {stages.state()}")
    assert set().union(*predictions.values()) == {1}  # every record scored (0 lost), by the champion
    assert stages.monitor.invalid == 0 and stages.scorer.faults == 0
    assert "refused" in str(failures[0]) and "timeout" in str(failures[1]), failures
    windows = new_windows(ledger, before)  # nothing lost, in order, dated when made
    assert [e.payload["window"]["positions"][1] for e in windows] == [250, 500, 750, 1_000, 1_250]
    assert [e.at for e in windows] == sorted(e.at for e in windows) and windows[waited - 1].at < back
    assert stages.monitor.records.dropped == 0 and stages.monitor.faults >= 2
    assert Registry.from_settings(settings).champion().version == 1
    assert not ledger.entries("promotion") and not ledger.entries("intent")  # neither flow moved anything
    assert not ledger.holder(lease_name(settings.mlflow.model_name))  # no lease left behind
    ledger.close()


def test_the_ledgers_postgresql_stops_answering_mid_connection(tmp_path, pg_database):
    """PostgreSQL accepts the monitor's connection and then never answers (a server stuck, a network
    black hole: nothing is closed, so no timeout of the driver fires). The monitor's ledger writes
    run on a worker: its dispatch goes on at full speed, the windows wait, the write that hangs is
    reported, and once the database answers every window is written, once, in order."""
    from types import SimpleNamespace
    from urllib.parse import urlsplit

    from driftctl.messages import Label
    from serving.codec import encode_label, encode_telemetry
    from tests.faultproxy import FaultProxy
    from tests.streams import readings

    server = urlsplit(pg_database)
    proxy = FaultProxy(free_port(), (server.hostname or "127.0.0.1", server.port or 5432)).start()
    url = pg_database.replace(server.netloc.rsplit("@", 1)[-1], f"127.0.0.1:{proxy.port}")
    settings = Settings(home=tmp_path)
    settings.retrain.checkpoint_every = 250
    settings.ledger.busy_timeout = 1.0  # a write that has not answered in 10 s is reported (at least 10 s)
    ledger = Ledger(url, busy_timeout=1.0)
    mon = Monitor(settings, "127.0.0.1:1", None, ledger, no_retrain, threading.Event())  # type: ignore[arg-type]
    records = iter(readings(0, 1_000, drift_at=NO_DRIFT, seed=3))
    topics = settings.kafka.topics
    slowest = [0.0]

    def feed(n: int) -> None:
        for r in itertools.islice(records, n):
            for topic, value in ((topics.telemetry, encode_telemetry(r.record)),
                                 (topics.labels, encode_label(Label(id=r.record["id"], ts=r.record["ts"],
                                                                    label=r.label)))):
                started = time.monotonic()
                mon._dispatch(topic, SimpleNamespace(partition=0, offset=r.seq, value=value))
                mon.records.flush()  # as the poll loop does each turn
                slowest[0] = max(slowest[0], time.monotonic() - started)

    mine = Ledger(pg_database)  # the test's own view, around the forwarder
    try:
        feed(500)
        wait_for(lambda: mon.records.flush() and mon.records.written == 2, 30, lambda: str(mon.records.__dict__))
        proxy.freeze()
        frozen_at = time.monotonic()
        fed = threading.Thread(target=feed, args=(500,), daemon=True)
        fed.start()
        fed.join(timeout=15)
        fed_in = time.monotonic() - frozen_at
        assert not fed.is_alive(), f"the monitor's dispatch waits for the database ({mon.records.waiting} waiting)"
        assert mon.records.waiting == 2 and mon.records.writing and mon.labelled == 1_000
        wait_for(lambda: not mon.records.flush() and "not answered" in (mon.last_fault or ""), 30,
                 lambda: f"last fault {mon.last_fault}")
        assert not [e for e in mine.entries("window") if e.payload["window"]["positions"][1] > 500]
        proxy.thaw()
        wait_for(lambda: mon.records.flush(), 60, lambda: f"{mon.records.waiting} waiting, {mon.last_fault}")
    finally:
        proxy.thaw()
        proxy.stop()
    windows = sorted(mine.entries("window"), key=lambda e: e.id)
    print(f"\nPostgreSQL silent mid-connection: 500 records dispatched in {fed_in:.2f} s, slowest message "
          f"{slowest[0] * 1000:.0f} ms; faults: {mon.faults} ({mon.last_fault})")
    assert [e.payload["window"]["positions"][1] for e in windows] == [250, 500, 750, 1_000]  # each once, in order
    # No timing asserted (the slowest dispatch is printed above): that dispatch did not wait is shown by
    # the feed ending while the write was still out against the frozen database.
    assert mon.records.dropped == 0 and mon.records.written == 4
    mine.close()
    ledger.close()


# -- disk full on the home -------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 256 MiB tmpfs for the home (root, or sudo without a password, as `make test` uses to install;
    a test that cannot run fails and says why, it never skips)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    done = subprocess.run([*sudo, "mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for a full disk (needs root or passwordless sudo): {done.stderr.strip()}")
    if sudo:
        subprocess.run([*sudo, "chown", str(os.getuid()), str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run([*sudo, "umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Every free block of `disk` taken by one file (ENOSPC from the kernel, nothing simulated)."""
    filler = disk / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as out:
        for size in (1 << 20, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    out.write(chunk[:size])
    return filler


def test_disk_full_on_the_home(champion_v1, small_disk, broker, monkeypatch):
    settings = start(champion_v1, small_disk / "home", broker, monkeypatch)
    with Stages(settings, broker) as stages:
        filler = fill(small_disk)
        batch, rows = stages.stream(1_000)
        stages.wait(lambda: stages.scorer.scored >= 1_000 and stages.monitor.labelled >= 1_000, 90)
        stages.wait(lambda: stages.scorer.audit_gaps > 0 and stages.monitor.faults > 0, 30)
        failure = retrain_under_fault(settings, broker, rows)
        assert stages.serving() == (1, 1)
        filler.unlink()  # space again
        # A retrain that gets its lease, trains, and finds the disk full while it writes its MLflow
        # artifacts (filled just before the model's): it fails, and nothing moves.
        import mlflow.sklearn

        log_model = mlflow.sklearn.log_model

        def filling(*args, **kwargs):
            fill(small_disk)
            return log_model(*args, **kwargs)

        monkeypatch.setattr(mlflow.sklearn, "log_model", filling)
        mid_write = retrain_under_fault(settings, broker, rows)
        monkeypatch.setattr(mlflow.sklearn, "log_model", log_model)
        assert filler.exists()  # the flow reached its artifacts
        assert stages.serving() == (1, 1)
        filler.unlink()
        gaps = stages.scorer.audit_gaps
        freed = time.time()
        more, _ = stages.stream(500)
        stages.wait(lambda: stages.scorer.scored >= 1_500 and stages.monitor.labelled >= 1_500, 90)
        stages.wait(lambda: beats_since(settings, freed, "scorer") and beats_since(settings, freed, "monitor"), 30)
        predictions = stages.predictions(batch + more)
        assert stages.alive()
    print(f"\ndisk full: the retrain failed with {type(failure).__name__}: {str(failure)[:200]}; filled while it "
          f"wrote its artifacts: {type(mid_write).__name__}: {str(mid_write)[:200]}; {stages.state()}")
    assert set().union(*predictions.values()) == {1}  # every record scored (0 lost), by the champion
    assert stages.monitor.invalid == 0
    assert stages.scorer.audit_gaps == gaps  # the audit is written again once there is space
    full = ("full", "No space")
    assert any(word in stages.scorer.last_fault for word in full), stages.scorer.last_fault
    assert any(word in stages.monitor.last_fault for word in full), stages.monitor.last_fault
    ledger = Ledger(settings.ledger_url)
    assert [e.model_version for e in ledger.entries("promotion")] == [1]
    assert not ledger.open_intents(settings.mlflow.model_name)  # alias and ledger agree: v1, nothing half done
    assert Registry.from_settings(settings).champion().version == 1
    windows = [e for e in ledger.entries("window") if e.at > freed]
    assert windows  # the monitor writes its windows again
    assert sum(1 for _ in (settings.home / "checkpoints").glob("*.tmp")) == 0  # no torn checkpoint left behind


# -- MLflow's tracking server gone, then hung -------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(home: Path):
    """`mlflow server` on the home's store, as `driftctl up` starts it."""
    port = free_port()
    with open(home / "mlflow-server.log", "wb") as log:
        yield from _serve(home, port, log)


def _serve(home: Path, port: int, log):
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                               f"sqlite:///{home / 'mlflow.db'}", "--default-artifact-root", str(home / "mlartifacts"),
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (home / "mlflow-server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the MLflow server did not start in 120 s"
            time.sleep(0.5)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def file_store(home: Path) -> Registry:
    """The home's MLflow store read directly (the server's own database), whatever the environment says."""
    from driftctl.settings import MlflowSettings

    return Registry.from_settings(Settings(home=home, mlflow=MlflowSettings(tracking_uri=f"sqlite:///{home}/mlflow.db")))


def register_v2(home: Path) -> int:
    """A second version, registered (not promoted) in the home's store, as a retrain would have."""
    import pandas as pd

    from serving.synthetic import iot_stream
    from training.datasets import to_frame
    from training.evaluate import Evaluation
    from training.recipes import make_classifier

    registry = file_store(home)
    batch = list(iot_stream(1_500, drift_at=NO_DRIFT, seed=5))
    frame, labels = to_frame(r.record["features"] for r in batch), pd.Series([r.label for r in batch])
    _, version = registry.record_candidate(
        model=make_classifier().fit(frame, labels), frame=frame, labels=labels, params={}, tags={},
        evaluation=Evaluation(0.9, 0.8, 0.01, 450, True, "a later retrain"), reference_rows=100,
        training_seconds=0.0, promote=True)
    return version


def test_mlflows_server_gone_then_hung(champion_v1, tmp_path, broker, monkeypatch):
    """The stages reach MLflow through its tracking server (a forwarder in between cuts it, then
    makes it accept and never answer). A promotion of v2 is announced while it is away: the stages
    keep scoring with v1, say why, and follow the alias to v2 once it answers again, unrestarted."""
    from driftctl.messages import ModelUpdate
    from serving.promotion import Change, Lease, change_champion
    from tests.faultproxy import FaultProxy

    home = tmp_path / "home"
    champion_v1.copy_to(home)
    v2 = register_v2(home)
    proxy_port = free_port()
    with mlflow_server(home) as port:
        proxy = FaultProxy(proxy_port, ("127.0.0.1", port)).start()
        # MLflow's client retries a refused or silent server for minutes by default; bounded here.
        settings = start(champion_v1, home, broker, monkeypatch, copy=False,
                         DRIFTCTL_MLFLOW__TRACKING_URI=f"http://127.0.0.1:{proxy_port}",
                         MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="3")
        try:
            with Stages(settings, broker) as stages:
                # The alias moves to v2 through the file store (the server's own database); then the server goes.
                direct = file_store(home)
                ledger = Ledger(settings.ledger_url)
                proxy.stop()
                gone_at = time.monotonic()
                update = ModelUpdate(name=direct.model_name, version=v2, run_id=direct.ref(v2).run_id,
                                     previous_version=1, reason="a later retrain")
                lease = Lease(ledger, direct.model_name, "test", 60)
                assert lease.acquire()
                change_champion(Change("promotion", update, direct.ref(1), "a later retrain", {}, None),
                                registry=direct, ledger=ledger, lease=lease, bootstrap=broker, kafka=settings.kafka)
                lease.release()
                gone, rows = stages.stream(500)
                stages.wait(lambda: stages.scorer.scored >= 500 and stages.monitor.labelled >= 500, 60)
                stages.wait(lambda: stages.scorer.faults and stages.monitor.faults, 60)
                gone_failure = retrain_under_fault(settings, broker, rows)
                assert stages.serving() == (1, 1)

                proxy.start()  # back, but it never answers
                proxy.hang()
                hung, _ = stages.stream(500)
                hung_at = time.monotonic()
                stages.wait(lambda: stages.scorer.scored >= 1_000 and stages.monitor.labelled >= 1_000, 60)
                scored_hung_in = time.monotonic() - hung_at
                hung_failure = retrain_under_fault(settings, broker, rows)
                assert stages.serving() == (1, 1)

                proxy.unhang()  # answering again: the stages follow the alias with no restart
                back_at = time.monotonic()
                stages.wait(lambda: stages.serving() == (v2, v2), 90)
                followed_in = time.monotonic() - back_at
                after, _ = stages.stream(200)
                predictions = stages.predictions(gone + hung + after)
                assert stages.alive()
        finally:
            proxy.stop()
    print(f"\nMLflow away {back_at - gone_at:.0f} s (gone, then hung): 1,000 records scored by v1 meanwhile "
          f"(the hung half in {scored_hung_in:.1f} s); v2 followed {followed_in:.1f} s after it answered; "
          f"retrains failed with {type(gone_failure).__name__} and {type(hung_failure).__name__}; {stages.state()}")
    assert {v for r in gone + hung for v in predictions[r.record["id"]]} == {1}  # 0 lost, by the champion
    assert {v for r in after for v in predictions[r.record["id"]]} == {v2}
    assert stages.monitor.invalid == 0
    assert "champion" in stages.scorer.last_fault and "champion" in stages.monitor.last_fault
    assert [v for v, _ in stages.scorer.swaps] == [1, v2]
    failures = [e for e in Ledger(settings.ledger_url).entries("failure") if "retrain failed" in (e.reason or "")]
    assert len(failures) == 2  # both retrains recorded their failure; neither moved the alias
    assert file_store(home).champion().version == v2
