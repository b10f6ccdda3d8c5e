"""The append-only ledger of drift events, decisions, promotions and failures (SQLAlchemy).

MLflow keeps runs and versions; the ledger keeps the history MLflow does not: which
version served when, and every decision with its reason, promoted or not.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from driftctl.settings import Settings, mask_url
from driftctl.stores.engine import create_tables, open_engine

log = logging.getLogger(__name__)

metadata = MetaData()
entries = Table(
    "ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),
    Column("kind", String(32), nullable=False, index=True),
    Column("model_name", String(200)),
    Column("model_version", Integer),
    Column("event_id", String(64), index=True),
    Column("reason", Text),
    Column("payload", JSON),
)

# The one mutable table: who holds the right to retrain a model now. Rows come and go;
# the ledger above never changes.
leases = Table(
    "retrain_leases",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("acquired_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

KINDS = ("drift_event", "decision", "promotion", "rejection", "failure", "rollback", "window", "skipped",
         "incident", "incident_update", "intent", "reinstatement")
# The kinds that open an incident (one per drift) and fold into it the events that fire while
# the drift is already being acted on (serving.incidents).
INCIDENT_KINDS = ("incident", "incident_update")
# The kinds that end a retrain: one of them names each decision that ran.
OUTCOMES = ("promotion", "rejection", "failure", "skipped")
# The kinds that move the champion alias (a reinstatement: an archived champion back after a
# concept drift, without training).
ALIAS_MOVES = ("promotion", "rollback", "reinstatement")
# What ends an `intent` (a champion change written down before the alias moves, serving.promotion):
# the move's record, or a failure that undid it; either names the intent in its payload.
INTENT_OUTCOMES = ("promotion", "rollback", "reinstatement", "failure")


class LedgerError(Exception):
    """The ledger's database cannot be opened (its message never holds a password)."""

    def __init__(self, message: str):
        super().__init__(mask_url(message))


@dataclass(frozen=True)
class Entry:
    id: int
    at: float
    kind: str
    model_name: str | None
    model_version: int | None
    event_id: str | None
    reason: str | None
    payload: dict[str, Any]


class Ledger:
    def __init__(self, url: str, *, busy_timeout: float = 30.0):
        self.url = url
        self.engine = open_engine(url, busy_timeout)
        try:
            create_tables(self.engine, metadata)  # stages starting together must not race on the schema
        except OperationalError as exc:
            self.engine.dispose()
            where = url.rsplit("@", 1)[-1]
            raise LedgerError(f"cannot open the ledger at {mask_url(where)}: {exc.orig}") from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> Ledger:
        return cls(settings.ledger_url, busy_timeout=settings.ledger.busy_timeout)

    def append(self, kind: str, *, reason: str | None = None, model_name: str | None = None,
               model_version: int | None = None, event_id: str | None = None,
               payload: dict[str, Any] | None = None, at: float | None = None) -> int:
        """Append one entry; `at` (default: now) is when it happened, for a write that had to wait."""
        if kind not in KINDS:
            raise ValueError(f"unknown ledger kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        # Reasons often quote an exception, and a driver's message may quote its URL: masked.
        row = {"at": time.time() if at is None else at, "kind": kind, "model_name": model_name,
               "model_version": model_version, "event_id": event_id,
               "reason": None if reason is None else mask_url(reason),
               "payload": json.loads(mask_url(json.dumps(payload or {}, default=str)))}
        with self.engine.begin() as conn:
            key = conn.execute(insert(entries).values(**row)).inserted_primary_key
        assert key is not None  # an INSERT into a table with a primary key
        return key[0]

    def entries(self, kind: str | None = None, limit: int | None = None) -> list[Entry]:
        query = select(entries).order_by(entries.c.id.desc())
        if kind:
            query = query.where(entries.c.kind == kind)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [Entry(**row._mapping) for row in conn.execute(query)]

    def last_promotion(self, model_name: str, version: int) -> Entry | None:
        query = (select(entries).where(entries.c.kind == "promotion", entries.c.model_name == model_name,
                                       entries.c.model_version == version)
                 .order_by(entries.c.id.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return Entry(**row._mapping) if row else None

    def latest(self, kind: str, model_name: str | None = None) -> Entry | None:
        query = select(entries).where(entries.c.kind == kind)
        if model_name is not None:
            query = query.where(entries.c.model_name == model_name)
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(entries.c.id.desc()).limit(1)).first()
        return Entry(**row._mapping) if row else None

    def outcome(self, decision_id: str, scan: int = 500) -> Entry | None:
        """The entry that ended the retrain asked for by `decision_id`, if it has ended."""
        query = select(entries).where(entries.c.kind.in_(OUTCOMES)).order_by(entries.c.id.desc()).limit(scan)
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                entry = Entry(**row._mapping)
                if (entry.payload.get("trigger") or {}).get("decision_id") == decision_id:
                    return entry
        return None

    def open_intents(self, model_name: str, scan: int = 20) -> list[Entry]:
        """Champion changes of `model_name` written down but never ended (a crash between the
        steps), oldest first."""
        query = (select(entries).where(entries.c.kind == "intent", entries.c.model_name == model_name)
                 .order_by(entries.c.id.desc()).limit(scan))
        with self.engine.connect() as conn:
            intents = [Entry(**row._mapping) for row in conn.execute(query)]
            if not intents:
                return []
            later = select(entries.c.payload).where(entries.c.kind.in_(INTENT_OUTCOMES),
                                                    entries.c.id > min(i.id for i in intents))
            ended = {(row[0] or {}).get("intent") for row in conn.execute(later)}
        return [i for i in reversed(intents) if i.id not in ended]

    def timeline(self, *, include_windows: bool = False, include_intents: bool = False,
                 limit: int | None = None) -> list[Entry]:
        """Every entry, oldest first (window checkpoints and the intents of champion changes, the
        bookkeeping of their moves, only when asked for)."""
        query = select(entries).order_by(entries.c.id.desc())
        if not include_windows:
            query = query.where(entries.c.kind != "window")
        if not include_intents:
            query = query.where(entries.c.kind != "intent")
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [Entry(**row._mapping) for row in conn.execute(query)][::-1]

    def alias_history(self, model_name: str) -> list[dict[str, Any]]:
        """Which version served when: one interval per move of the champion alias, oldest
        first; `undeployed_at` is None for the version serving now."""
        query = (select(entries).where(entries.c.kind.in_(ALIAS_MOVES), entries.c.model_name == model_name)
                 .order_by(entries.c.id))
        with self.engine.connect() as conn:
            moves = [Entry(**row._mapping) for row in conn.execute(query)]
        history: list[dict[str, Any]] = []
        for move in moves:
            if history:
                history[-1]["undeployed_at"] = move.at
                history[-1]["undeployed_by"] = move.kind
            history.append({"version": move.model_version, "deployed_at": move.at, "deployed_by": move.kind,
                            "reason": move.reason, "undeployed_at": None, "undeployed_by": None,
                            "entry_id": move.id})
        return history

    # -- the one-retrain-in-flight lease ---------------------------------------------------
    def acquire(self, name: str, holder: str, ttl: float) -> bool:
        """Take the lease `name` for `holder` unless a live one is held; a lease older than
        `ttl` seconds (left by a crashed flow) is taken over. Atomic across processes:
        the primary key decides."""
        now = time.time()
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(leases).where(leases.c.name == name, leases.c.expires_at < now))
                conn.execute(insert(leases).values(name=name, holder=holder, acquired_at=now, expires_at=now + ttl))
            return True
        except IntegrityError:
            return False

    def renew(self, name: str, holder: str, ttl: float) -> bool:
        """Extend `holder`'s lease by `ttl` seconds from now; False if it is not (or no longer)
        theirs: another process took it over after it expired. The fencing check before a write."""
        with self.engine.begin() as conn:
            done = conn.execute(update(leases).where(leases.c.name == name, leases.c.holder == holder)
                                .values(expires_at=time.time() + ttl))
        return done.rowcount == 1

    def holder(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(leases.c.holder).where(leases.c.name == name)).first()
        return row[0] if row else None

    def release(self, name: str, holder: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder))

    def close(self) -> None:
        self.engine.dispose()


class Backlog:
    """A stage's ledger appends that wait, in order, while the database cannot take them (locked,
    full, away): the stage goes on, and they are written oldest first, each with the time it was
    made, once it can. While entries wait a new one queues behind them and the database is asked
    again only every `retry` s (doubling to `retry_max`), so a stage waits at most one busy timeout
    per try, not one per entry. Bounded: past `limit` waiting entries the oldest is dropped, counted.
    A failed try is handed to `on_fault` (the stage counts and logs it); `append` never raises.

    With `background`, the writes run on a worker thread and the stage never waits for them: a
    database that accepts the connection and then never answers (a PostgreSQL stuck, a black hole)
    held the monitor's loop for as long as the socket did. A write that has not answered within
    `stuck_after` s is reported once; no second write starts while it is out (its outcome decides
    whether its entry is written or tried again, so nothing is written twice)."""

    def __init__(self, ledger: Ledger, on_fault: Callable[[str, Exception], None], *, limit: int = 10_000,
                 retry: float = 5.0, retry_max: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 background: bool = False, stuck_after: float = 30.0):
        self.ledger, self.on_fault, self.limit, self.clock = ledger, on_fault, limit, clock
        self.retry, self.retry_max, self._spacing, self._next_try = retry, retry_max, retry, 0.0
        self._waiting: deque[tuple[str, dict[str, Any]]] = deque()
        self._lock = threading.Lock()  # the worker pops what it wrote; the stage drops the oldest past `limit`
        self.background, self.stuck_after = background, stuck_after
        self._worker: threading.Thread | None = None
        self._worker_since = 0.0
        self._stuck_reported = False
        self.written = 0
        self.dropped = 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def writing(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def append(self, kind: str, **fields: Any) -> None:
        self._waiting.append((kind, {**fields, "at": fields.get("at") or time.time()}))
        if len(self._waiting) > self.limit:
            with self._lock:
                dropped, _ = self._waiting.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("ledger backlog full (%d): %d entries dropped, the last a %s", self.limit, self.dropped,
                          dropped)
        self.flush()

    def flush(self, *, now: bool = False) -> bool:
        """Write what waits (only when a try is due, or `now`); True when nothing waits. In the
        background: starts the worker when a try is due (`now`: and waits for it, at most
        `stuck_after` s)."""
        if not self.background:
            if self._waiting and (now or self.clock() >= self._next_try):
                self._write()
            return not self._waiting
        if self.writing:
            assert self._worker is not None
            if now:
                self._worker.join(self.stuck_after)
            if self.writing:
                if not self._stuck_reported and self.clock() - self._worker_since > self.stuck_after:
                    self._stuck_reported = True
                    self.on_fault(f"ledger write not answered ({len(self._waiting)} waiting)",
                                  TimeoutError(f"the database has not answered for {self.stuck_after:g} s"))
                return False
        if self._waiting and (now or self.clock() >= self._next_try):
            self._worker_since, self._stuck_reported = self.clock(), False
            self._worker = threading.Thread(target=self._write, name="ledger-backlog", daemon=True)
            self._worker.start()
            if now:
                self._worker.join(self.stuck_after)
        return not self._waiting

    def _write(self) -> None:
        while self._waiting:
            entry = self._waiting[0]
            kind, fields = entry
            try:
                self.ledger.append(kind, **fields)
            except OperationalError as exc:  # the database (locked, full, away): the entry waits
                self._next_try = self.clock() + self._spacing
                self._spacing = min(self._spacing * 2, self.retry_max)
                self.on_fault(f"{kind} not recorded yet ({len(self._waiting)} waiting)", exc)
                return
            except Exception as exc:  # the entry itself: retrying would block every later one
                self._pop(entry)
                self.dropped += 1
                self.on_fault(f"{kind} not recorded", exc)
                continue
            if not self._pop(entry):  # dropped past `limit` while it was written: written after all
                self.dropped -= 1
            self.written += 1
        self._spacing = self.retry

    def _pop(self, entry: tuple[str, dict[str, Any]]) -> bool:
        with self._lock:
            if self._waiting and self._waiting[0] is entry:
                self._waiting.popleft()
                return True
            return False
