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
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from evidently.core.report import Snapshot
    from evidently.ui.workspace import Project, Workspace

    from driftctl.settings import Settings
    from serving.monitor import Monitor

log = logging.getLogger(__name__)

LATEST_WINDOW = "latest-window.json"


class SnapshotRecorder:
    def __init__(self, workspace: Path, project: str, interval: float,
                 clock: Callable[[], float] = time.monotonic):
        self.workspace = workspace
        self.project = project
        self.interval = interval
        self.clock = clock
        self.recorded = 0
        self._last = clock()
        self._pending: Future[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SnapshotRecorder:
        return cls(settings.evidently_workspace, settings.evidently.project, settings.evidently.snapshot_interval)

    def maybe_record(self, monitor: Monitor, force: bool = False) -> bool:
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
        vitals = monitor.watch.vitals()
        window = {"at": time.time(), "index": monitor.telemetry_seen, "champion": monitor.champion.as_dict(),
                  "rows": list(monitor.recent),
                  # realised: the champion's accuracy over its recent labelled records (the error detector's
                  # window); estimated (label-free) once served predictions with their confidence arrive
                  "vitals": {"realised_accuracy": vitals.get("accuracy"),
                             "estimated_accuracy": vitals.get("estimated_accuracy"),
                             "model_version": monitor.champion.version}}
        reference = monitor.watch.data_detector.reference
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidently")
        self._pending = self._executor.submit(self._record, window, reference)
        return True

    def _record(self, window: dict[str, Any], reference: list[dict[str, Any]]) -> None:
        try:
            self.workspace.mkdir(parents=True, exist_ok=True)
            path = self.workspace / LATEST_WINDOW
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(window))
            tmp.replace(path)
            snapshot = render(reference, window["rows"], window["vitals"])
            add_snapshot(self.workspace, self.project, snapshot,
                         name=f"window to record {window['index']} (champion v{window['champion']['version']})")
            self.recorded += 1
        except Exception as exc:  # a snapshot is evidence for people, never a reason to stop the monitor
            log.warning("evidently snapshot not recorded: %s", exc)

    def close(self, monitor: Monitor | None = None) -> None:
        """Record the final window (so `driftctl report` has the newest) and wait for the worker."""
        if monitor is not None and self.interval > 0:
            if self._pending is not None:
                self._pending.result()
            self.maybe_record(monitor, force=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)


def render(reference: list[dict[str, Any]], rows: list[dict[str, Any]],
           champion: dict[str, Any] | None = None) -> Snapshot:
    from drift.report import data_drift_snapshot  # Evidently takes seconds to import: only when a report is drawn

    return data_drift_snapshot(pd.DataFrame.from_records(reference), pd.DataFrame.from_records(rows), champion)


def add_snapshot(workspace: Path, project_name: str, snapshot: Snapshot, name: str | None = None) -> None:
    from evidently.ui.workspace import Workspace  # seconds to import: only when a snapshot is stored

    ws = Workspace(str(workspace))
    project = ensure_project(workspace, project_name, ws=ws)
    columns = [m["config"].get("column") for m in snapshot.dict()["metrics"]
               if m["metric_name"].startswith("ValueDrift")]
    _feature_panels(project, [c for c in columns if c])
    ws.add_run(project.id, snapshot, name=name)


DRIFT_TAB = "Drift"
CHAMPION_TAB = "Champion"
ACCURACY_PANEL = "Champion accuracy"
VERSION_PANEL = "Model version serving"


def ensure_project(workspace: Path, project_name: str, ws: Workspace | None = None) -> Project:
    """The workspace's project, created with its dashboard: the share of drifted features over
    time first; each feature's drift score joins when the first window shows the features."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel
    from evidently.ui.workspace import Workspace

    ws = ws or Workspace(str(workspace))
    found = ws.search_project(project_name)
    if found:
        _champion_panels(found[0])  # a project made before these panels existed gets them too
        return found[0]
    project = ws.create_project(project_name, description="driftctl monitor windows")
    project.dashboard.add_panel(line_plot_panel(
        title="Share of drifted features", description="Evidently's drift verdict per monitor window",
        values=[PanelMetric(legend="share", metric="DriftedColumnsCount", metric_labels={"value_type": "share"})],
        size="full"), tab=DRIFT_TAB)
    _champion_panels(project)
    return project


def _champion_panels(project: Project) -> None:
    """The champion's accuracy and the version serving, per monitor window: realised (from the
    labels) and estimated (label-free, from the served predictions' confidence), which leads
    the realised one while labels are late."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    from drift.report import CHAMPION_COLUMNS

    titles = {p.title for p in project.dashboard.model().panels}
    if ACCURACY_PANEL not in titles:
        project.dashboard.add_panel(line_plot_panel(
            title=ACCURACY_PANEL,
            description=("realised: share right among the recent labelled records; estimated: the served "
                         "predictions' calibrated confidence (CBPE), known before their labels arrive"),
            values=[PanelMetric(legend="realised", metric="MeanValue",
                                metric_labels={"column": CHAMPION_COLUMNS["realised_accuracy"]}),
                    PanelMetric(legend="estimated", metric="MeanValue",
                                metric_labels={"column": CHAMPION_COLUMNS["estimated_accuracy"]})],
            size="half"), tab=CHAMPION_TAB)
    if VERSION_PANEL not in titles:
        project.dashboard.add_panel(line_plot_panel(
            title=VERSION_PANEL, description="the champion version the monitor followed in each window",
            values=[PanelMetric(legend="version", metric="MeanValue",
                                metric_labels={"column": CHAMPION_COLUMNS["model_version"]})],
            size="half"), tab=CHAMPION_TAB)


def _feature_panels(project: Project, columns: list[str]) -> None:
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    title = "Drift score per feature"
    if not columns or any(p.title == title for p in project.dashboard.model().panels):
        return
    project.dashboard.add_panel(line_plot_panel(
        title=title, description="each feature's drift score (p-value or distance) per window",
        values=[PanelMetric(legend=c, metric="ValueDrift", metric_labels={"column": c}) for c in columns],
        size="full"), tab=DRIFT_TAB)


def latest_window(workspace: Path) -> dict[str, Any] | None:
    path = workspace / LATEST_WINDOW
    if not path.exists():
        return None
    return json.loads(path.read_text())
