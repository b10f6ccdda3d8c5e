"""Stage heartbeats: the writer every stage calls and the table `status` reads.

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
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Column, Float, Index, Integer, MetaData, String, Table, delete, func, insert, select

from driftctl.stores.engine import create_tables, open_engine

if TYPE_CHECKING:
    from kafka import KafkaConsumer

    from driftctl.settings import Settings

log = logging.getLogger(__name__)

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


class HealthStore:
    """The heartbeat table, in the ledger's database."""

    def __init__(self, url: str, *, busy_timeout: float = 30.0):
        self.url = url
        self.engine = open_engine(url, busy_timeout)
        create_tables(self.engine, metadata)

    @classmethod
    def from_settings(cls, settings: Settings) -> HealthStore:
        return cls(settings.ledger_url, busy_timeout=settings.ledger.busy_timeout)

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


def consumer_lag(consumer: KafkaConsumer | list[KafkaConsumer]) -> dict[str, int]:
    """Records behind per assigned topic-partition: highwater of the last fetch minus position.

    Partitions not fetched yet have no highwater and are left out. Approximate on Tansu
    (per-batch high watermarks: reads low by up to one batch)."""
    lag: dict[str, int] = {}
    for one in consumer if isinstance(consumer, list) else [consumer]:  # the monitor: one per topic
        try:
            for tp in one.assignment():
                high = one.highwater(tp)
                if high is None:
                    continue
                position = one.position(tp, timeout_ms=50)
                if position is not None:
                    lag[f"{tp.topic}[{tp.partition}]"] = max(0, high - position)
        except Exception as exc:  # a rebalance in progress: no lag this beat
            log.debug("no lag this beat: %s", exc)
    return lag


class Heartbeat:
    """A stage's heartbeat: call `beat()` on every loop turn; it writes at most once per interval.

    A failed write is logged and retried on the next interval: health is advisory, and
    a stage never stops scoring because its heartbeat could not be written. With `background`
    (the stages) the write runs on its own thread: a locked, full or hung database never holds
    up the stage's loop, and a beat due while the previous write still waits is skipped.
    """

    def __init__(self, store: HealthStore | str | None, stage: str, *, bootstrap: str | None = None,
                 group_id: str | None = None, interval: float = 2.0, retention: float = 86_400.0,
                 instance: str | None = None, clock: Callable[[], float] = time.time, background: bool = False,
                 busy_timeout: float = 30.0):
        self.store = store
        self.busy_timeout = busy_timeout
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
        self.background = background
        self._writing: threading.Thread | None = None
        self._failures = 0  # writes failed in a row: logged the first time, then every minute's worth

    @classmethod
    def from_settings(cls, settings: Settings, stage: str, bootstrap: str | None = None, group_id: str | None = None,
                      instance: str | None = None) -> Heartbeat:
        interval = settings.health.heartbeat_interval
        store = settings.ledger_url if interval > 0 else None  # opened on the first beat
        return cls(store, stage, bootstrap=bootstrap, group_id=group_id, interval=interval,
                   retention=settings.health.retention, instance=instance, background=True,
                   busy_timeout=settings.ledger.busy_timeout)

    def beat(self, consumer: KafkaConsumer | list[KafkaConsumer] | None = None, *, records: int, dead_letters: int = 0,
             model_version: int | None = None, extra: Callable[[], dict] | dict | None = None, state: str = "running",
             force: bool = False) -> bool:
        if self.store is None:
            return False
        now = self.clock()
        if not force and self._last_at is not None and now - self._last_at < self.interval:
            return False
        elapsed = now - self._last_at if self._last_at is not None else None
        rps = (records - self._last_records) / elapsed if elapsed else 0.0
        self._last_at, self._last_records = now, records
        # The consumer and the stage's state are read here, on the stage's thread; only the write may wait.
        lag = consumer_lag(consumer) if consumer is not None else {}
        try:
            details = extra() if callable(extra) else (extra or {})
        except Exception as exc:
            log.warning("heartbeat of %s not written: %s", self.stage, exc)
            return False
        beat = Beat(at=now, stage=self.stage, instance=self.instance, state=state, records=int(records),
                    rps=round(max(rps, 0.0), 2), lag=sum(lag.values()) if consumer is not None else None,
                    lag_detail=lag, group_id=self.group_id, dead_letters=int(dead_letters),
                    model_version=model_version, bootstrap=self.bootstrap, extra=details)
        if not self.background:
            return self._write(beat)
        if self._writing is not None and self._writing.is_alive():
            log.debug("heartbeat of %s skipped: the previous write still waits for the database", self.stage)
            return False
        self._writing = threading.Thread(target=self._write, args=(beat,), name=f"heartbeat-{self.stage}",
                                         daemon=True)
        self._writing.start()
        return True

    def _write(self, beat: Beat) -> bool:
        try:
            if isinstance(self.store, str):
                self.store = HealthStore(self.store, busy_timeout=self.busy_timeout)
            store = self.store
            if store is None:
                return False
            store.write(beat)
            if beat.at - self._last_prune > 600:
                self._last_prune = beat.at
                store.prune(beat.at - self.retention)
        except Exception as exc:
            self._failures += 1
            if self._failures == 1 or self._failures % max(1, round(60 / max(self.interval, 0.1))) == 0:
                log.warning("heartbeat of %s not written (%d in a row): %s", self.stage, self._failures, exc)
            return False
        if self._failures:
            log.warning("heartbeat of %s written again after %d failures", self.stage, self._failures)
            self._failures = 0
        return True

    def stopped(self, *, records: int, dead_letters: int = 0, model_version: int | None = None) -> None:
        """The last beat of a stage that ends on purpose: status says "stopped", not "no heartbeat"."""
        if self._writing is not None:
            self._writing.join(timeout=5.0)
        self.beat(None, records=records, dead_letters=dead_letters, model_version=model_version,
                  state="stopped", force=True)
        if self._writing is not None:
            self._writing.join(timeout=5.0)  # bounded: a stage ends even when its database hangs
            if self._writing.is_alive():
                return
        if isinstance(self.store, HealthStore):
            self.store.close()


