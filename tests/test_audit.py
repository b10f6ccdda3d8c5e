"""The audit log records which source served each record; an older log gains the column."""

import sqlite3

from serving.audit import AuditLog

MODEL = {"name": "m", "version": 3, "run_id": "r"}


def test_served_by_is_recorded_per_segment(tmp_path):
    log = AuditLog(tmp_path / "audit.db")
    log.record(scorer="s", topic="t", partition=0, offsets=[1, 2], ids=["a", "b"], model=MODEL, n_learned=7,
               served_by="blend")
    log.record(scorer="s", topic="t", partition=0, offsets=[3], ids=["c"], model=MODEL, n_learned=7,
               served_by="champion")
    assert log.lookup("a")["served_by"] == "blend" and log.lookup("c")["served_by"] == "champion"
    assert log.lookup("b")["model"] == MODEL and log.lookup("zz") is None
    log.close()


def test_a_log_written_before_served_by_still_answers(tmp_path):
    path = tmp_path / "audit.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE segments (id INTEGER PRIMARY KEY, scorer TEXT, topic TEXT, partition INTEGER,
            first_offset INTEGER, last_offset INTEGER, model_name TEXT, model_version INTEGER,
            run_id TEXT, n_learned INTEGER, scored_at REAL);
        CREATE TABLE scored (id_hash INTEGER PRIMARY KEY, segment INTEGER NOT NULL, offset INTEGER NOT NULL)
            WITHOUT ROWID;""")
    db.close()
    log = AuditLog(path)
    log.record(scorer="s", topic="t", partition=0, offsets=[5], ids=["x"], model=MODEL, n_learned=1)
    assert log.lookup("x")["served_by"] == "champion"
    log.close()
