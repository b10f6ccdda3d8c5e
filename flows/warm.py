"""A warm engine for the served retrain: each flow run in a fork of a process that has
already imported Prefect, MLflow, scikit-learn, pandas, Evidently and the flows.

Prefect's process worker starts every flow run as a fresh `python -m prefect.engine`,
which spends seconds of CPU importing before the flow's first line. `driftctl up` makes
this module the work pool's command instead (`pool_template`) and starts the warm process:

    python -m flows.warm serve   # beside the worker: imports once, listens
    python -m flows.warm         # the worker's command for a flow run

The command hands its environment, working directory and standard streams to the warm
process over `<DRIFTCTL_HOME>/warm-engine.sock`; a fork of it runs Prefect's engine
exactly as `python -m prefect.engine` would, and the command exits with its code and
passes it the worker's signals (a cancel). With no warm process listening the command
becomes `python -m prefect.engine` itself: the deployments never depend on it.

Only the standard library is imported at the top: the command must start in milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys

SOCKET = "warm-engine.sock"
PRELOAD = ("prefect.engine", "prefect.flow_engine", "flows.retrain", "drift.report")


def pool_template() -> dict:
    """The process work pool's base job template, with this module as the flow runs' command
    (this interpreter's: the worker's PATH may name another `python`)."""
    import shlex

    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    template["variables"]["properties"]["command"]["default"] = f"{shlex.quote(sys.executable)} -m flows.warm"
    return template


def socket_path(env: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    home = env.get("DRIFTCTL_HOME")
    return os.path.join(home, SOCKET) if home else None


def _engine() -> None:
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *sys.argv[1:]])


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def command() -> int:
    """The worker's command for one flow run."""
    path = socket_path()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if path is None:
            raise OSError("no DRIFTCTL_HOME")
        sock.connect(path)
        request = json.dumps({"env": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv[1:]}).encode()
        socket.send_fds(sock, [b"r"], [0, 1, 2])
        sock.sendall(struct.pack("!I", len(request)) + request)
        (pid,) = struct.unpack("!i", _read(sock, 4))
    except (OSError, EOFError):
        sock.close()
        _engine()  # no warm process: the worker's default command
        return 1  # not reached
    for signum in (signal.SIGTERM, signal.SIGINT):  # the worker cancels by signalling its command
        signal.signal(signum, lambda s, _frame: os.kill(pid, s))
    try:
        (code,) = struct.unpack("!i", _read(sock, 4))
    except EOFError:  # the fork died without a word (killed)
        return 1
    return code


def serve(preload: tuple[str, ...] = PRELOAD) -> None:
    """Import once, then fork one engine per connection; never runs a flow itself."""
    import importlib

    path = socket_path()
    if path is None:
        raise SystemExit("flows.warm serve needs DRIFTCTL_HOME")
    for module in preload:
        importlib.import_module(module)
    import gc

    gc.freeze()  # the forks share the imported heap instead of copying it on their first collection
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the forks
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    print(f"warm engine listening on {path}", flush=True)
    while True:
        conn, _ = listener.accept()
        try:
            _, fds, _, _ = socket.recv_fds(conn, 1, 3)
            (size,) = struct.unpack("!I", _read(conn, 4))
            request = json.loads(_read(conn, size))
        except (OSError, EOFError, ValueError):
            conn.close()
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        server = os.getpid()
        pid = os.fork()
        if pid == 0:
            listener.close()
            _end_with(server)
            sys.exit(_run(conn, fds, request))
        print(f"flow run {request['env'].get('PREFECT__FLOW_RUN_ID')} in fork {pid}", flush=True)
        for fd in fds:
            os.close(fd)
        conn.close()


def _end_with(server: int) -> None:
    """In the fork: end when the warm server ends (`driftctl down`, kill -9). A fork does not inherit
    the server's parent-death signal, and one left flushing Prefect's logs to a stopped API lingered."""
    from driftctl.runtime.broker import die_with_parent

    die_with_parent(signal.SIGKILL)
    if os.getppid() != server:  # the server ended before the signal was set
        os._exit(1)


def _run(conn: socket.socket, fds: list[int], request: dict) -> int:
    """In the fork: become the command's process, run `python -m prefect.engine`, report the code."""
    import atexit
    import runpy
    import threading

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = ["prefect.engine", *request["argv"]]
    conn.sendall(struct.pack("!i", os.getpid()))
    code, reported = [1], threading.Event()

    def report() -> None:
        reported.set()
        with contextlib.suppress(OSError):  # the command is gone
            conn.sendall(struct.pack("!i", code[0]))

    def orphaned() -> None:  # the command was killed outright (no signal to pass on): end as it did
        with contextlib.suppress(OSError):
            conn.recv(1)
        if not reported.is_set():
            os.kill(os.getpid(), signal.SIGTERM)

    # Registered before the engine registers its own (log and event flushes): runs after them.
    atexit.register(report)
    threading.Thread(target=orphaned, daemon=True, name="warm-command").start()

    from prefect.context import SettingsContext, get_settings_context
    from prefect.settings import Settings

    sys.modules.pop("prefect.engine", None)  # run afresh as __main__, as `python -m` would (no runpy warning)
    try:
        # Prefect read its settings when the warm process imported it: read them from this run's environment.
        with SettingsContext(profile=get_settings_context().profile, settings=Settings()):
            runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
        code[0] = 0
    except SystemExit as exit_:
        code[0] = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    return code[0]


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve()
    else:
        sys.exit(command())
