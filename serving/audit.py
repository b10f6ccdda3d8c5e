"""The audit log: which model version and which online-learner state scored each record,
and which prediction was served (`served_by`: champion, online or blend).

Two parts, both append-only:

- serving segments in SQLite (`audit.db`, table `segments`): one row per scored batch,
  partition and serving source (offset range, model version, run id, n_learned, served_by);
- an id index beside it (`audit.idx/`), three files per writer process: `.keys`, a 56-bit
  hash of each record id, in offset order within each segment; `.blocks`, one fixed-size
  header per segment (segment id, first offset, number of records, how the offsets are
  stored); `.offsets`, the offsets of the segments whose offsets are not contiguous. About
  7 bytes a record.

A lookup hashes the id and searches the keys files backwards (a byte search; a hit not on
a key boundary is skipped), so the latest scoring of a record scored twice is found first;
its position gives its segment and offset, and the segment's row the rest. The header is
written last: a block cut short by a crash has no header and is ignored.

Retention (`serving.audit_retention`): a writer starts new index files every eighth of the
retention, and whole file sets last written before the retention horizon are deleted with the
segment rows of that age; nothing inside a file is ever rewritten. 56 bits keep the
chance that two of 10,000,000 ids share a hash under 0.1%. A log written before the index
(table `scored`, one row per id) is still answered from that table.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import mmap
import os
import sqlite3
import struct
import threading
import time
import uuid
from array import array
from pathlib import Path
from typing import IO, Any

from driftctl.messages import ModelLineage

HASH_BYTES = 7
# One block's header: segment id, first offset, number of records, offsets kind, where its offsets start.
_HEADER = struct.Struct("<qqIBq")
_CONTIGUOUS, _DELTAS16, _ABSOLUTE = 0, 1, 2


def id_hash(record_id: str) -> int:
    """The 64-bit hash of the index kept by logs written before the packed index."""
    return int.from_bytes(hashlib.blake2b(record_id.encode(), digest_size=8).digest(), "big", signed=True)


def id_key(record_id: str) -> bytes:
    """The record id's key in the packed index: a 56-bit hash."""
    return hashlib.blake2b(record_id.encode(), digest_size=HASH_BYTES).digest()


def pack_offsets(offsets: list[int]) -> tuple[int, bytes]:
    """How a segment's offsets are stored: nothing when contiguous, else 16-bit steps, else in full."""
    first, n = offsets[0], len(offsets)
    if offsets[-1] - first == n - 1 and all(b > a for a, b in itertools.pairwise(offsets)):
        return _CONTIGUOUS, b""
    steps = [b - a for a, b in itertools.pairwise(offsets)]
    if all(0 < d < 65536 for d in steps):
        return _DELTAS16, array("H", steps).tobytes()
    return _ABSOLUTE, array("q", offsets).tobytes()


def pack_keys(ids: list[str]) -> bytes:
    blake2b = hashlib.blake2b
    return b"".join([blake2b(i.encode(), digest_size=HASH_BYTES).digest() for i in ids])


class IndexFiles:
    """One writer's three index files (`stem` + .keys, .blocks, .offsets)."""

    def __init__(self, stem: Path):
        self.stem = stem

    @staticmethod
    def stems(directory: Path) -> list[Path]:
        return sorted(p.with_suffix("") for p in directory.glob("*.blocks")) if directory.exists() else []

    def find(self, key: bytes) -> tuple[int, int] | None:
        """(segment, offset) of the latest scoring of `key` in these files, or None."""
        raw = (self.stem.with_suffix(".blocks")).read_bytes()
        complete = len(raw) // _HEADER.size
        if not complete:
            return None
        headers = list(_HEADER.iter_unpack(raw[:complete * _HEADER.size]))
        ends = list(itertools.accumulate(h[2] for h in headers))  # records up to the end of each block
        with open(self.stem.with_suffix(".keys"), "rb") as keys_file:
            size = os.fstat(keys_file.fileno()).st_size
            limit = min(size, ends[-1] * HASH_BYTES)  # keys past the last header: a block cut short
            if limit == 0:
                return None
            with mmap.mmap(keys_file.fileno(), 0, access=mmap.ACCESS_READ) as keys:
                pos = keys.rfind(key, 0, limit)
                while pos > 0 and pos % HASH_BYTES:  # inside two neighbouring keys: look further back
                    pos = keys.rfind(key, 0, pos + HASH_BYTES - 1)
        if pos < 0:
            return None
        record = pos // HASH_BYTES
        block = bisect.bisect_right(ends, record)
        segment, first, n, kind, at = headers[block]
        index = record - (ends[block] - n)
        if kind == _CONTIGUOUS:
            return segment, first + index
        with open(self.stem.with_suffix(".offsets"), "rb") as offsets:
            if kind == _DELTAS16:
                offsets.seek(at)
                return segment, first + sum(array("H", offsets.read(2 * index)))
            offsets.seek(at + 8 * index)
            return segment, int(struct.unpack("<q", offsets.read(8))[0])


class _IndexWriter:
    def __init__(self, directory: Path):
        directory.mkdir(exist_ok=True)
        stem = self.stem = directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # Unbuffered: each block part is one write.
        self.keys: IO[bytes] = open(stem.with_suffix(".keys"), "ab", buffering=0)  # noqa: SIM115 - held open
        self.offsets: IO[bytes] = open(stem.with_suffix(".offsets"), "ab", buffering=0)  # noqa: SIM115
        self.blocks: IO[bytes] = open(stem.with_suffix(".blocks"), "ab", buffering=0)  # noqa: SIM115
        self.offsets_size = 0

    def append(self, segment: int, offsets: list[int], ids: list[str]) -> None:
        kind, extra = pack_offsets(offsets)
        at = self.offsets_size
        if extra:
            self.offsets.write(extra)
            self.offsets_size += len(extra)
        self.keys.write(pack_keys(ids))
        # The header last: until it is written the block does not exist for a reader.
        self.blocks.write(_HEADER.pack(segment, offsets[0], len(offsets), kind, at))

    def close(self) -> None:
        for file in (self.keys, self.offsets, self.blocks):
            file.close()


class AuditLog:
    """The audit log of one home. `readonly` (what `driftctl audit` opens): no schema work, no
    writes, and none of the ledger's imports, so that a lookup is a short process."""

    def __init__(self, path: Path, *, readonly: bool = False, retention: float | None = None):
        self.path = path
        self.index_dir = path.with_suffix(".idx")
        self.retention = retention  # seconds; None: kept for ever
        self._lock = threading.Lock()
        self._writer: _IndexWriter | None = None  # this writer's index files, opened on its first record
        self._opened_at = self._pruned_at = 0.0
        if readonly:
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False,
                                       timeout=30)
            return
        from driftctl.stores.engine import schema_lock  # SQLAlchemy's import: writers only

        path.parent.mkdir(parents=True, exist_ok=True)
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
        """)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(segments)")}
        if "served_by" not in columns:  # a log written before served_by was recorded
            with self._db:
                self._db.execute("ALTER TABLE segments ADD COLUMN served_by TEXT")

    def record(self, *, scorer: str, topic: str, partition: int, offsets: list[int], ids: list[str],
               model: ModelLineage, n_learned: int, served_by: str = "champion") -> None:
        """One batch of one partition, all scored by one model and one learner state, and served
        by one source (`served_by`: champion, online or blend)."""
        if not offsets:
            return
        with self._lock:
            with self._db:  # the segment first: a block in the index always has its segment
                cursor = self._db.execute(
                    "INSERT INTO segments (scorer, topic, partition, first_offset, last_offset, model_name,"
                    " model_version, run_id, n_learned, scored_at, served_by) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (scorer, topic, partition, min(offsets), max(offsets), model["name"], model["version"],
                     model["run_id"], n_learned, time.time(), served_by))
            assert cursor.lastrowid is not None
            if self.retention is not None:
                self._age_out(time.time())
            if self._writer is None:
                self._writer = _IndexWriter(self.index_dir)
                self._opened_at = time.time()
            try:
                self._writer.append(cursor.lastrowid, offsets, ids)
            except BaseException:  # a part written without its header: go on in new files, in step
                self._writer.close()
                self._writer = None
                raise

    def _age_out(self, now: float) -> None:
        """Rotate this writer's files, and delete what is past the retention (at most once a minute)."""
        assert self.retention is not None
        step = self.retention / 8
        if self._writer is not None and now - self._opened_at > step:
            self._writer.close()
            self._writer = None
        if now - self._pruned_at < min(60.0, step):
            return
        self._pruned_at = now
        horizon = now - self.retention
        # A file set last written before the horizon has no writer left: any writer rotates after `step`.
        for stem in IndexFiles.stems(self.index_dir):
            parts = [stem.with_suffix(suffix) for suffix in (".blocks", ".keys", ".offsets")]
            try:
                newest = max(part.stat().st_mtime for part in parts if part.exists())
            except (OSError, ValueError):  # deleted meanwhile by another scorer
                continue
            if newest < horizon:
                for part in parts:  # .blocks first: readers find a file set by it
                    part.unlink(missing_ok=True)
        with self._db:
            self._db.execute("DELETE FROM segments WHERE scored_at < ?", (horizon,))

    def index_bytes(self) -> int:
        """The size of the id index on disk."""
        return sum(f.stat().st_size for f in self.index_dir.iterdir()) if self.index_dir.exists() else 0

    def lookup(self, record_id: str) -> dict[str, Any] | None:
        key = id_key(record_id)
        best: tuple[int, int] | None = None
        for stem in IndexFiles.stems(self.index_dir):
            try:
                found = IndexFiles(stem).find(key)
            except FileNotFoundError:  # aged out while it was read
                continue
            if found is not None and (best is None or found[0] > best[0]):
                best = found  # segment ids grow across writers: the latest scoring wins
        with self._lock:
            if best is not None:
                row = self._db.execute(
                    "SELECT ?, scorer, topic, partition, model_name, model_version, run_id, n_learned, scored_at,"
                    " served_by FROM segments WHERE id = ?", best[::-1]).fetchone()
            else:
                row = self._legacy_lookup(record_id)
        if row is None:
            return None
        offset, scorer, topic, partition, name, version, run_id, n_learned, scored_at, served_by = row
        return {"id": record_id, "model": {"name": name, "version": version, "run_id": run_id},
                "online": {"n_learned": n_learned}, "source": {"topic": topic, "partition": partition,
                                                               "offset": offset},
                "scorer": scorer, "scored_at": scored_at, "served_by": served_by}

    def _legacy_lookup(self, record_id: str) -> Any:
        """A log written with one SQL row per id (before the packed index)."""
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'scored'").fetchone() is None:
            return None
        return self._db.execute(
            "SELECT s.offset, g.scorer, g.topic, g.partition, g.model_name, g.model_version, g.run_id,"
            " g.n_learned, g.scored_at, g.served_by FROM scored s JOIN segments g ON g.id = s.segment"
            " WHERE s.id_hash = ?", (id_hash(record_id),)).fetchone()

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            self._db.close()
