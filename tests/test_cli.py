"""The CLI contract: one-line errors with a non-zero exit, status without a broker."""

import json
import subprocess
import sys

import pytest


def driftctl(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "driftctl", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


@pytest.mark.parametrize("args", [["demo", "--records", "ten"], ["demo", "--records", "5"], ["no-such-command"],
                                  ["status", "--bogus"]])
def test_bad_arguments_are_one_line_and_non_zero(args, home):
    import os

    done = driftctl(*args, env={**os.environ, "PYTHONPATH": _root()})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("driftctl: error:"), done.stderr
    assert "Traceback" not in done.stderr


def test_bad_setting_is_one_line(home):
    import os

    done = driftctl("status", env={**os.environ, "PYTHONPATH": _root(), "DRIFTCTL_KAFKA__PARTITIONS": "zero"})
    assert done.returncode == 2
    assert done.stderr.strip().startswith("driftctl: error: bad setting kafka.partitions")


def test_status_without_broker_or_champion(home):
    import os

    done = driftctl("status", "--json", env={**os.environ, "PYTHONPATH": _root()})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["champion"] is None and report["health"] == "unknown"


def _root():
    from pathlib import Path

    return str(Path(__file__).resolve().parents[1])
