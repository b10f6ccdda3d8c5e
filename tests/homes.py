"""Test helpers: copy a driftctl home that already holds a trained champion, instead of
training the same model again for every test.

A home's absolute path is written into its state (MLflow stores artifact locations as
`file:///<home>/mlartifacts/...`; ledger payloads may name files), so a copy is not enough:
the SQLite databases are copied with SQLite's backup API (a consistent snapshot even while
the template's connections are open) and every text value that names the template's path
is rewritten to the copy's, as are small text files (MLflow's MLmodel and friends)."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

# Prefect's home is per process (Prefect reads it once); SQLite side files are replaced by the backup.
_NOT_COPIED = ("prefect", "*.db", "*.db-wal", "*.db-shm", "*.db-journal")
_TEXT_LIMIT = 1 << 20


def clone_home(template: Path, home: Path) -> Path:
    """A copy of `template` at `home` that refers to itself, never to the template."""
    old, new = str(template), str(home)
    shutil.copytree(template, home, ignore=shutil.ignore_patterns(*_NOT_COPIED))
    for source in template.rglob("*.db"):
        if "prefect" in source.relative_to(template).parts:
            continue
        target = home / source.relative_to(template)
        target.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
            _rewrite(dst, old, new)
            dst.commit()
    for path in home.rglob("*"):
        if not path.is_file() or path.suffix == ".db" or path.stat().st_size > _TEXT_LIMIT:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if old in text:
            path.write_text(text.replace(old, new), encoding="utf-8")
    return home


def _rewrite(db: sqlite3.Connection, old: str, new: str) -> None:
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        for column in [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]:
            db.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                       f"WHERE typeof(\"{column}\") = 'text' AND instr(\"{column}\", ?) > 0", (old, new, old))


def mentions(home: Path, text: str) -> list[str]:
    """Files and database values under `home` that still contain `text` (for the test of clone_home)."""
    found = []
    for path in home.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".db":
            with closing(sqlite3.connect(path)) as db:
                for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                    for column in [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]:
                        hits = db.execute(f'SELECT COUNT(*) FROM "{table}" WHERE typeof("{column}") = \'text\' '
                                          f'AND instr("{column}", ?) > 0', (text,)).fetchone()[0]
                        if hits:
                            found.append(f"{path.name}:{table}.{column}")
        elif text.encode() in path.read_bytes():
            found.append(str(path.relative_to(home)))
    return found
