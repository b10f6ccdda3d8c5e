"""The warm engine (flows/warm.py): the work pool's command hands a flow run to a fork of the
warm process, which runs Prefect's engine with the command's environment and streams and
returns its exit code; with no warm process listening the command is `python -m prefect.engine`.
Without a flow run the engine refuses at once, which is enough to see the plumbing: the whole
served path through it runs in tests/test_served.py (`driftctl up` starts the warm engine)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from flows.warm import SOCKET

ROOT = Path(__file__).resolve().parents[1]


def _env(home: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTCTL_", "PREFECT_"))}
    return {**base, "PYTHONPATH": str(ROOT), "DRIFTCTL_HOME": str(home), "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def _command(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.warm", "not-a-flow-run"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_the_command_runs_the_engine_in_a_fork_of_the_warm_process_or_by_itself(tmp_path):
    env = _env(tmp_path)
    alone = _command(env)  # nothing listens: `python -m prefect.engine` itself
    assert alone.returncode == 1, alone.stderr[-2000:]
    assert "Invalid flow run id" in alone.stderr

    log = tmp_path / "warm.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-c", "from flows.warm import serve; serve(('prefect.engine',))"],
                                  env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not (tmp_path / SOCKET).exists():
            assert server.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the warm engine did not listen within 90 s"
            time.sleep(0.1)
        warm = _command(env)
        assert warm.returncode == 1, warm.stderr[-2000:]
        assert "Invalid flow run id" in warm.stderr  # the fork wrote to the command's stderr
        assert "RuntimeWarning" not in warm.stderr, warm.stderr[-2000:]
        forks = [line for line in log.read_text().splitlines() if " in fork " in line]
        assert len(forks) == 1, log.read_text()[-2000:]
        assert server.poll() is None  # the warm process outlives its forks
        again = _command(env)
        assert again.returncode == 1 and "Invalid flow run id" in again.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)
