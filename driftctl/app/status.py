"""What `driftctl status` and the console report: stage health from heartbeats, the champion
from MLflow and the ledger, drift state per detector, dead letters and recent decisions.

Every source may be down: an unreachable broker, MLflow or ledger makes the parts it
feeds "unknown" and adds a line to `errors`; collecting status never raises for that.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text

from driftctl.app.health import UNKNOWN, StageHealth, assess_retrains, assess_stage, broker_answers, worst
from driftctl.app.history import group_incidents, incidents_table
from driftctl.settings import Settings, mask_url
from driftctl.stores.engine import open_engine, sqlite_path
from driftctl.stores.heartbeats import HealthStore
from driftctl.stores.ledger import ALIAS_MOVES, Entry, Ledger

DETECTORS = ("error-adwin", "data-ks")  # drift.detectors ErrorRateDetector.name, DataDriftDetector.name


def answer_quickly(timeout: float = 2.0) -> None:
    """A status read must not wait out MLflow's retries (minutes against a server that is down):
    one try, a short timeout. For the processes of `status` and `console` only, which only read;
    the probes' deadline (`health.status_timeout`) bounds them anyway."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(timeout))))


class Probe:
    """One source read in a daemon thread: whoever asks for its result waits until a deadline and
    no longer. A source that hangs (a server that accepts connections and never answers) leaves
    its thread behind, never the caller; the thread ends with its own connect timeout."""

    started: ClassVar[list[threading.Thread]] = []  # every probe's thread, to tell whether one is still running

    @classmethod
    def left_behind(cls) -> bool:
        """Whether a probe still runs (a source that hung): the process should not wait for it at exit."""
        return any(t.is_alive() for t in cls.started)

    def __init__(self, name: str, read: Callable[[], Any]):
        self.name = name
        self.value: Any = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(read,), name=f"status-{name}", daemon=True)
        self._thread.start()
        Probe.started[:] = [t for t in Probe.started if t.is_alive()] + [self._thread]

    def _run(self, read: Callable[[], Any]) -> None:
        try:
            self.value = read()
        except BaseException as exc:  # an unreachable source is reported, not raised
            self.error = exc
        finally:
            self._done.set()

    def result(self, deadline: float, budget: float) -> tuple[Any, str | None]:
        """(value, None), or (None, why it is unknown) when it failed or missed `deadline` (monotonic)."""
        if not self._done.wait(max(0.0, deadline - time.monotonic())):
            return None, f"no answer within {budget:g} s"
        if self.error is not None:
            return None, _one_line(self.error)
        return self.value, None


@dataclass(frozen=True)
class Champion:
    name: str
    version: int
    run_id: str


def _read_mlflow(settings: Settings) -> Champion | None:
    """The champion alias, read without importing MLflow where possible (its import alone takes
    1.5-3.5 s, most of the deadline): over the REST API from a tracking server, or from the SQLite
    store's tables; the MLflow client otherwise, or when the store's schema is not the one expected."""
    uri, name = settings.mlflow_uri, settings.mlflow.model_name
    if uri.startswith(("http://", "https://")):
        return _champion_over_rest(uri, name, settings.health.status_timeout)
    # A status read never creates MLflow's store: migrating a fresh SQLite file takes longer than
    # the deadline, and the process must not end in the middle of a migration.
    path = sqlite_path(uri)
    if path is not None:
        if not path.exists():
            return None
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)) as db:
                row = db.execute(_CHAMPION_SQL.replace(":name", "?"), (name,)).fetchone()
            return Champion(name, int(row[0]), row[1]) if row else None
        except sqlite3.Error:
            pass  # another schema (or none yet): MLflow itself
    elif uri.startswith(("postgresql", "mysql", "mssql")):  # a database store (MLflow's own server's backend)
        from sqlalchemy import text
        from sqlalchemy.exc import ProgrammingError

        engine = open_engine(uri)
        try:
            with engine.connect() as conn:
                row = conn.execute(text(_CHAMPION_SQL), {"name": name}).first()
            return Champion(name, int(row[0]), row[1]) if row else None
        except ProgrammingError:
            pass  # another schema: MLflow itself
        finally:
            engine.dispose()
    from training.registry import Registry  # MLflow takes seconds to import: only when status asks it

    ref = Registry.from_settings(settings).champion()
    return None if ref is None else Champion(ref.name, ref.version, ref.run_id)


_CHAMPION_SQL = ("SELECT a.version, v.run_id FROM registered_model_aliases a JOIN model_versions v "
                 "ON v.name = a.name AND v.version = a.version AND v.workspace = a.workspace "
                 "WHERE a.name = :name AND a.alias = 'champion' AND a.workspace = 'default'")


def _champion_over_rest(uri: str, name: str, timeout: float) -> Champion | None:
    """`GET /api/2.0/mlflow/registered-models/alias`, with the URL's or MLflow's own credentials."""
    parts = urllib.parse.urlsplit(uri)
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    query = urllib.parse.urlencode({"name": name, "alias": "champion"})
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/registered-models/alias?{query}")
    user = urllib.parse.unquote(parts.username or "") or os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = urllib.parse.unquote(parts.password or "") or os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        request.add_header("Authorization", f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}")
    elif user:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            version = json.loads(answer.read())["model_version"]
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        if exc.code == 404 or "RESOURCE_DOES_NOT_EXIST" in body or "INVALID_PARAMETER_VALUE" in body:
            return None
        raise RuntimeError(f"MLflow at {mask_url(uri)}: HTTP {exc.code} {body[:200]}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise RuntimeError(f"MLflow at {mask_url(uri)}: {getattr(exc, 'reason', exc)}") from None
    return Champion(name, int(version["version"]), version["run_id"])


def _read_ledger(settings: Settings, now: float) -> tuple[list, list, list[Entry]]:
    store = HealthStore.from_settings(settings)
    try:
        latest, recent = store.latest(), store.since(now - settings.health.lag_window)
    finally:
        store.close()
    ledger = Ledger.from_settings(settings)
    try:
        entries = ledger.entries(limit=2_000)
    finally:
        ledger.close()
    return latest, recent, entries


def _probe_broker(settings: Settings, bootstrap: str | None, budget: float) -> Probe:
    tls = settings.kafka.security_protocol in ("SSL", "SASL_SSL")
    return Probe("broker", lambda: broker_answers(bootstrap, timeout=budget * 0.8, tls=tls))


def collect_status(settings: Settings, now: float | None = None, decisions: int = 5,
                   incidents: int = 5) -> dict[str, Any]:
    """The whole operator's view as one JSON-able dict; `incidents` (the newest, oldest first)
    lead it: one per drift, with its events, decisions, retrain, outcome and probation.

    MLflow, the ledger's database and the broker are read at once, each in its own thread, and
    waited for `health.status_timeout` s at most: whatever is down or hung is "unknown", with
    the reason in `unknown` (by part) and in `errors`."""
    now = time.time() if now is None else now
    budget = settings.health.status_timeout
    deadline = time.monotonic() + budget
    configured = settings.kafka.bootstrap_servers or None
    mlflow_probe = Probe("mlflow", lambda: _read_mlflow(settings))
    ledger_probe = Probe("ledger", lambda: _read_ledger(settings, now))
    broker_probe = _probe_broker(settings, configured, budget) if configured else None

    report: dict[str, Any] = {"home": str(settings.home), "champion": None, "health": UNKNOWN, "errors": [],
                              "unknown": {}}
    report.update(at=now, stages=[], broker={"bootstrap": configured, "reachable": None},
                  dead_letters={"total": None, "rate": None}, drift=[], decisions=[], lineage=[], incidents=[],
                  open_incident=None, accuracy={"realised": None, "estimated": None})
    rules = settings.health

    ref, why = mlflow_probe.result(deadline, budget)
    if why:
        report["errors"].append(f"mlflow: {why}")
        where = "" if why.startswith("MLflow at") else f"MLflow at {settings.mlflow_uri}: "
        report["unknown"]["champion"] = where + why
    latest, recent, entries = [], [], []
    read, why = ledger_probe.result(deadline, budget)
    if why:
        report["errors"].append(f"ledger: {why}")
        report["unknown"]["ledger"] = f"ledger at {mask_url(settings.ledger_url)}: {why}"
    else:
        latest, recent, entries = read
    if ref is not None:
        champion = {"name": ref.name, "version": ref.version, "run_id": ref.run_id,
                    "promoted_at": None, "reason": None, "event_id": None, "decision_id": None}
        promotion = next((e for e in entries if e.kind == "promotion" and e.model_name == ref.name
                          and e.model_version == ref.version), None)
        if promotion is not None:
            trigger = promotion.payload.get("trigger", {})
            champion.update(promoted_at=promotion.at, reason=promotion.reason, event_id=promotion.event_id,
                            decision_id=trigger.get("decision_id"))
        report["champion"] = champion

    running = [b for b in latest if b.state == "running"]
    bootstrap = configured or (max(running or latest, key=lambda b: b.at).bootstrap if latest else None)
    if broker_probe is None and bootstrap:
        broker_probe = _probe_broker(settings, bootstrap, max(deadline - time.monotonic(), 0.2))
        deadline = max(deadline, time.monotonic() + 0.2)
    reachable: bool | None = None
    if broker_probe is not None:
        answer, why = broker_probe.result(deadline, budget)
        reachable, why = answer if answer is not None else (False, why)
        if not reachable:
            report["errors"].append(f"broker: nothing answers at {bootstrap} ({why})")
            report["unknown"]["broker"] = f"broker at {bootstrap}: {why}"
    else:
        report["unknown"]["broker"] = "no bootstrap servers configured and no stage heartbeat names one"
    report["broker"] = {"bootstrap": bootstrap, "reachable": reachable}

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
        dead = sum(s.dead_letters or 0 for s in scorers)
        seen = sum(s.records or 0 for s in scorers) + dead
        report["dead_letters"] = {"total": dead, "rate": round(dead / seen, 6) if seen else 0.0}

    monitor = next((b for b in sorted(latest, key=lambda b: -b.at) if b.stage == "monitor"), None)
    vitals = monitor.extra if monitor and monitor.state == "running" else {}
    report["open_incident"] = (vitals or {}).get("incident")
    # The champion's live accuracy: realised over its recent labelled records (the error detector's
    # window); estimated (label-free) only once the monitor reports one.
    report["accuracy"] = {"realised": (vitals or {}).get("accuracy"),
                          "estimated": (vitals or {}).get("estimated_accuracy")}
    grouped, _ = group_incidents(entries[::-1])
    report["incidents"] = [{k: v for k, v in i.items() if k != "entries"} for i in grouped[-incidents:]]
    report["drift"] = drift_state(entries, report["champion"], monitor.extra if monitor else {})
    report["decisions"] = [{"at": e.at, "action": e.payload.get("action"), "reason": e.reason,
                            "id": e.payload.get("id"),
                            "event_id": e.event_id, "model_version": e.model_version}
                           for e in entries if e.kind == "decision"][:decisions]
    report["lineage"] = [{"at": e.at, "kind": e.kind, "version": e.model_version, "reason": e.reason,
                          "event_id": e.event_id, "run_id": e.payload.get("run_id"),
                          "previous": (e.payload.get("previous") or {}).get("version")}
                         for e in entries if e.kind in ALIAS_MOVES]
    report["errors"] = [mask_url(e) for e in report["errors"]]  # a driver's message may quote the URL
    report["unknown"] = {part: mask_url(why) for part, why in report["unknown"].items()}
    return report


def drift_state(entries: list[Entry], champion: dict[str, Any] | None,
                vitals: dict[str, Any]) -> list[dict[str, Any]]:
    """Per detector: events so far, the last one, and whether it is still open.

    A detector is "drift" when it fired after the current champion was promoted (nothing
    has answered it yet), "stable" when its last event came before (a retrain answered it),
    "quiet" when it never fired."""
    events: list[tuple[float, dict]] = []  # (at, event payload), newest first, folded ones included
    for e in entries:
        if e.kind == "drift_event":
            events.append((e.at, e.payload))
        elif e.kind == "incident_update":
            events += [(e.at, folded) for folded in reversed(e.payload.get("evidence") or [])]
    promoted_at = (champion or {}).get("promoted_at") or 0.0
    live = (vitals or {}).get("detectors", {})
    names = list(dict.fromkeys([*DETECTORS, *live, *(p.get("detector") for _, p in events)]))
    states = []
    for name in names:
        mine = [(at, p) for at, p in events if p.get("detector") == name]
        at, last = mine[0] if mine else (None, None)  # entries come newest first
        # `at` and `last` come from one event: both set, or both None.
        state = "quiet" if last is None or at is None else ("drift" if at >= promoted_at else "stable")
        states.append({
            "detector": name, "state": state, "events": len(mine),
            "last_event": None if last is None else {
                "at": at, "id": last.get("id"), "index": last.get("index"),
                "statistic": last.get("statistic"), "threshold": last.get("threshold"),
                "kind": last.get("kind")},
            "live": live.get(name),
        })
    return states


def _one_line(exc: BaseException) -> str:
    text = mask_url(exc).strip().splitlines()
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


def status_view(report: dict[str, Any]) -> Group:
    """A rich renderable of `collect_status`'s report."""

    now = report.get("at") or time.time()
    health = report["health"]
    reachable = report["broker"]["reachable"]
    broker = "unknown" if reachable is None else "up" if reachable else "unreachable"
    bootstrap = report["broker"]["bootstrap"] or "-"
    parts: list = [Text.assemble("driftctl ", (health.upper(), f"bold {_COLOURS.get(health, '')}"),
                                 f"   home {report['home']}   broker {bootstrap} ({broker})")]
    parts.append(incidents_table(report.get("incidents") or [], title="incidents (newest last)",
                                 open_id=report.get("open_incident")))
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
    realised, estimated = accuracy.get("realised"), accuracy.get("estimated")
    if realised is not None or estimated is not None:
        # Estimated: label-free (calibrated confidence of the newest served records, most unlabelled).
        table.add_row("accuracy", f"realised {'-' if realised is None else f'{realised:.3f}'} (recent labelled), "
                                  f"estimated {'-' if estimated is None else f'{estimated:.3f}'} (label-free)")
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
