"""Fixtures shared by the tests. The session's environment (Prefect's home, no DRIFTCTL_*
from the caller) is set in the repository's root conftest.py, before anything is imported.

Expensive set-up is done once per session and shared where tests only read it:
- `demo`: one run of the whole demo (broker, scorer process, monitor, Prefect retrain,
  MLflow), watched live by tests/test_operator.py and read afterwards by tests/test_loop.py.
  The tests that watch it run first in the session, those that read its result right after.
- `champion_v1`: a broker holding 2,000 labelled records before a drift and 1,500 after,
  and a home in which the retrain flow trained, registered and announced champion v1 from
  the first 2,000. Tests get a copy of that home (`tests/homes.py`), never the original.
- `cli`: `driftctl ...` run in this process, for tests about a command's output, message
  and exit code; a few tests keep a real process for the no-traceback guarantee.
The suite runs on two pytest-xdist workers (pyproject's addopts; `-n 0` for one process): the
tests of the demo and those of champion v1 are each kept on one worker, so each is set up once.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.homes import clone_home


def pytest_sessionfinish(session, exitstatus):
    """Prefect's log and event workers send what they still hold before the process exits. The
    Prefect servers the tests started are gone by then, so each item waited out its retries and
    timeouts (the suite once sat ~17 min after its last test): what is left is dropped."""
    if "prefect._internal.concurrency.services" not in sys.modules:
        return  # Prefect never ran here (pytest-xdist's controller process)
    from prefect._internal.concurrency.services import _QueueServiceBase

    for service in list(_QueueServiceBase._instances.values()):
        try:
            while True:
                service._queue.get_nowait()
        except queue.Empty:
            pass


@pytest.fixture(autouse=True)
def _environment(request):
    """Each test gets the environment back as it found it: library code writes os.environ
    (`configure_environment` points DRIFTCTL_HOME, PREFECT_HOME and MLflow at a home), and
    the next test must not inherit that. The shared demo's live watchers are the exception:
    the demo's thread needs its environment until it ends (`RunningDemo.finished` restores it)."""
    if "demo" in request.fixturenames and "demo_result" not in request.fixturenames:
        yield
        return
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFTCTL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


# -- the CLI in this process ----------------------------------------------------------------

@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """`cli("status", "--json", env={...})` runs driftctl's console entry point (the same
    `run()` the installed command calls: one-line errors, exit codes) in this process and
    returns what a subprocess would. What a command leaves behind in the process (environment
    variables, logger levels, warning filters) is put back afterwards."""
    from driftctl.app.cli import run

    def call(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Done:
        saved_env = dict(os.environ)
        saved_levels = {name: logging.getLogger(name).level for name in ("kafka", "mlflow", "prefect", "alembic")}
        if cwd is not None:
            monkeypatch.chdir(cwd)
        os.environ.update(env or {})
        monkeypatch.setattr(sys, "argv", ["driftctl", *args])
        capsys.readouterr()
        code = 0
        try:
            with warnings.catch_warnings():
                run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            for name, level in saved_levels.items():
                logging.getLogger(name).setLevel(level)
        out = capsys.readouterr()
        return Done(code, out.out, out.err)

    return call


# -- one demo run, shared ---------------------------------------------------------------------

class RunningDemo:
    """`driftctl demo` in a thread: tests watch it while it runs, then read its result."""

    def __init__(self, settings):
        self.settings = settings
        self.environment = dict(os.environ)  # run_demo points the environment at its home
        self.result = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="demo", daemon=True)

    def _run(self) -> None:
        from driftctl.app.demo import run_demo

        try:
            self.result = run_demo(self.settings)
        except BaseException as exc:
            self.error = exc

    def alive(self) -> bool:
        if self.error is not None:
            raise AssertionError(f"the pipeline stopped: {self.error!r}")
        return self.thread.is_alive()

    def finished(self, timeout: float = 900):
        self.thread.join(timeout=timeout)
        if not self.thread.is_alive():
            os.environ.clear()
            os.environ.update(self.environment)
        assert not self.alive(), f"the demo did not finish within {timeout:.0f} s"
        assert self.result is not None
        return self.result


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The demo at its default scale (30,000 records, drift at 10,000, 1,000 records/s), with
    the operator's views refreshed often: heartbeats every second, an Evidently snapshot
    every 5 s, the console polling every second."""
    from driftctl.settings import EvidentlySettings, HealthSettings, Settings

    settings = Settings(home=tmp_path_factory.mktemp("demo"), health=HealthSettings(heartbeat_interval=1.0),
                        evidently=EvidentlySettings(snapshot_interval=5.0))
    settings.console.refresh = 1.0
    running = RunningDemo(settings)
    running.thread.start()
    yield running
    running.thread.join(timeout=900)


@pytest.fixture(scope="session")
def demo_result(demo):
    """(settings, result) once the shared demo has finished."""
    return demo.settings, demo.finished()


def _group(item) -> str | None:
    """The shared session fixture a test needs, if any: its tests run in one pytest-xdist worker."""
    names = getattr(item, "fixturenames", ())
    if "demo" in names or "demo_result" in names:
        return "demo"
    if "champion_v1" in names:
        return "champion_v1"
    # A module's own module- or session-scoped fixture (a served stack, a shared home) is built once
    # per worker that runs one of its tests: keep that module on one worker.
    module = getattr(getattr(item, "module", None), "__name__", None)
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    if any(d.scope in ("module", "session") and getattr(d.func, "__module__", None) == module
           for defs in definitions.values() for d in defs):
        return item.nodeid.split("::")[0]
    return None


def pytest_collection_modifyitems(config, items):
    """Tests that watch the shared demo live go first (it starts with them), then those that
    read its result; the rest after, so nothing else runs in this process beside the demo.
    Under pytest-xdist each worker also writes down which tests share the demo or champion v1
    (`pytest_xdist_make_scheduler` below keeps each set on one worker)."""
    def rank(item) -> int:
        names = getattr(item, "fixturenames", ())
        if "demo_result" in names:
            return 1
        return 0 if "demo" in names else 2

    items.sort(key=rank)  # stable: file order within each group
    groups_file = os.environ.get(GROUPS_FILE)
    if groups_file and hasattr(config, "workerinput"):
        groups = {item.nodeid: group for item in items if (group := _group(item))}
        partial = Path(f"{groups_file}.{config.workerinput['workerid']}")
        partial.write_text(json.dumps(groups))
        partial.replace(groups_file)  # whole, whichever worker writes last (all collect the same)


# pytest-xdist: a worker per core. Its own `xdist_group` marks no longer reach the scheduler
# (pytest 9 derives node ids from `_id`; xdist 3.8 rewrites `_nodeid`), so the groups travel in
# a file: the workers write it while collecting, before the controller schedules.
GROUPS_FILE = "DRIFTCTL_TEST_XDIST_GROUPS"


def pytest_configure(config):
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):  # xdist's controller
        handle, path = tempfile.mkstemp(prefix="driftctl-xdist-groups-", suffix=".json")
        os.close(handle)
        os.environ[GROUPS_FILE] = path


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput") and os.environ.get(GROUPS_FILE):
        Path(os.environ.pop(GROUPS_FILE)).unlink(missing_ok=True)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup`: the demo's tests on one worker, in order (one demo per session),
    champion v1's on one worker (trained once); every other test goes to whichever is free."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if not hasattr(self, "_groups"):
                text = Path(os.environ[GROUPS_FILE]).read_text()
                self._groups = json.loads(text) if text else {}
            return self._groups.get(nodeid, nodeid)

    return SharedFixtureGroups(config, log)


# -- champion v1, trained once ----------------------------------------------------------------

DRIFT_AT = 2_000


@dataclass(frozen=True)
class ChampionV1:
    home: Path             # the template: never handed to a test, only copied
    bootstrap: str         # the broker that holds the records below (shared: tests append, never rewrite)
    before: list[tuple]    # 2,000 records before the drift (positions, see tests/streams.produce)
    after: list[tuple]     # 1,500 after it
    update: tuple[bytes, bytes]  # the v1 announcement (key, value) as the flow published it

    def copy_to(self, home: Path) -> Path:
        return clone_home(self.home, home)

    def announce(self, bootstrap: str, settings) -> None:
        """Put the v1 announcement on `settings`' model-updates topic, where training it would have."""
        from serving.kafka_io import make_producer

        producer = make_producer(bootstrap, settings.kafka)
        try:
            producer.send(settings.kafka.topics.model_updates, key=self.update[0], value=self.update[1]).get(timeout=15)
        finally:
            producer.close()


@pytest.fixture(scope="session")
def champion_v1(tmp_path_factory):
    from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
    from driftctl.runtime.stack import configure_environment
    from driftctl.settings import Settings
    from flows.retrain import retrain
    from serving.kafka_io import read_topic
    from tests.streams import produce, readings, trigger, window

    template = tmp_path_factory.mktemp("champion-v1") / "home"
    saved_env = dict(os.environ)
    with EmbeddedBroker() as broker:
        try:
            os.environ["DRIFTCTL_HOME"] = str(template)
            settings = Settings(home=template)
            configure_environment(settings)  # the flow builds its settings from the environment
            bootstrap = broker.bootstrap_servers
            ensure_topics(bootstrap, settings.kafka)
            before = produce(bootstrap, settings, readings(0, DRIFT_AT, drift_at=DRIFT_AT))
            after = produce(bootstrap, settings, readings(DRIFT_AT, DRIFT_AT + 1_500, drift_at=DRIFT_AT))
            started = time.monotonic()
            outcome = retrain(window=window(bootstrap, settings, before),
                              trigger=trigger("decision-v1", kind="bootstrap"))
            assert outcome["promoted"] and outcome["version"] == 1, outcome
            announced = read_topic(bootstrap, settings.kafka, settings.kafka.topics.model_updates,
                                   until=lambda got: len(got) >= 1, timeout=15)
            assert len(announced) == 1, "champion v1 was not announced"
            logging.getLogger(__name__).info("champion v1 trained once in %.1f s", time.monotonic() - started)
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
        yield ChampionV1(template, bootstrap, before, after, (announced[0].key, announced[0].value))
