"""Pure probation logic, and the ledger's lease, outcomes and alias history (SQLite)."""

import threading

import pytest

from drift.guard import ProbationWatch, Verdict
from driftctl.stores.ledger import Ledger


def test_probation_keeps_a_champion_that_holds_its_own():
    watch = ProbationWatch(version=3, previous=2, rows=100, margin=0.02)
    results = [watch.update(i % 10 != 0, i % 10 > 1) for i in range(100)]  # 90 % against 80 %
    assert all(r.verdict is Verdict.PENDING for r in results[:-1])
    assert results[-1].verdict is Verdict.KEEP and results[-1].rows == 100
    assert results[-1].champion_accuracy == pytest.approx(0.9)


def test_probation_rolls_back_only_beyond_the_margin():
    close = ProbationWatch(version=2, previous=1, rows=50, margin=0.05)
    for i in range(50):
        result = close.update(i % 25 != 0, True)  # 96 % against 100 %: within the margin
    assert result.verdict is Verdict.KEEP
    worse = ProbationWatch(version=2, previous=1, rows=50, margin=0.05)
    for i in range(50):
        result = worse.update(i % 2 == 0, True)
    assert result.verdict is Verdict.ROLL_BACK and "automatic rollback" in result.reason
    with pytest.raises(ValueError, match="rows"):
        ProbationWatch(version=2, previous=1, rows=0)


def test_one_lease_among_a_hundred_racing_holders(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger(url).close()
    won: list[str] = []
    start = threading.Barrier(100)

    def race(i: int) -> None:
        ledger = Ledger(url)
        start.wait()
        if ledger.acquire("retrain:m", f"decision-{i}/run", ttl=60):
            won.append(f"decision-{i}/run")
        ledger.close()

    threads = [threading.Thread(target=race, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    ledger = Ledger(url)
    assert ledger.holder("retrain:m") == won[0]
    ledger.release("retrain:m", "someone-else")
    assert ledger.holder("retrain:m") == won[0]  # only the holder releases
    ledger.release("retrain:m", won[0])
    assert ledger.acquire("retrain:m", "next", ttl=-1)  # a lease already expired...
    assert ledger.acquire("retrain:m", "after-a-crash", ttl=60)  # ...is taken over


def test_outcomes_and_alias_history(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.append("promotion", model_name="m", model_version=1, reason="bootstrap",
                  payload={"trigger": {"decision_id": "d1"}})
    ledger.append("rejection", model_name="m", reason="no gain", payload={"trigger": {"decision_id": "d2"}})
    ledger.append("promotion", model_name="m", model_version=2, reason="drift",
                  payload={"trigger": {"decision_id": "d3"}})
    ledger.append("rollback", model_name="m", model_version=1, reason="worse after promotion")
    ledger.append("window", model_name="m", payload={"window": {}})
    assert ledger.outcome("d2").kind == "rejection" and ledger.outcome("d9") is None
    history = ledger.alias_history("m")
    assert [(h["version"], h["deployed_by"], h["undeployed_by"]) for h in history] == [
        (1, "promotion", "promotion"), (2, "promotion", "rollback"), (1, "rollback", None)]
    assert history[1]["undeployed_at"] == history[2]["deployed_at"]
    assert [e.kind for e in ledger.timeline()] == ["promotion", "rejection", "promotion", "rollback"]
    assert ledger.latest("window", model_name="m").kind == "window"
