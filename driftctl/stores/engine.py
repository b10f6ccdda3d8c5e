"""The one way driftctl opens its database (the ledger and the heartbeats share it)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock
from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.exc import OperationalError

CONNECT_TIMEOUT = 10  # seconds at most (libpq's minimum is 2)


def open_engine(url: str, busy_timeout: float = 30.0) -> Engine:
    """An engine for `url`: SQLite waits up to `busy_timeout` s for a writer (the setting
    `ledger.busy_timeout`) instead of failing at once and runs in WAL mode, so readers (status,
    console) never block the stages; other databases are pinged before a pooled connection is
    reused, and PostgreSQL's connection set-up waits at most the busy timeout (2–10 s)."""
    options: dict[str, Any] = {"future": True}
    sqlite = url.startswith("sqlite")
    if sqlite:
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        options["connect_args"] = {"timeout": busy_timeout}
    else:
        options["pool_pre_ping"] = True
        if url.startswith(("postgresql", "postgres")):
            # libpq waits for ever on a server that accepts and never answers: bound the whole
            # connection set-up by the busy timeout, within libpq's 2 s and 10 s (the stages retry;
            # status and the console have their own deadline).
            options["connect_args"] = {"connect_timeout": max(2, min(CONNECT_TIMEOUT, round(busy_timeout)))}
    engine = create_engine(url, **options)
    if sqlite:
        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
    return engine


def create_tables(engine: Engine, tables: MetaData) -> None:
    """`create_all` that tolerates another process creating the same tables at the same moment
    (stages start together on a fresh database: check-then-create races, and SQLite answers
    "database is locked" at once, without waiting, to a reader that would deadlock a writer)."""
    attempts = 10
    for attempt in range(attempts):
        try:
            with schema_lock(engine.url.render_as_string(hide_password=True)):
                tables.create_all(engine)
            return
        except OperationalError as exc:
            if not ("already exists" in str(exc) or "locked" in str(exc)) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def sqlite_path(url: str) -> Path | None:
    """The database file of a `sqlite:///...` URL (None for other databases and memory)."""
    if not url.startswith("sqlite:///") or url in ("sqlite:///:memory:", "sqlite://"):
        return None
    return Path(url.removeprefix("sqlite:///").split("?", 1)[0])


@contextlib.contextmanager
def schema_lock(url: str, timeout: float = 120.0) -> Iterator[None]:
    """Serialize schema creation and migration of a SQLite database between processes on
    this machine: stages started together on a fresh home each create MLflow's and the
    ledger's tables, and concurrent alembic runs leave a half-migrated file. A lock file
    beside the database; other databases run their own locking (nothing to do here)."""
    path = sqlite_path(url)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".schema.lock", timeout=timeout):
        yield
