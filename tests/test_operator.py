"""The operator's view against a running pipeline: the demo's real broker, scorer process,
monitor, Prefect retrain and MLflow (the session's one demo run, tests/conftest.py `demo`).
`status --json` and the console (in headless Debian chromium, driven by Playwright) while
the stream runs; then status, report, plot and the Evidently workspace once everything has
stopped. A missing browser fails the console's test: `make chromium` installs it."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from driftctl.settings import Settings
from tests.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium

pytestmark = pytest.mark.integration

ROOT = str(Path(__file__).resolve().parents[1])


@pytest.fixture
def pipeline(demo):
    return demo


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT, "DRIFTCTL_HOME": str(settings.home)}
    return subprocess.run([sys.executable, "-m", "driftctl", *args], capture_output=True, text=True, env=env,
                          timeout=180)


def _browser():
    """Debian's chromium, or a failure: a test that cannot run never passes as skipped."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    return sync_playwright


def test_console_shows_the_champion_and_throughput_while_the_stream_runs(pipeline, tmp_path_factory):
    from driftctl.app.console import ConsoleServer

    sync_playwright = _browser()
    server = ConsoleServer(pipeline.settings, "127.0.0.1", 0).start()
    shot = tmp_path_factory.getbasetemp() / "console.png"
    errors: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 1300})
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(server.url)
                assert page.title() == "driftctl console"
                deadline = time.monotonic() + 300
                version, throughput = "", 0
                while time.monotonic() < deadline and pipeline.alive():
                    version = page.text_content("#champion-version").strip()
                    throughput = int(page.text_content("#throughput").replace(",", "") or 0)
                    if version.isdigit() and throughput > 0:
                        break
                    page.wait_for_timeout(500)  # the page polls /api/status every second by itself
                assert version.isdigit() and int(version) >= 1, f"champion shown: {version!r}"
                assert throughput > 0
                rows = page.locator("#stages tbody tr").all_text_contents()
                assert any(r.startswith("scorer") for r in rows), rows
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()
    finally:
        server.stop()
    assert errors == [], errors
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("DRIFTCTL_ARTIFACTS"):
        shutil.copy(shot, Path(os.environ["DRIFTCTL_ARTIFACTS"]) / "console.png")


def test_status_json_against_the_running_pipeline(pipeline):
    settings = pipeline.settings
    deadline = time.monotonic() + 300
    report, seen = None, []
    while time.monotonic() < deadline and pipeline.alive():
        done = _cli(settings, "status", "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        scorer = next((s for s in report["stages"] if s["stage"] == "scorer"), None)
        fired = [d for d in report["drift"] if d["events"] > 0]
        seen.append((report["health"], scorer and scorer["rps"], bool(fired)))
        if report["champion"] and scorer and scorer["health"] != "unknown" and scorer["rps"] > 0 and fired:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"never saw champion, scoring and drift together: {seen}")
    assert report["health"] in ("healthy", "warning"), report["stages"]
    assert report["broker"]["reachable"] is True
    assert report["champion"]["version"] >= 1 and report["champion"]["promoted_at"]
    assert scorer["health"] in ("healthy", "warning") and scorer["reason"]
    assert scorer["model_version"] >= 1 and scorer["group_id"] == settings.kafka.scorer_group
    assert isinstance(scorer["lag"], int) and scorer["lag"] >= 0
    topics = {key.split("[")[0] for key in scorer["lag_detail"]}
    assert settings.kafka.topics.telemetry in topics
    stages = {s["stage"] for s in report["stages"]}
    assert {"producer", "scorer", "monitor", "retrain"} <= stages
    assert report["dead_letters"]["total"] == 0
    detectors = {d["detector"]: d for d in report["drift"]}
    assert set(detectors) >= {"error-adwin", "data-ks"}
    assert any(d["state"] in ("drift", "stable") and d["last_event"]["index"] >= settings.stream.drift_at
               for d in fired)
    assert report["decisions"] and len(report["decisions"]) <= 5


def test_after_the_broker_stopped_status_is_unknown_and_the_evidence_remains(pipeline, demo_result, tmp_path):
    assert not pipeline.alive() and pipeline.result is not None
    settings = pipeline.settings

    done = _cli(settings, "status", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["health"] == "unknown"
    assert report["broker"]["reachable"] is False
    assert all(s["health"] == "unknown" for s in report["stages"] if s["stage"] != "retrain")
    assert report["champion"]["version"] == pipeline.result.promoted_version == 2
    # One drift, one incident: the retrain that promoted version 2 is in it.
    assert any(i["state"].startswith("promoted v2") for i in report["incidents"]), report["incidents"]
    text = _cli(settings, "status")
    assert text.returncode == 0 and "UNKNOWN" in text.stdout and "Traceback" not in text.stderr

    done = _cli(settings, "report", "--json", "--out", str(tmp_path / "report.html"))
    assert done.returncode == 0, done.stderr
    rendered = json.loads(done.stdout)
    assert rendered["window_rows"] == settings.drift.data_window and rendered["champion"]["version"] == 2
    assert (tmp_path / "report.html").stat().st_size > 10_000

    done = _cli(settings, "plot", "--out", str(tmp_path / "live.png"), "--json")
    assert done.returncode == 0, done.stderr
    drawn = json.loads(done.stdout)
    assert drawn["accuracy_points"] > 0 and drawn["drift_events"] > 0 and 2 in drawn["promotions"]

    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(settings.evidently_workspace))
    project = workspace.search_project(settings.evidently.project)[0]
    assert len(workspace.list_runs(project.id)) >= 1
