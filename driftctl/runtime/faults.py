"""Fault injection for the crash-consistency tests: `DRIFTCTL_FAULT_KILL_AT=<step>` kills the
process with SIGKILL (kill -9: no cleanup, no `finally`) when it reaches that step, e.g.
``promotion:alias`` just after the champion alias moved. Unset, a step costs one dict lookup."""

from __future__ import annotations

import os
import signal

VARIABLE = "DRIFTCTL_FAULT_KILL_AT"


def step(name: str) -> None:
    """A named point in a multi-step change; the process dies here if the variable names it."""
    if os.environ.get(VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)
