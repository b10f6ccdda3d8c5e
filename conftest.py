"""The session's environment, set before any test or doctest module is imported (pytest loads
this file first, whichever paths it is given): Prefect reads its home once, at import, so it
is fixed here to a throwaway directory; the caller's DRIFTCTL_* settings never leak in
(DRIFTCTL_TEST_* are the harness's own knobs, not settings, and stay). Fixtures live in
tests/conftest.py."""

import os
import tempfile
from pathlib import Path

SESSION_HOME = Path(tempfile.mkdtemp(prefix="driftctl-tests-"))
os.environ["PREFECT_HOME"] = str(SESSION_HOME / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
# Prefect gives its in-process (ephemeral) API server 20 s to start, counting only its own
# sleeps; on a busy 2-core machine that is not enough and a flow run fails before it begins.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
for name in list(os.environ):
    if name.startswith("DRIFTCTL_") and not name.startswith("DRIFTCTL_TEST_"):
        del os.environ[name]
