"""Test set-up: every test gets its own driftctl home; Prefect's home is fixed per session
before Prefect is imported (it reads it once)."""

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="driftctl-tests-"))
os.environ["PREFECT_HOME"] = str(_SESSION_HOME / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
for name in list(os.environ):
    if name.startswith("DRIFTCTL_"):
        del os.environ[name]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFTCTL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"
