"""The append-only ledger of drift events, decisions, promotions and failures (SQLAlchemy).

MLflow keeps runs and versions; the ledger keeps the history MLflow does not: which
version served when, and every decision with its reason, promoted or not.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Column, Float, Integer, MetaData, String, Table, Text, create_engine, insert, select

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

KINDS = ("drift_event", "decision", "promotion", "rejection", "failure", "rollback")


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
    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url, future=True)
        from driftctl.health import create_tables

        create_tables(self.engine, metadata)  # stages starting together must not race on the schema

    def append(self, kind: str, *, reason: str | None = None, model_name: str | None = None,
               model_version: int | None = None, event_id: str | None = None,
               payload: dict[str, Any] | None = None) -> int:
        if kind not in KINDS:
            raise ValueError(f"unknown ledger kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        row = {"at": time.time(), "kind": kind, "model_name": model_name, "model_version": model_version,
               "event_id": event_id, "reason": reason, "payload": json.loads(json.dumps(payload or {}, default=str))}
        with self.engine.begin() as conn:
            return conn.execute(insert(entries).values(**row)).inserted_primary_key[0]

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

    def close(self) -> None:
        self.engine.dispose()
