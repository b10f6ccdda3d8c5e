"""What `driftctl status` and the console report: stage health from heartbeats, the champion
from MLflow and the ledger, drift state per detector, dead letters and recent decisions.

Every source may be down: an unreachable broker, MLflow or ledger makes the parts it
feeds "unknown" and adds a line to `errors`; collecting status never raises for that.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from driftctl.app.health import UNKNOWN, StageHealth, assess_retrains, assess_stage, broker_reachable, worst
from driftctl.settings import Settings
from driftctl.stores.heartbeats import HealthStore
from driftctl.stores.ledger import Ledger

DETECTORS = ("error-adwin", "data-ks")  # drift.detectors ErrorRateDetector.name, DataDriftDetector.name


def answer_quickly() -> None:
    """A status read must not wait out MLflow's retries (minutes against a server that is down):
    one try, five seconds. For the processes of `status` and `console` only, which only read."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def champion_status(settings: Settings) -> dict[str, Any]:
    from training.registry import Registry  # MLflow takes seconds to import: only when status asks it

    status: dict[str, Any] = {"home": str(settings.home), "champion": None, "health": "unknown", "errors": []}
    try:
        ref = Registry.from_settings(settings).champion()
    except Exception as exc:  # an unreachable store is reported, not raised
        status["errors"].append(f"mlflow: {_one_line(exc)}")
        return status
    if ref is None:
        status["health"] = "unknown"
        return status
    champion = {"name": ref.name, "version": ref.version, "run_id": ref.run_id,
                "promoted_at": None, "reason": None, "event_id": None, "decision_id": None}
    try:
        ledger = Ledger(settings.ledger_url)
        promotion = ledger.last_promotion(ref.name, ref.version)
        ledger.close()
    except Exception as exc:
        status["errors"].append(f"ledger: {_one_line(exc)}")
        promotion = None
    if promotion is not None:
        trigger = promotion.payload.get("trigger", {})
        champion.update(promoted_at=promotion.at, reason=promotion.reason, event_id=promotion.event_id,
                        decision_id=trigger.get("decision_id"))
    status["champion"] = champion
    return status


def collect_status(settings: Settings, now: float | None = None, decisions: int = 5) -> dict[str, Any]:
    """The whole operator's view as one JSON-able dict."""
    now = time.time() if now is None else now
    report = champion_status(settings)
    report.update(at=now, stages=[], broker={"bootstrap": settings.kafka.bootstrap_servers or None,
                                             "reachable": None},
                  dead_letters={"total": None, "rate": None}, drift=[], decisions=[], lineage=[])
    rules = settings.health

    latest, recent, entries = [], [], []
    try:
        store = HealthStore(settings.ledger_url)
        try:
            latest = store.latest()
            recent = store.since(now - rules.lag_window)
        finally:
            store.close()
    except Exception as exc:
        report["errors"].append(f"heartbeats: {_one_line(exc)}")
    try:
        ledger = Ledger(settings.ledger_url)
        try:
            entries = ledger.entries(limit=2_000)
        finally:
            ledger.close()
    except Exception as exc:
        if not any(e.startswith("ledger:") for e in report["errors"]):
            report["errors"].append(f"ledger: {_one_line(exc)}")

    running = [b for b in latest if b.state == "running"]
    bootstrap = settings.kafka.bootstrap_servers or (max(running or latest, key=lambda b: b.at).bootstrap
                                                     if latest else None)
    reachable = broker_reachable(bootstrap)
    report["broker"] = {"bootstrap": bootstrap, "reachable": reachable}
    if reachable is False:
        report["errors"].append(f"broker: nothing answers at {bootstrap}")

    live_stages = {b.stage for b in running}
    shown = [b for b in latest if b.state == "running" or b.stage not in live_stages]
    stages: list[StageHealth] = [assess_stage(b, recent, now=now, rules=rules, broker_reachable=reachable)
                                 for b in shown]
    retrains = assess_retrains(entries, now=now, rules=rules)
    if retrains is not None:
        stages.append(retrains)
    order = {"producer": 0, "scorer": 1, "monitor": 2, "retrain": 3}
    stages.sort(key=lambda s: (order.get(s.stage, 9), s.instance))
    report["stages"] = [s.as_dict() for s in stages]
    report["health"] = worst(s.health for s in stages) if stages else UNKNOWN

    scorers = [s for s in stages if s.stage == "scorer" and s.dead_letters is not None]
    if scorers:
        dead = sum(s.dead_letters for s in scorers)
        seen = sum(s.records or 0 for s in scorers) + dead
        report["dead_letters"] = {"total": dead, "rate": round(dead / seen, 6) if seen else 0.0}

    monitor = next((b for b in sorted(latest, key=lambda b: -b.at) if b.stage == "monitor"), None)
    report["drift"] = drift_state(entries, report["champion"], monitor.extra if monitor else {})
    vitals = (monitor.extra if monitor else None) or {}
    if "estimated_accuracy" in vitals or "accuracy" in vitals:
        # Realised over the champion's labelled records; estimated (label-free, calibrated confidence)
        # over the newest served records, most of them without a label yet.
        report["accuracy"] = {"recent": vitals.get("accuracy"), "estimated": vitals.get("estimated_accuracy")}
    report["decisions"] = [{"at": e.at, "action": e.payload.get("action"), "reason": e.reason,
                            "id": e.payload.get("id"),
                            "event_id": e.event_id, "model_version": e.model_version}
                           for e in entries if e.kind == "decision"][:decisions]
    report["lineage"] = [{"at": e.at, "kind": e.kind, "version": e.model_version, "reason": e.reason,
                          "event_id": e.event_id, "run_id": e.payload.get("run_id"),
                          "previous": (e.payload.get("previous") or {}).get("version")}
                         for e in entries if e.kind in ("promotion", "rollback")]
    return report


def drift_state(entries, champion: dict | None, vitals: dict) -> list[dict[str, Any]]:
    """Per detector: events so far, the last one, and whether it is still open.

    A detector is "drift" when it fired after the current champion was promoted (nothing
    has answered it yet), "stable" when its last event came before (a retrain answered it),
    "quiet" when it never fired."""
    events = [e for e in entries if e.kind == "drift_event"]
    promoted_at = (champion or {}).get("promoted_at") or 0.0
    live = (vitals or {}).get("detectors", {})
    names = list(dict.fromkeys([*DETECTORS, *live, *(e.payload.get("detector") for e in events)]))
    states = []
    for name in names:
        mine = [e for e in events if e.payload.get("detector") == name]
        last = mine[0] if mine else None  # entries come newest first
        state = "quiet" if last is None else ("drift" if last.at >= promoted_at else "stable")
        states.append({
            "detector": name, "state": state, "events": len(mine),
            "last_event": None if last is None else {
                "at": last.at, "id": last.event_id, "index": last.payload.get("index"),
                "statistic": last.payload.get("statistic"), "threshold": last.payload.get("threshold"),
                "kind": last.payload.get("kind")},
            "live": live.get(name),
        })
    return states


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# -- the terminal view ------------------------------------------------------------------------
_COLOURS = {"healthy": "green", "warning": "yellow", "critical": "red", "unknown": "dim", "drift": "red",
            "stable": "green", "quiet": "dim"}


def _when(at: float | None, now: float) -> str:
    if not at:
        return "-"
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{stamp} ({_ago(now - at)} ago)"


def _ago(seconds: float) -> str:
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7_200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3_600:.1f} h"


def status_view(report: dict[str, Any]):
    """A rich renderable of `collect_status`'s report."""

    now = report.get("at") or time.time()
    health = report["health"]
    reachable = report["broker"]["reachable"]
    broker = "unknown" if reachable is None else "up" if reachable else "unreachable"
    parts: list = [Text.assemble("driftctl ", (health.upper(), f"bold {_COLOURS.get(health, '')}"),
                                 f"   home {report['home']}   broker {report['broker']['bootstrap'] or '-'} "
                                 f"({broker})")]
    stages = Table(title="stages", title_justify="left", expand=False)
    for column in ("stage", "instance", "health", "reason", "records/s", "lag", "dead letters", "model"):
        stages.add_column(column, justify="right" if column in ("records/s", "lag", "dead letters") else "left")
    for s in report["stages"]:
        lag = "-" if s["lag"] is None else f"{s['lag']:,}"
        if s["lag_detail"] and len(s["lag_detail"]) <= 6:
            lag += "\n" + " ".join(f"{k}:{v}" for k, v in sorted(s["lag_detail"].items()))
        stages.add_row(s["stage"], s["instance"], Text(s["health"], style=_COLOURS.get(s["health"], "")), s["reason"],
                       "-" if s["rps"] is None else f"{s['rps']:,.0f}", lag,
                       "-" if s["dead_letters"] is None else f"{s['dead_letters']:,}",
                       "-" if s["model_version"] is None else f"v{s['model_version']}")
    if not report["stages"]:
        stages.add_row("-", "-", Text("unknown", style="dim"), "no heartbeat recorded yet", "-", "-", "-", "-")
    parts.append(stages)

    champion = report["champion"]
    table = Table(title="champion", title_justify="left", show_header=False)
    if champion is None:
        table.add_row("model", "unknown (no champion in MLflow, or MLflow unreachable)")
    else:
        table.add_row("model", f"{champion['name']} version {champion['version']}  run {champion['run_id']}")
        table.add_row("promoted at", _when(champion["promoted_at"], now))
        table.add_row("why", champion["reason"] or "-")
        table.add_row("drift event", champion["event_id"] or "-")
    accuracy = report.get("accuracy") or {}
    if accuracy:
        recent, estimated = accuracy.get("recent"), accuracy.get("estimated")
        table.add_row("accuracy", f"recent labelled {'-' if recent is None else f'{recent:.3f}'}, estimated "
                                  f"label-free {'-' if estimated is None else f'{estimated:.3f}'}")
    dead = report["dead_letters"]
    table.add_row("dead letters", "unknown" if dead["total"] is None else f"{dead['total']:,} ({dead['rate']:.2%})")
    parts.append(table)

    drift = Table(title="drift", title_justify="left")
    for column in ("detector", "state", "events", "last fired", "statistic / threshold", "now"):
        drift.add_column(column)
    for d in report["drift"]:
        last = d["last_event"]
        live = d["live"] or {}
        now_text = "-"
        if "threshold" in live:
            now_text = f"{live['statistic']:.3g} vs {live['threshold']:.3g}"
        elif "statistic" in live:
            now_text = f"error rate {live['statistic']:.3f}"
        drift.add_row(d["detector"], Text(d["state"], style=_COLOURS.get(d["state"], "")), str(d["events"]),
                      _when(last["at"], now) if last else "-",
                      f"{last['statistic']:.4g} / {last['threshold']:.4g}" if last else "-", now_text)
    parts.append(drift)

    decisions = Table(title="last decisions", title_justify="left")
    for column in ("at", "action", "reason"):
        decisions.add_column(column)
    for d in report["decisions"]:
        decisions.add_row(_when(d["at"], now), d["action"] or "-", d["reason"] or "-")
    if not report["decisions"]:
        decisions.add_row("-", "-", "none yet")
    parts.append(decisions)
    if report["errors"]:
        parts.append(Text("\n".join(f"! {e}" for e in report["errors"]), style="yellow"))
    return Group(*parts)
