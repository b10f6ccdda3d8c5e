"""Evidently's UI shows the drift and the champion: a workspace with two monitor windows,
served by its own `evidently ui` process, asked through the UI's API for the dashboard's
panels and their data points (not the whole stack: `test_served` covers that)."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from driftctl.runtime.broker import free_loopback_port, stop_process
from serving.workspace import ACCURACY_PANEL, VERSION_PANEL, add_snapshot, ensure_project, render
from tests.browser import screenshots

PROJECT = "driftctl"


def rows(n: int, shift: float, rng: random.Random) -> list[dict]:
    return [{"temperature": rng.gauss(20 + shift, 2), "vibration": rng.gauss(1, 0.2)} for _ in range(n)]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("evidently") / "workspace"
    rng = random.Random(0)
    reference = rows(400, 0, rng)
    ensure_project(workspace, PROJECT)
    windows = [(rows(300, 0, rng), {"realised_accuracy": 0.93, "estimated_accuracy": 0.91, "model_version": 1}),
               (rows(300, 6, rng), {"realised_accuracy": 0.61, "estimated_accuracy": 0.72, "model_version": 2})]
    for i, (window, vitals) in enumerate(windows):
        add_snapshot(workspace, PROJECT, render(reference, window, vitals), name=f"window {i}")
    port = free_loopback_port()
    evidently = Path(sys.executable).with_name("evidently")
    log = (workspace.parent / "ui.log").open("w")
    process = subprocess.Popen([str(evidently), "ui", "--workspace", str(workspace), "--host", "127.0.0.1",
                                "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/version", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"evidently ui did not answer: {(workspace.parent / 'ui.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        stop_process(process)
        log.close()


def test_the_dashboard_has_the_drift_and_champion_panels_with_their_points(ui):
    project = next(p for p in httpx.get(f"{ui}/api/projects", timeout=10).json() if p["name"] == PROJECT)
    dashboard = httpx.get(f"{ui}/api/v2/dashboards/{project['id']}", timeout=10).json()
    panels = {p["title"]: p for p in dashboard["panels"]}
    assert {"Share of drifted features", "Drift score per feature", ACCURACY_PANEL, VERSION_PANEL} <= set(panels)
    assert "estimated" in panels[ACCURACY_PANEL]["subtitle"]

    def points(title: str) -> list[list[float | None]]:
        filters = [{"tags": [], "metadata": {}, "metric": v["metric"], "metric_labels": v["metric_labels"]}
                   for v in panels[title]["values"]]
        reply = httpx.post(f"{ui}/api/v2/snapshots/{project['id']}/data_series_batch",
                           json={"series_filter": filters}, timeout=30)
        reply.raise_for_status()
        return [s["values"] for s in reply.json()["series"]]

    assert points(ACCURACY_PANEL) == [[pytest.approx(0.93), pytest.approx(0.61)],  # realised
                                      [pytest.approx(0.91), pytest.approx(0.72)]]  # estimated
    assert points(VERSION_PANEL) == [[1.0, 2.0]]
    (share,) = points("Share of drifted features")
    assert len(share) == 2 and share[0] < share[1]  # the shifted window drifted
    per_feature = dict(zip(["temperature", "vibration"], points("Drift score per feature"), strict=True))
    assert per_feature["temperature"][1] < 0.05 <= per_feature["temperature"][0]  # a K-S p-value per window


def test_the_dashboard_draws_in_a_browser(ui, tmp_path):
    project = next(p for p in httpx.get(f"{ui}/api/projects", timeout=10).json() if p["name"] == PROJECT)
    (shot,) = screenshots([("evidently-dashboard.png", f"{ui}/projects/{project['id']}",
                            ["Share of drifted features", ACCURACY_PANEL])], tmp_path)
    assert shot.stat().st_size > 20_000  # a drawn page, not a blank one
