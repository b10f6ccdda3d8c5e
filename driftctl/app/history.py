"""What `driftctl history` reports: the ledger's timeline grouped by incident (one per drift:
its events, decisions, retrains, promotion or rejection, and probation result), the entries
that belong to no incident, and which version served when."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from driftctl.settings import Settings
from driftctl.stores.ledger import OUTCOMES, Entry, Ledger


def ledger_history(settings: Settings, *, limit: int | None = None, include_windows: bool = False) -> dict[str, Any]:
    ledger = Ledger.from_settings(settings)
    try:
        entries = ledger.timeline(include_windows=include_windows, limit=limit)
        aliases = ledger.alias_history(settings.mlflow.model_name)
    finally:
        ledger.close()
    incidents, others = group_incidents(entries)
    return {"model": settings.mlflow.model_name, "ledger": settings.ledger_url.split("@")[-1],
            "champion_history": aliases, "incidents": incidents, "other_entries": [asdict(e) for e in others],
            "entries": [asdict(e) for e in entries]}


def incident_of(entry: Entry) -> str | None:
    """The incident an entry belongs to: events and decisions carry it, a retrain's outcome in
    its trigger, a probation's verdict (keep, or an automatic rollback) beside its evidence."""
    payload = entry.payload or {}
    return (payload.get("incident") or (payload.get("trigger") or {}).get("incident")
            or (payload.get("evidence") or {}).get("incident"))


def _event(payload: dict[str, Any], at: float | None = None) -> dict[str, Any]:
    return {"id": payload.get("id"), "detector": payload.get("detector"), "kind": payload.get("kind"),
            "index": payload.get("index"), "statistic": payload.get("statistic"),
            "threshold": payload.get("threshold"), "at": payload.get("at", at)}


def group_incidents(entries: list[Entry]) -> tuple[list[dict[str, Any]], list[Entry]]:
    """Entries oldest first -> (incidents oldest first, the entries of no incident).

    >>> from driftctl.stores.ledger import Entry
    >>> def row(i, kind, **payload):
    ...     return Entry(i, float(i), kind, "m", 1, None, kind, payload)
    >>> incidents, others = group_incidents([
    ...     row(1, "decision", action="retrain", id="d0"),
    ...     row(2, "incident", incident="I", detector="error-adwin", index=900, statistic=0.2, threshold=0.05),
    ...     row(3, "drift_event", incident="I", id="e1", detector="error-adwin", index=900),
    ...     row(4, "decision", incident="I", action="alert", id="d1"),
    ...     row(5, "incident_update", incident="I", folded=2, holds=2,
    ...         evidence=[{"id": "e2", "detector": "data-ks"}, {"id": "e3", "detector": "data-ks"}]),
    ...     row(6, "decision", incident="I", action="retrain", id="d2", window=[900, 2400]),
    ...     row(7, "promotion", trigger={"incident": "I", "decision_id": "d2"}, run_id="r2"),
    ...     row(8, "decision", incident="I", action="keep", probation={"version": 2}),
    ... ])
    >>> [e.id for e in others], len(incidents)
    ([1], 1)
    >>> i = incidents[0]
    >>> i["events"], i["by_detector"], i["held"], i["state"]
    (3, {'error-adwin': 1, 'data-ks': 2}, 2, 'promoted v2, kept after probation')
    >>> [(r["decision_id"], r["outcome"]) for r in i["retrains"]]
    [('d2', 'promotion')]
    """
    incidents: dict[str, dict[str, Any]] = {}
    others: list[Entry] = []
    for entry in entries:
        key = incident_of(entry)
        if key is None:
            others.append(entry)
            continue
        incident = incidents.get(key)
        if incident is None:
            incident = incidents[key] = {
                "id": key, "opened_at": entry.at, "updated_at": entry.at, "model_version": entry.model_version,
                "opened_by": None, "events": 0, "by_detector": {}, "evidence": [], "decisions": [], "held": 0,
                "retrains": [], "probation": None, "reinstated": None, "state": "open", "entries": []}
        incident["updated_at"] = entry.at
        incident["entries"].append(entry.id)
        payload = entry.payload or {}
        if entry.kind == "incident":
            incident["opened_by"] = {"event_id": entry.event_id, **{k: payload.get(k) for k in (
                "detector", "kind", "index", "statistic", "threshold")}}
        elif entry.kind == "drift_event":
            incident["evidence"].append(_event(payload, entry.at))
        elif entry.kind == "incident_update":
            incident["evidence"] += [_event(e, entry.at) for e in payload.get("evidence") or []]
            incident["held"] += int(payload.get("holds") or 0)
        elif entry.kind == "decision" and payload.get("probation") is not None:
            incident["probation"] = {"verdict": payload.get("action"), "at": entry.at, "reason": entry.reason,
                                     **payload["probation"]}
        elif entry.kind == "decision":
            incident["decisions"].append({"at": entry.at, "action": payload.get("action"), "id": payload.get("id"),
                                          "reason": entry.reason})
            if payload.get("action") == "retrain":
                incident["retrains"].append({"decision_id": payload.get("id"), "window": payload.get("window"),
                                             "at": entry.at, "outcome": None, "version": None, "run_id": None,
                                             "reason": None})
        elif entry.kind in OUTCOMES:
            decision_id = (payload.get("trigger") or {}).get("decision_id")
            retrain = next((r for r in incident["retrains"] if r["decision_id"] == decision_id), None)
            if retrain is None:
                retrain = {"decision_id": decision_id, "window": None, "at": entry.at}
                incident["retrains"].append(retrain)
            # The challenger-against-champion verdict says more than the trigger's reason repeated.
            retrain.update(outcome=entry.kind, version=entry.model_version, run_id=payload.get("run_id"),
                           reason=(payload.get("evaluation") or {}).get("reason") or entry.reason, outcome_at=entry.at)
        elif entry.kind == "reinstatement":  # an archived champion back, no training (DriftSettings.archive)
            incident["reinstated"] = {"at": entry.at, "version": entry.model_version, "reason": entry.reason}
        elif entry.kind == "rollback":
            incident["probation"] = {"verdict": "rollback", "at": entry.at, "reason": entry.reason,
                                     **((payload.get("evidence") or {}).get("probation") or {})}
    for incident in incidents.values():
        if incident["opened_by"] is None and incident["evidence"]:
            first = incident["evidence"][0]
            incident["opened_by"] = {"event_id": first["id"], **{k: first[k] for k in (
                "detector", "kind", "index", "statistic", "threshold")}}
        counts = Counter(e["detector"] for e in incident["evidence"])
        incident["events"], incident["by_detector"] = sum(counts.values()), dict(counts)
        incident["state"] = incident_state(incident)
    return list(incidents.values()), others


def incident_state(incident: dict[str, Any]) -> str:
    """Where an incident stands, in a few words: what its last step was."""
    probation = incident["probation"]
    if incident.get("reinstated") is not None and (probation is None or probation["at"] < incident["reinstated"]["at"]):
        return f"reinstated v{incident['reinstated']['version']} (no training)"
    if probation is not None:
        version = probation.get("version")
        if probation["verdict"] == "rollback":
            return f"rolled back from v{version}" if version else "rolled back"
        return f"promoted v{version}, kept after probation" if version else "kept after probation"
    if incident["retrains"]:
        last = incident["retrains"][-1]
        outcome = last.get("outcome")
        if outcome is None:
            return "retraining"
        if outcome == "promotion":
            return f"promoted v{last['version']}"
        return {"rejection": "challenger rejected", "failure": "retrain failed", "skipped": "retrain skipped"}.get(
            outcome, outcome)
    actions = [d["action"] for d in incident["decisions"]]
    if "alert" in actions:
        return "collecting labelled records"
    return "held" if actions else "open"


# -- the terminal view (readable in 80 columns) -------------------------------------------------
def _at(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at, UTC).strftime("%m-%d %H:%M:%S")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def incident_steps(incident: dict[str, Any]) -> list[tuple[float | None, str, str]]:
    """An incident as (at, step, detail) lines, in order: what fired, what was decided, how the
    retrain ended, the probation's verdict."""
    steps: list[tuple[float | None, str, str]] = []
    first = incident["opened_by"] or {}
    detectors = ", ".join(f"{name} x{n}" for name, n in incident["by_detector"].items())
    steps.append((incident["opened_at"], "drift",
                  f"{first.get('detector')} at record {first.get('index')} ({_num(first.get('statistic'))} vs "
                  f"{_num(first.get('threshold'))}); {incident['events']} event(s): {detectors or '-'}"))
    outcomes = {r["decision_id"]: r for r in incident["retrains"]}
    for d in incident["decisions"]:
        steps.append((d["at"], d["action"] or "-", d["reason"] or "-"))
        retrain = outcomes.get(d["id"])
        if retrain is not None and retrain.get("outcome"):
            version = f" v{retrain['version']}" if retrain.get("version") else ""
            steps.append((retrain.get("outcome_at"), f"{retrain['outcome']}{version}", retrain.get("reason") or "-"))
    for r in incident["retrains"]:  # outcomes whose decision is not in view (--limit)
        if r["decision_id"] not in {d["id"] for d in incident["decisions"]} and r.get("outcome"):
            steps.append((r.get("outcome_at"), r["outcome"], r.get("reason") or "-"))
    if incident["held"]:
        steps.append((None, "folded", f"{incident['held']} later decision(s) on the folded events (holds, "
                                      "repeated alerts) while the drift was acted on"))
    reinstated = incident.get("reinstated")
    if reinstated is not None:
        steps.append((reinstated["at"], f"reinstated v{reinstated['version']}", reinstated.get("reason") or "-"))
    probation = incident["probation"]
    if probation is not None:
        steps.append((probation["at"], f"probation {probation['verdict']}", probation.get("reason") or "-"))
    return steps


def incidents_table(incidents: list[dict[str, Any]], *, title: str = "incidents", open_id: str | None = None) -> Table:
    """One section per incident, newest last: its header, then its steps."""
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("at (UTC)", no_wrap=True)
    table.add_column("step", overflow="fold")
    table.add_column("detail", overflow="fold", ratio=1)
    for incident in incidents:
        short = incident["id"].removeprefix("incident-")
        state = incident["state"] + (" (open)" if incident["id"] == open_id else "")
        table.add_row(Text(_at(incident["opened_at"]), style="bold"), Text(f"incident {short}", style="bold"),
                      Text(state, style="bold"))
        for at, step, detail in incident_steps(incident):
            table.add_row(_at(at) if at else "", step, detail)
        table.add_section()
    if not incidents:
        table.add_row("-", "-", "no drift recorded")
    return table


def history_view(report: dict[str, Any]) -> Group:
    """`driftctl history` in the terminal: the champion's history, incidents, then the rest."""
    served = Table(title=f"champion history of {report['model']}", title_justify="left")
    served.add_column("v", justify="right")
    served.add_column("deployed (UTC)", no_wrap=True)
    served.add_column("by")
    served.add_column("until", no_wrap=True)
    served.add_column("why", overflow="fold", ratio=1)
    for h in report["champion_history"]:
        until = "serving" if h["undeployed_at"] is None else f"{_at(h['undeployed_at'])}\n{h['undeployed_by']}"
        served.add_row(str(h["version"]), _at(h["deployed_at"]), h["deployed_by"], until, h["reason"] or "")
    other = Table(title="other entries (no drift: bootstraps, schedules, rollbacks by hand, checkpoints)",
                  title_justify="left")
    other.add_column("#", justify="right")
    other.add_column("at (UTC)", no_wrap=True)
    other.add_column("kind")
    other.add_column("v", justify="right")
    other.add_column("reason", overflow="fold", ratio=1)
    for e in report["other_entries"]:
        other.add_row(str(e["id"]), _at(e["at"]), e["kind"], str(e["model_version"] or "-"), e["reason"] or "")
    return Group(served, incidents_table(report["incidents"]), other)
