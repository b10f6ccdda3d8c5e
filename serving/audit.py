"""The audit log: which model version and which online-learner state scored each record,
and which prediction was served (`served_by`: champion, online or blend).

Stored as serving segments (one row per scored batch and partition: offset range, model
version, run id, n_learned) plus an index from a 64-bit hash of the record id to its
segment and offset: about 30 bytes a record, answered by two primary-key lookups.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from driftctl.messages import ModelLineage
from driftctl.stores.engine import schema_lock


def id_hash(record_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(record_id.encode(), digest_size=8).digest(), "big", signed=True)


class AuditLog:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30)
        with schema_lock(f"sqlite:///{path}"):  # scorers starting together: WAL switch and tables, one at a time
            self._init_schema()

    def _init_schema(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS segments (
                id INTEGER PRIMARY KEY, scorer TEXT, topic TEXT, partition INTEGER,
                first_offset INTEGER, last_offset INTEGER, model_name TEXT, model_version INTEGER,
                run_id TEXT, n_learned INTEGER, scored_at REAL, served_by TEXT);
            CREATE TABLE IF NOT EXISTS scored (
                id_hash INTEGER PRIMARY KEY, segment INTEGER NOT NULL, offset INTEGER NOT NULL) WITHOUT ROWID;
        """)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(segments)")}
        if "served_by" not in columns:  # a log written before served_by was recorded
            with self._db:
                self._db.execute("ALTER TABLE segments ADD COLUMN served_by TEXT")

    def record(self, *, scorer: str, topic: str, partition: int, offsets: list[int], ids: list[str],
               model: ModelLineage, n_learned: int, served_by: str = "champion") -> None:
        """One batch of one partition, all scored by one model and one learner state, and served
        by one source (`served_by`: champion, online or blend)."""
        with self._lock, self._db:
            cursor = self._db.execute(
                "INSERT INTO segments (scorer, topic, partition, first_offset, last_offset, model_name,"
                " model_version, run_id, n_learned, scored_at, served_by) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (scorer, topic, partition, min(offsets), max(offsets), model["name"], model["version"],
                 model["run_id"], n_learned, time.time(), served_by))
            segment = cursor.lastrowid
            # A record scored twice (at-least-once redelivery) keeps its latest scoring.
            self._db.executemany("INSERT OR REPLACE INTO scored VALUES (?,?,?)",
                                 [(id_hash(i), segment, o) for i, o in zip(ids, offsets, strict=True)])

    def lookup(self, record_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT s.offset, g.scorer, g.topic, g.partition, g.model_name, g.model_version, g.run_id,"
                " g.n_learned, g.scored_at, g.served_by FROM scored s JOIN segments g ON g.id = s.segment"
                " WHERE s.id_hash = ?", (id_hash(record_id),)).fetchone()
        if row is None:
            return None
        offset, scorer, topic, partition, name, version, run_id, n_learned, scored_at, served_by = row
        return {"id": record_id, "model": {"name": name, "version": version, "run_id": run_id},
                "online": {"n_learned": n_learned}, "source": {"topic": topic, "partition": partition,
                                                               "offset": offset},
                "scorer": scorer, "scored_at": scored_at, "served_by": served_by}

    def close(self) -> None:
        with self._lock:
            self._db.close()
