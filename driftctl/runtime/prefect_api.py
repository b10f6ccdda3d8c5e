"""A local Prefect API server that dies with the stage that started it.

Prefect's ephemeral mode starts its API server (uvicorn) as a plain subprocess: a stage
killed with SIGKILL leaves it running as an orphan. In-process flow runs use this server
instead: the same command Prefect runs, started with PR_SET_PDEATHSIG (the child gets
SIGTERM when its parent dies, even by `kill -9`), on a free loopback port.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from driftctl.runtime.broker import die_with_parent, free_loopback_port, stop_process

log = logging.getLogger(__name__)


class PrefectApiError(Exception):
    """The local Prefect API server did not start."""


class LocalPrefectApi:
    """Started on first use (`api_url()` waits until it answers), stopped with `stop()`."""

    def __init__(self, log_path: Path | None = None, ready_timeout: float = 90.0):
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self._ready = False
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> LocalPrefectApi:
        """Launch the server without waiting for it (it takes seconds to migrate and start)."""
        with self._lock:
            if self.process is not None and self.process.poll() is None:
                return self
            import prefect  # only to find its package directory; importing it starts nothing

            self.port = free_loopback_port()
            env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
            env.pop("PREFECT_API_URL", None)
            out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 (closed below)
            try:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parent.parent),
                     "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                     "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
                    env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent)
            finally:
                if not isinstance(out, int):  # the log file, not subprocess.DEVNULL
                    out.close()
            self._ready = False
        return self

    def api_url(self) -> str:
        """The API URL once the server answers its health check (started if needed)."""
        self.start()
        if self._ready:
            return self.url
        process = self.process
        assert process is not None  # start() launched it
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise PrefectApiError(f"the local Prefect API server exited with code {process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:
                    if answer.status == 200:
                        self._ready = True
                        return self.url
            except OSError:
                pass
            time.sleep(0.2)
        raise PrefectApiError(f"the local Prefect API server did not answer within {self.ready_timeout:.0f} s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process)
