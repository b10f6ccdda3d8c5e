"""Stage heartbeats and the health rules `status` and `console` judge them by.

Each stage (producer, every scorer, the monitor) writes a heartbeat row every
`health.heartbeat_interval` seconds to the `heartbeat` table beside the ledger (same
SQLAlchemy URL): records so far, records/s since the last beat, consumer lag per
topic-partition as the stage's own consumer sees it (position against the highwater
of its last fetch), dead letters and the model version it serves.

Lag is approximate on the embedded Tansu broker: it reports high watermarks per batch,
not per record, so lag there reads low by up to one producer batch (real Kafka is exact).
Status reads lag as a health signal only, never to decide that a topic was read to its end.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import (JSON, Column, Float, Index, Integer, MetaData, String, Table, create_engine, delete, event,
                        func, insert, select)
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)

HEALTHY, WARNING, CRITICAL, UNKNOWN = "healthy", "warning", "critical", "unknown"
_SEVERITY = {HEALTHY: 0, UNKNOWN: 1, WARNING: 2, CRITICAL: 3}

metadata = MetaData()
heartbeats = Table(
    "heartbeat",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),
    Column("stage", String(64), nullable=False, index=True),
    Column("instance", String(128), nullable=False),
    Column("state", String(16), nullable=False),  # running | stopped
    Column("records", Integer, nullable=False),
    Column("rps", Float, nullable=False),
    Column("lag", Integer),  # sum over the partitions, None when the stage consumes nothing
    Column("lag_detail", JSON),  # {"topic[partition]": lag}
    Column("group_id", String(200)),
    Column("dead_letters", Integer, nullable=False),
    Column("model_version", Integer),
    Column("bootstrap", String(500)),
    Column("extra", JSON),
    Index("ix_heartbeat_stage_instance", "stage", "instance", "id"),
)


def _engine(url: str):
    options: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        options["connect_args"] = {"timeout": 30}
    engine = create_engine(url, **options)
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection, _record):  # readers (status, console) never block the stages
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
    return engine


@dataclass(frozen=True)
class Beat:
    at: float
    stage: str
    instance: str
    state: str
    records: int
    rps: float
    lag: int | None
    lag_detail: dict[str, int]
    group_id: str | None
    dead_letters: int
    model_version: int | None
    bootstrap: str | None
    extra: dict[str, Any]
    id: int | None = None


def create_tables(engine, tables: MetaData) -> None:
    """`create_all` that tolerates another process creating the same tables at the same moment
    (stages start together on a fresh database: check-then-create races, and SQLite answers
    "database is locked" at once, without waiting, to a reader that would deadlock a writer)."""
    attempts = 10
    for attempt in range(attempts):
        try:
            tables.create_all(engine)
            return
        except OperationalError as exc:
            if not ("already exists" in str(exc) or "locked" in str(exc)) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


class HealthStore:
    """The heartbeat table, in the ledger's database."""

    def __init__(self, url: str):
        self.url = url
        self.engine = _engine(url)
        create_tables(self.engine, metadata)

    def write(self, beat: Beat) -> None:
        row = {k: v for k, v in asdict(beat).items() if k != "id"}
        with self.engine.begin() as conn:
            conn.execute(insert(heartbeats).values(**row))

    def prune(self, older_than: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(heartbeats).where(heartbeats.c.at < older_than))

    def latest(self) -> list[Beat]:
        """The newest heartbeat of every stage instance."""
        newest = select(func.max(heartbeats.c.id)).group_by(heartbeats.c.stage, heartbeats.c.instance)
        query = select(heartbeats).where(heartbeats.c.id.in_(newest)).order_by(heartbeats.c.stage,
                                                                                 heartbeats.c.instance)
        with self.engine.connect() as conn:
            return [Beat(**row._mapping) for row in conn.execute(query)]

    def since(self, at: float, stage: str | None = None) -> list[Beat]:
        """Heartbeats newer than `at`, oldest first."""
        query = select(heartbeats).where(heartbeats.c.at >= at).order_by(heartbeats.c.id)
        if stage:
            query = query.where(heartbeats.c.stage == stage)
        with self.engine.connect() as conn:
            return [Beat(**row._mapping) for row in conn.execute(query)]

    def close(self) -> None:
        self.engine.dispose()


def consumer_lag(consumer) -> dict[str, int]:
    """Records behind per assigned topic-partition: highwater of the last fetch minus position.

    Partitions not fetched yet have no highwater and are left out. Approximate on Tansu
    (per-batch high watermarks: reads low by up to one batch)."""
    lag: dict[str, int] = {}
    try:
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            position = consumer.position(tp, timeout_ms=50)
            if position is not None:
                lag[f"{tp.topic}[{tp.partition}]"] = max(0, high - position)
    except Exception as exc:  # a rebalance in progress: no lag this beat
        log.debug("no lag this beat: %s", exc)
    return lag


class Heartbeat:
    """A stage's heartbeat: call `beat()` on every loop turn; it writes at most once per interval.

    A failed write is logged and retried on the next interval: health is advisory, and
    a stage never stops scoring because its heartbeat could not be written.
    """

    def __init__(self, store: HealthStore | str | None, stage: str, *, bootstrap: str | None = None,
                 group_id: str | None = None, interval: float = 2.0, retention: float = 86_400.0,
                 instance: str | None = None, clock: Callable[[], float] = time.time):
        self.store = store
        self.stage = stage
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.interval = interval
        self.retention = retention
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}"
        self.clock = clock
        self._last_at: float | None = None
        self._last_records = 0
        self._last_prune = 0.0

    @classmethod
    def from_settings(cls, settings, stage: str, bootstrap: str | None = None, group_id: str | None = None,
                      instance: str | None = None) -> "Heartbeat":
        interval = settings.health.heartbeat_interval
        store = settings.ledger_url if interval > 0 else None  # opened on the first beat
        return cls(store, stage, bootstrap=bootstrap, group_id=group_id, interval=interval,
                   retention=settings.health.retention, instance=instance)

    def beat(self, consumer=None, *, records: int, dead_letters: int = 0, model_version: int | None = None,
             extra: Callable[[], dict] | dict | None = None, state: str = "running", force: bool = False) -> bool:
        if self.store is None:
            return False
        now = self.clock()
        if not force and self._last_at is not None and now - self._last_at < self.interval:
            return False
        elapsed = now - self._last_at if self._last_at is not None else None
        rps = (records - self._last_records) / elapsed if elapsed else 0.0
        lag = consumer_lag(consumer) if consumer is not None else {}
        try:
            if isinstance(self.store, str):
                self.store = HealthStore(self.store)
            details = extra() if callable(extra) else (extra or {})
            self.store.write(Beat(
                at=now, stage=self.stage, instance=self.instance, state=state, records=int(records),
                rps=round(max(rps, 0.0), 2), lag=sum(lag.values()) if consumer is not None else None,
                lag_detail=lag, group_id=self.group_id, dead_letters=int(dead_letters),
                model_version=model_version, bootstrap=self.bootstrap, extra=details))
            if now - self._last_prune > 600:
                self._last_prune = now
                self.store.prune(now - self.retention)
        except Exception as exc:
            log.warning("heartbeat of %s not written: %s", self.stage, exc)
            return False
        finally:
            self._last_at, self._last_records = now, records
        return True

    def stopped(self, *, records: int, dead_letters: int = 0, model_version: int | None = None) -> None:
        """The last beat of a stage that ends on purpose: status says "stopped", not "no heartbeat"."""
        self.beat(None, records=records, dead_letters=dead_letters, model_version=model_version,
                  state="stopped", force=True)
        if isinstance(self.store, HealthStore):
            self.store.close()


# -- the rules -------------------------------------------------------------------------------
@dataclass
class StageHealth:
    stage: str
    instance: str
    health: str
    reason: str
    records: int | None = None
    rps: float | None = None
    lag: int | None = None
    lag_detail: dict[str, int] = field(default_factory=dict)
    group_id: str | None = None
    dead_letters: int | None = None
    model_version: int | None = None
    last_heartbeat: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def worst(healths: Iterable[str]) -> str:
    """The overall health: critical > warning > unknown > healthy; nothing known: unknown.

    >>> worst(["healthy", "warning"]), worst(["healthy", "unknown"]), worst([])
    ('warning', 'unknown', 'unknown')
    """
    healths = list(healths)
    return max(healths, key=_SEVERITY.__getitem__) if healths else UNKNOWN


def assess_stage(latest: Beat, recent: list[Beat], *, now: float, rules, broker_reachable: bool | None) -> StageHealth:
    """One stage instance's health from its newest heartbeat and those of the last `rules.lag_window` s."""
    result = StageHealth(stage=latest.stage, instance=latest.instance, health=HEALTHY, reason="",
                         records=latest.records, rps=latest.rps, lag=latest.lag, lag_detail=latest.lag_detail or {},
                         group_id=latest.group_id, dead_letters=latest.dead_letters,
                         model_version=latest.model_version, last_heartbeat=latest.at)
    age = max(0.0, now - latest.at)
    if latest.state == "stopped":
        result.health, result.reason = UNKNOWN, f"stopped {age:.0f} s ago"
        result.rps = 0.0
        return result
    if broker_reachable is False:
        result.health = UNKNOWN
        result.reason = f"broker {latest.bootstrap} unreachable; last heartbeat {age:.0f} s ago"
        return result
    if age > rules.stale_after:
        result.health, result.reason = CRITICAL, f"no heartbeat for {age:.0f} s (limit {rules.stale_after:g} s)"
        return result
    window = [b for b in recent if b.instance == latest.instance and b.at >= now - rules.lag_window] or [latest]
    first, last = window[0], window[-1]
    lags = [b.lag for b in window if b.lag is not None]
    if (len(lags) >= 3 and lags[-1] >= rules.lag_warning and lags[-1] > lags[0]
            and all(b >= a for a, b in zip(lags, lags[1:]))):
        result.health = WARNING
        result.reason = f"lag growing: {lags[0]:,} -> {lags[-1]:,} records in {last.at - first.at:.0f} s"
        return result
    dead = last.dead_letters - first.dead_letters if len(window) > 1 else last.dead_letters
    seen = (last.records - first.records if len(window) > 1 else last.records) + dead
    if seen > 0 and dead / seen > rules.dead_letter_rate:
        result.health = WARNING
        result.reason = f"dead letters: {dead / seen:.1%} of records (limit {rules.dead_letter_rate:.1%})"
        return result
    lag_text = f", lag {latest.lag:,}" if latest.lag is not None else ""
    result.reason = f"{latest.rps:,.0f} records/s{lag_text}"
    return result


def assess_retrains(entries, *, now: float, rules) -> StageHealth | None:
    """The retrain flows' health from the ledger: a recent failure not followed by a success warns.

    `entries` are ledger entries newest first (any kinds)."""
    flows = [e for e in entries if e.kind in ("failure", "promotion", "rejection")]
    if not flows:
        return None
    last = flows[0]
    result = StageHealth(stage="retrain", instance="prefect", health=HEALTHY, reason="", last_heartbeat=last.at)
    if last.kind == "failure" and now - last.at <= rules.failure_window:
        result.health = WARNING
        result.reason = f"last retrain failed {now - last.at:.0f} s ago: {last.reason}"
    elif last.kind == "failure":
        result.health, result.reason = UNKNOWN, f"last retrain failed {now - last.at:.0f} s ago"
    elif last.kind == "promotion":
        result.reason = f"promoted version {last.model_version} {now - last.at:.0f} s ago"
        result.model_version = last.model_version
    else:
        result.reason = f"challenger rejected {now - last.at:.0f} s ago: {last.reason}"
    return result


def broker_reachable(bootstrap: str | None, timeout: float = 0.5) -> bool | None:
    """Whether any bootstrap server accepts a TCP connection; None when none is known."""
    if not bootstrap:
        return None
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host or "localhost", int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False


def monitor_vitals(monitor) -> dict[str, Any]:
    """What the monitor's heartbeat carries beyond counts: its detectors' current statistics
    and the champion's recent accuracy (1 - ADWIN's error estimate), for status and plots."""
    vitals: dict[str, Any] = {"index": monitor.telemetry_seen, "labelled": monitor.labelled,
                              "busy": monitor.busy, "detectors": {}}
    adwin = getattr(monitor.error_detector, "_adwin", None)
    if adwin is not None and adwin.width:
        vitals["accuracy"] = round(1.0 - float(adwin.estimation), 4)
        vitals["detectors"][monitor.error_detector.name] = {
            "statistic": round(float(adwin.estimation), 4), "window": int(adwin.width),
            "n": monitor.error_detector.n_seen}
    data = monitor.data_detector
    if data is not None and data.evidence:
        vitals["detectors"][data.name] = {"statistic": data.evidence["statistic"],
                                          "threshold": data.evidence["threshold"],
                                          "drifted_features": data.evidence.get("drifted_features", []),
                                          "n": data.n_seen}
    return vitals
