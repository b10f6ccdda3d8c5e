"""The Evidently workspace at <home>/evidently: the monitor's periodic data-drift snapshots,
so that `evidently ui --workspace <home>/evidently` shows drift over time, and the newest
window kept beside them for `driftctl report`.

An Evidently report takes ~0.3 s: it is rendered every `evidently.snapshot_interval`
seconds on a worker thread, never per window and never on the monitor's own thread.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

LATEST_WINDOW = "latest-window.json"


class SnapshotRecorder:
    def __init__(self, workspace: Path, project: str, interval: float, clock=time.monotonic):
        self.workspace = workspace
        self.project = project
        self.interval = interval
        self.clock = clock
        self.recorded = 0
        self._last = clock()
        self._pending: Future | None = None
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings) -> SnapshotRecorder:
        return cls(settings.evidently_workspace, settings.evidently.project, settings.evidently.snapshot_interval)

    def maybe_record(self, monitor, force: bool = False) -> bool:
        """Submit a snapshot of the monitor's newest window if the interval has passed."""
        if self.interval <= 0 and not force:
            return False
        if not force and self.clock() - self._last < self.interval:
            return False
        if self._pending is not None and not self._pending.done():
            return False
        if monitor.watch.data_detector is None or monitor.champion is None or len(monitor.recent) < 2:
            return False
        self._last = self.clock()
        window = {"at": time.time(), "index": monitor.telemetry_seen, "champion": monitor.champion.as_dict(),
                  "rows": list(monitor.recent)}
        reference = monitor.watch.data_detector.reference
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidently")
        self._pending = self._executor.submit(self._record, window, reference)
        return True

    def _record(self, window: dict[str, Any], reference: list[dict]) -> None:
        try:
            self.workspace.mkdir(parents=True, exist_ok=True)
            path = self.workspace / LATEST_WINDOW
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(window))
            tmp.replace(path)
            snapshot = render(reference, window["rows"])
            add_snapshot(self.workspace, self.project, snapshot,
                         name=f"window to record {window['index']} (champion v{window['champion']['version']})")
            self.recorded += 1
        except Exception as exc:  # a snapshot is evidence for people, never a reason to stop the monitor
            log.warning("evidently snapshot not recorded: %s", exc)

    def close(self, monitor=None) -> None:
        """Record the final window (so `driftctl report` has the newest) and wait for the worker."""
        if monitor is not None and self.interval > 0:
            if self._pending is not None:
                self._pending.result()
            self.maybe_record(monitor, force=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)


def render(reference: list[dict], rows: list[dict]):
    from drift.report import data_drift_snapshot  # Evidently takes seconds to import: only when a report is drawn

    return data_drift_snapshot(pd.DataFrame.from_records(reference), pd.DataFrame.from_records(rows))


def add_snapshot(workspace: Path, project_name: str, snapshot, name: str | None = None) -> None:
    from evidently.ui.workspace import Workspace  # seconds to import: only when a snapshot is stored

    ws = Workspace(str(workspace))
    found = ws.search_project(project_name)
    project = found[0] if found else ws.create_project(project_name, description="driftctl monitor windows")
    ws.add_run(project.id, snapshot, name=name)


def latest_window(workspace: Path) -> dict[str, Any] | None:
    path = workspace / LATEST_WINDOW
    if not path.exists():
        return None
    return json.loads(path.read_text())
