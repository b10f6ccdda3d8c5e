"""The CLI contract: one-line errors with a non-zero exit, status without a broker.

The messages and exit codes are checked in this process (`cli`: the same `run()` the
installed command calls, tests/conftest.py); two tests run a real `python -m driftctl` so
that what a user sees on a terminal — one line, no traceback — is checked end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[1])


def driftctl(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "driftctl", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": ROOT, **(env or {})}, timeout=120)


def one_error_line(done, code):
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("driftctl: error:"), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.mark.parametrize("args", [["demo", "--records", "ten"], ["demo", "--records", "5"], ["no-such-command"],
                                  ["status", "--bogus"]])
def test_bad_arguments_are_one_line_and_non_zero(args, home, cli):
    one_error_line(cli(*args), 2)


def test_bad_setting_is_one_line(home, cli):
    done = cli("status", env={"DRIFTCTL_KAFKA__PARTITIONS": "zero"})
    assert one_error_line(done, 2).startswith("driftctl: error: bad setting kafka.partitions")


@pytest.mark.parametrize("args, code, words", [
    (["status", "--bogus"], 2, "--bogus"),                             # a usage error, before any import
    (["backtest", "missing.csv", "--target", "label"], 1, "no such file"),  # a failure after the heavy imports
])
def test_a_real_process_shows_one_line_and_no_traceback(args, code, words, home):
    assert words in one_error_line(driftctl(*args, cwd=home.parent), code)


def test_status_without_broker_or_champion(home, cli):
    done = cli("status", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["champion"] is None and report["health"] == "unknown"


def test_help_is_text_only():
    """click probes its output stream with b"": the CLI's masking stream must refuse bytes as a text
    stream does, or the probe's repr lands in the help (it printed b''b'\\n')."""
    done = driftctl("backtest", "--help")
    assert done.returncode == 0, done.stderr
    assert "--label-delay" in done.stdout and "b'" not in done.stdout + done.stderr
