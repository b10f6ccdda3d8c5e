"""Waiting on a live stage in a test: the condition, or a clear failure naming what was awaited."""

from __future__ import annotations

import threading
import time

from driftctl.stores.ledger import Ledger
from serving.monitor import Monitor
from serving.scorer import Scorer
from training.registry import Registry


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


def start_stages(settings, bootstrap, registry, ledger, retrain, stop):
    """A monitor (with `retrain`) and a scorer on their own registry and ledger connections, each
    running on a daemon thread: (monitor, scorer, threads)."""
    monitor = Monitor(settings, bootstrap, registry, ledger, retrain, stop)
    scorer = Scorer(settings, bootstrap, Registry.from_settings(settings), stop, ledger=Ledger(settings.ledger_url))
    threads = [threading.Thread(target=monitor.run, name="monitor", daemon=True),
               threading.Thread(target=scorer.run, name="scorer", daemon=True)]
    for thread in threads:
        thread.start()
    return monitor, scorer, threads
