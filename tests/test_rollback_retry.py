"""An automatic rollback refused because a retrain held the lease is tried again (issue 11, the
soak): once the lease is free, if the alias still names the version the probation judged; after a
newer promotion it is dropped. Real MLflow store and ledger (SQLite); the monitor's own rollback
path, driven as its loop does."""

from __future__ import annotations

import threading

import pandas as pd

from driftctl.runtime.stack import configure_environment
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from serving.monitor import Monitor
from serving.promotion import Lease
from serving.synthetic import iot_stream
from training.datasets import to_frame
from training.evaluate import Evaluation
from training.recipes import make_classifier
from training.registry import Registry


def register(registry: Registry, versions: int) -> list[int]:
    rows = list(iot_stream(600, drift_at=10**9))
    frame = to_frame(r.record["features"] for r in rows)
    labels = pd.Series([r.label for r in rows])
    made = []
    for _ in range(versions):
        _, version = registry.record_candidate(
            model=make_classifier().fit(frame, labels), frame=frame, labels=labels,
            evaluation=Evaluation(1.0, None, 0.0, 0, True, "test"), params={}, tags={}, reference_rows=100,
            training_seconds=0.0, promote=True)
        made.append(version)
    return made


def setup(home):
    settings = Settings()
    settings.kafka.bootstrap_servers = ""  # recorded, not announced: scorers follow the alias at start
    configure_environment(settings)
    registry = Registry.from_settings(settings)
    ledger = Ledger(settings.ledger_url)
    monitor = Monitor(settings, "", registry, ledger, lambda w, t: {"promoted": False}, threading.Event())
    return settings, registry, ledger, monitor


def decided(monitor: Monitor) -> None:
    """The probation's verdict against version 2 (what `_judge_probation` hands over)."""
    monitor._roll_back({"to": 1, "expect": 2, "reason": "probation: version 2 worse than version 1",
                        "evidence": {"probation": {"rows": 200}, "incident": None}})


def retry_when_due(monitor: Monitor) -> None:
    """What the loop does once the retry is due (without waiting its 10 s)."""
    assert monitor._rollback_due is not None
    monitor._roll_back(monitor._rollback_due[0])


def test_a_rollback_refused_by_the_lease_is_retried_once_it_is_free(home):
    settings, registry, ledger, monitor = setup(home)
    one, two = register(registry, 2)
    registry.move_champion(two, "test")
    monitor.champion = registry.champion()
    retrain = Lease(ledger, registry.model_name, "retrain/test", settings.retrain.lease_seconds)
    assert retrain.acquire()
    decided(monitor)
    assert monitor._rollback_due is not None and not monitor.rollbacks
    assert registry.champion().version == two  # refused: nothing moved
    retry_when_due(monitor)  # still held: waits again
    assert monitor._rollback_due is not None and registry.champion().version == two
    retrain.release()
    retry_when_due(monitor)
    assert monitor._rollback_due is None and len(monitor.rollbacks) == 1
    assert registry.champion().version == one
    rollbacks = ledger.entries("rollback")
    assert rollbacks and any(e.payload.get("automatic") is True for e in rollbacks), rollbacks
    ledger.close()


def test_a_rollback_overtaken_by_a_newer_promotion_is_dropped(home):
    settings, registry, ledger, monitor = setup(home)
    _, two, three = register(registry, 3)
    registry.move_champion(two, "test")
    monitor.champion = registry.champion()
    retrain = Lease(ledger, registry.model_name, "retrain/test", settings.retrain.lease_seconds)
    assert retrain.acquire()
    decided(monitor)
    assert monitor._rollback_due is not None
    # The retrain promotes version 3 and ends; the monitor has not followed it yet: the retry reads
    # the alias under the lease and drops the rollback.
    registry.move_champion(three, "a newer promotion")
    retrain.release()
    retry_when_due(monitor)
    assert monitor._rollback_due is None and not monitor.rollbacks
    assert registry.champion().version == three
    # Once the monitor follows a newer champion, a pending retry is dropped at once.
    assert retrain.acquire()
    decided(monitor)
    assert monitor._rollback_due is not None
    monitor._on_champion(registry.champion())
    assert monitor._rollback_due is None
    retrain.release()
    assert registry.champion().version == three and not monitor.rollbacks
    ledger.close()
