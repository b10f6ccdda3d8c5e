"""Waiting on a live stage in a test: the condition, or a clear failure naming what was awaited."""

from __future__ import annotations

import time


def wait_for(condition, timeout, what, *, alive=()):
    """Poll `condition` until true; fail if `timeout` seconds pass or a thread in `alive` stops.
    `what()` describes the state awaited, for the failure message."""
    deadline = time.monotonic() + timeout
    while not condition():
        for thread in alive:
            assert thread.is_alive(), f"{thread.name} stopped while waiting for {what()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what()}"
        time.sleep(0.1)
