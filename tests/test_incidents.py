"""One drift, one incident: the monitor's ledger writer folds a storm of events, and history,
status and the console group by incident. No Kafka: a SQLite ledger and the pure policy."""

from __future__ import annotations

import io

from rich.console import Console

from drift.policy import DriftPolicy
from driftctl.app.history import group_incidents, history_view, ledger_history
from driftctl.app.status import collect_status, status_view
from driftctl.messages import DriftEvent
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from serving.incidents import IncidentLog

MODEL = {"name": "m", "version": 1, "run_id": "r1"}


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fire(policy: DriftPolicy, detector: str, index: int, labelled: int) -> DriftEvent:
    kind = "concept" if detector == "error-adwin" else "data"
    return DriftEvent(detector=detector, kind=kind, index=index, statistic=0.4, threshold=0.05, model=MODEL,
                      incident=policy.incident_at(labelled), evidence={"window": 500, "statistic": 0.4})


def drive(ledger: Ledger, clock: Clock) -> tuple[DriftPolicy, IncidentLog, list]:
    """A drift as the live demo saw it: one concept event, then 16 more while it was acted on."""
    policy = DriftPolicy(min_train_rows=100, data_persistence=1, cooldown=300)
    log = IncidentLog(ledger, flush_seconds=30, clock=clock)
    decisions = []

    def take(event: DriftEvent, labelled: int) -> None:
        log.event(event)
        decision = policy.on_event(event, change_at=labelled, labelled=labelled)
        decisions.append(decision)
        log.decision(decision, model_name="m", model_version=1)

    take(fire(policy, "error-adwin", 8100, 1000), 1000)
    for i in range(6):  # collecting: the data detectors agree
        take(fire(policy, "data-ks", 8110 + i, 1010 + i), 1010 + i)
    retrain = policy.on_labelled(1100)
    decisions.append(retrain)
    log.decision(retrain, model_name="m", model_version=1)
    for i in range(10):  # while the retrain is in flight
        clock.now += 1
        take(fire(policy, "prediction-ks", 8300 + i, 1200 + i), 1200 + i)
    ledger.append("promotion", reason="challenger wins", model_name="m", model_version=2, event_id="e",
                  payload={"trigger": {"decision_id": retrain.id, "incident": retrain.incident}, "run_id": "r2"})
    policy.on_retrain_finished(promoted=True, labelled=1300, window_end=1100)
    log.flush(retrain.incident)
    ledger.append("decision", reason="version 2 kept: 0.95 against 0.60", model_name="m", model_version=2,
                  payload={"action": "keep", "incident": retrain.incident,
                           "probation": {"version": 2, "previous_version": 1, "rows": 200}})
    return policy, log, decisions


def test_a_storm_of_events_is_one_incident_in_the_ledger(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.append("decision", reason="bootstrap", model_name="m", payload={"action": "retrain", "id": "d0"})
    _, log, decisions = drive(ledger, Clock())
    incident = decisions[0].incident
    assert {d.incident for d in decisions} == {incident}
    kinds = [e.kind for e in ledger.timeline()]
    # One incident row, one event row (the first), one alert, one retrain, the folded rest in one update.
    assert kinds.count("incident") == 1 and kinds.count("drift_event") == 1
    assert [e.payload["action"] for e in ledger.entries("decision") if e.payload.get("incident")] == \
        ["keep", "retrain", "alert"]
    updates = ledger.entries("incident_update")
    assert sum(u.payload["folded"] for u in updates) == 16 == log.folded
    assert updates[0].payload["events"] == 17
    assert all(e["incident"] == incident and "evidence" in e for u in updates for e in u.payload["evidence"])
    # Folded before the retrain decision that acted on them, and after it (written when the retrain ended).
    assert [u.payload["by_detector"] for u in updates][::-1] == [
        {"error-adwin": 1, "data-ks": 6}, {"error-adwin": 1, "data-ks": 6, "prediction-ks": 10}]

    incidents, others = group_incidents(ledger.timeline())
    assert [e.payload["id"] for e in others] == ["d0"]
    (one,) = incidents
    assert one["id"] == incident and one["events"] == 17
    assert one["by_detector"] == {"error-adwin": 1, "data-ks": 6, "prediction-ks": 10}
    assert [d["action"] for d in one["decisions"]] == ["alert", "retrain"]
    assert one["retrains"][0]["outcome"] == "promotion" and one["retrains"][0]["version"] == 2
    assert one["probation"]["verdict"] == "keep" and one["state"] == "promoted v2, kept after probation"
    assert one["held"] == 16  # 6 repeated alerts while collecting, 10 holds while retraining
    ledger.close()


def test_folded_events_are_written_at_most_every_flush_seconds(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    clock = Clock()
    policy = DriftPolicy(min_train_rows=10_000, data_persistence=1, cooldown=0)
    log = IncidentLog(ledger, flush_seconds=30, clock=clock)
    policy.change_at = 0  # collecting records after a change: the drift is being acted on
    for i in range(100):  # one event a second for 100 s
        clock.now = float(i)
        log.event(fire(policy, "data-ks", i, i))
    assert len(ledger.entries("incident")) == 1
    assert 3 <= len(ledger.entries("incident_update")) <= 4
    log.flush()
    assert sum(u.payload["folded"] for u in ledger.entries("incident_update")) == 99
    ledger.close()


def test_history_and_status_show_incidents_first_and_fit_80_columns(tmp_path):
    settings = Settings(home=tmp_path)
    ledger = Ledger(settings.ledger_url)
    ledger.append("decision", reason="bootstrap: no champion yet; training on the first 2000 labelled records",
                  model_name="m", payload={"action": "retrain", "id": "d0"})
    ledger.append("window", reason="latest 5000 labelled records", model_name="m", payload={"window": {}})
    drive(ledger, Clock())
    ledger.close()

    report = ledger_history(settings)
    assert len(report["incidents"]) == 1 and "window" not in {e["kind"] for e in report["entries"]}
    assert "window" in {e["kind"] for e in ledger_history(settings, include_windows=True)["other_entries"]}
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(history_view(report))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert text.index("incidents") < text.index("other entries")
    for words in ("incident", "promoted v2, kept after probation", "error-adwin at record 8100", "17 event(s)",
                  "probation keep", "promotion v2", "bootstrap"):
        assert words in text.replace("\n", " ") or words in text, (words, text)

    status = collect_status(settings)
    (incident,) = status["incidents"]
    assert incident["state"] == "promoted v2, kept after probation" and incident["events"] == 17
    assert {d["detector"]: d["events"] for d in status["drift"]}["prediction-ks"] == 10  # folded ones count
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(status_view(status))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert text.index("incidents") < text.index("stages")


def test_the_console_shows_the_incident_timeline(tmp_path):
    import json
    import os
    from pathlib import Path

    import pytest

    from driftctl.app.console import asset, console_state, render_page

    settings = Settings(home=tmp_path)
    ledger = Ledger(settings.ledger_url)
    drive(ledger, Clock())
    ledger.close()
    state = console_state(settings)
    (incident,) = state["incidents"]
    assert [s["step"] for s in incident["steps"]] == ["drift", "alert", "retrain", "promotion v2", "folded",
                                                      "probation keep"]
    assert {"incident", "incident_update"} <= {t["kind"] for t in state["timeline"]}
    page = render_page(state)
    assert 'id="incidents"' in page and "estimated: not available yet" in page
    json.loads(page.split('type="application/json">', 1)[1].split("</script>", 1)[0])

    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        pytest.fail(f"{chromium} missing: `make chromium` installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        try:
            tab = browser.new_page()
            # No server here: the page's script (served at /static/console.js) goes inline.
            tab.set_content(page.replace('<script src="/static/console.js"></script>',
                                         f"<script>{asset('console.js')}</script>"))
            drawn = tab.inner_text("#incidents")
        finally:
            browser.close()
    assert "promoted v2, kept after probation" in drawn and "probation keep" in drawn and "17 event(s)" in drawn
