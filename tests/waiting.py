"""Waiting on a live stage in a test: the condition, or a clear failure naming what was awaited."""

from __future__ import annotations

import time


def wait_for(condition, timeout, what, *, alive=()):
    """Poll `condition` until true; fail if `timeout` seconds pass or a thread in `alive` stops.
    `what` (a string, or a function called at the failure) describes the state awaited."""
    deadline = time.monotonic() + timeout
    while not condition():
        for thread in alive:
            assert thread.is_alive(), f"{thread.name} stopped while waiting for {_said(what)}"
        assert time.monotonic() < deadline, f"timed out waiting for {_said(what)}"
        time.sleep(0.1)


def _said(what) -> str:
    return what() if callable(what) else what
