"""The audit log records which source served each record; an older log gains the column."""

import sqlite3
import time

from serving.audit import AuditLog, id_hash

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


def test_offsets_with_gaps_large_jumps_and_any_order_are_kept(tmp_path):
    log = AuditLog(tmp_path / "audit.db")
    log.record(scorer="s", topic="t", partition=0, offsets=[10, 11, 12], ids=["c0", "c1", "c2"], model=MODEL,
               n_learned=1)
    log.record(scorer="s", topic="t", partition=1, offsets=[5, 9, 400], ids=["g0", "g1", "g2"], model=MODEL,
               n_learned=2)
    log.record(scorer="s", topic="t", partition=2, offsets=[7, 3, 10**12], ids=["a0", "a1", "a2"], model=MODEL,
               n_learned=3)
    expected = {"c0": 10, "c1": 11, "c2": 12, "g0": 5, "g1": 9, "g2": 400, "a0": 7, "a1": 3, "a2": 10**12}
    assert {i: log.lookup(i)["source"]["offset"] for i in expected} == expected
    assert log.lookup("g1")["online"]["n_learned"] == 2
    log.close()


def test_a_record_scored_twice_keeps_its_latest_scoring_across_writers(tmp_path):
    first, second = AuditLog(tmp_path / "audit.db"), AuditLog(tmp_path / "audit.db")
    first.record(scorer="one", topic="t", partition=0, offsets=[1, 2], ids=["x", "y"], model=MODEL, n_learned=1)
    second.record(scorer="two", topic="t", partition=0, offsets=[2], ids=["y"],
                  model={**MODEL, "version": 4}, n_learned=9)
    first.close()
    second.close()
    reader = AuditLog(tmp_path / "audit.db")
    assert reader.lookup("y")["scorer"] == "two" and reader.lookup("y")["model"]["version"] == 4
    assert reader.lookup("x")["scorer"] == "one"
    reader.close()


def test_a_block_cut_short_by_a_crash_is_ignored(tmp_path):
    log = AuditLog(tmp_path / "audit.db")
    log.record(scorer="s", topic="t", partition=0, offsets=[1], ids=["kept"], model=MODEL, n_learned=1)
    log.record(scorer="s", topic="t", partition=0, offsets=[2, 3], ids=["cut", "short"], model=MODEL, n_learned=1)
    log.close()
    (blocks,) = (tmp_path / "audit.idx").glob("*.blocks")
    blocks.write_bytes(blocks.read_bytes()[:-3])  # the second block's header, cut short
    log = AuditLog(tmp_path / "audit.db")
    assert log.lookup("kept") is not None and log.lookup("cut") is None and log.lookup("short") is None
    log.close()
    reader = AuditLog(tmp_path / "audit.db", readonly=True)
    assert reader.lookup("kept")["source"]["offset"] == 1
    reader.close()


def test_the_index_costs_about_seven_bytes_a_record(tmp_path):
    log = AuditLog(tmp_path / "audit.db")
    log.record(scorer="s", topic="t", partition=0, offsets=list(range(500)), ids=[f"r{i}" for i in range(500)],
               model=MODEL, n_learned=1)
    assert log.index_bytes() <= 7 * 500 + 64
    log.close()


def test_a_log_with_one_row_per_id_still_answers(tmp_path):
    path = tmp_path / "audit.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE segments (id INTEGER PRIMARY KEY, scorer TEXT, topic TEXT, partition INTEGER,
            first_offset INTEGER, last_offset INTEGER, model_name TEXT, model_version INTEGER,
            run_id TEXT, n_learned INTEGER, scored_at REAL, served_by TEXT);
        CREATE TABLE scored (id_hash INTEGER PRIMARY KEY, segment INTEGER NOT NULL, offset INTEGER NOT NULL)
            WITHOUT ROWID;
        INSERT INTO segments VALUES (1, 's', 't', 0, 4, 4, 'm', 3, 'r', 5, 0.0, 'online');""")
    db.execute("INSERT INTO scored VALUES (?, 1, 4)", (id_hash("old"),))
    db.commit()
    db.close()
    log = AuditLog(path)
    assert log.lookup("old")["served_by"] == "online" and log.lookup("old")["source"]["offset"] == 4
    log.close()


def test_whole_index_files_age_out_after_the_retention(tmp_path):
    log = AuditLog(tmp_path / "audit.db", retention=0.8)  # files rotate every 0.1 s
    log.record(scorer="s", topic="t", partition=0, offsets=[1, 2], ids=["old-a", "old-b"], model=MODEL, n_learned=1)
    assert log.lookup("old-a") is not None
    time.sleep(1.0)
    log.record(scorer="s", topic="t", partition=0, offsets=[3], ids=["new"], model=MODEL, n_learned=2)
    assert log.lookup("old-a") is None and log.lookup("old-b") is None
    assert log.lookup("new")["source"]["offset"] == 3
    assert len(list((tmp_path / "audit.idx").glob("*.keys"))) == 1  # the old file set is gone, whole
    rows = sqlite3.connect(tmp_path / "audit.db").execute("SELECT COUNT(*) FROM segments").fetchone()[0]
    assert rows == 1
    log.close()
