"""A bootstrap retrain that fails (the flow's local server slow to start on a loaded machine) is
tried again: with no champion nothing is scored, and before it was never asked for again. Fed
through the monitor's own dispatch; a real ledger on SQLite; the retrain a function."""

from __future__ import annotations

import threading
from concurrent.futures import wait
from types import SimpleNamespace

import serving.monitor
from driftctl.messages import Label
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from serving.codec import encode_label, encode_telemetry
from serving.monitor import Monitor
from serving.synthetic import iot_stream


def test_a_failed_bootstrap_is_tried_again_on_the_newest_records(tmp_path, monkeypatch):
    settings = Settings(home=tmp_path)
    settings.drift.warmup = 200
    asked: list[tuple[int, int]] = []

    def retrain(window, trigger):
        asked.append(window.positions)
        if len(asked) == 1:
            raise RuntimeError("the local Prefect API server did not answer within 90 s")
        return {"promoted": True, "version": 1}

    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    mon = Monitor(settings, "127.0.0.1:1", None, ledger, retrain, threading.Event())  # type: ignore[arg-type]
    topics = settings.kafka.topics

    def feed(records) -> None:
        for r in records:
            value = encode_telemetry(r.record)
            mon._dispatch(topics.telemetry, SimpleNamespace(partition=0, offset=r.seq, value=value))
            label = Label(id=r.record["id"], ts=r.record["ts"], label=r.label)
            mon._dispatch(topics.labels, SimpleNamespace(partition=0, offset=r.seq, value=encode_label(label)))

    def settle() -> None:
        mon._maybe_bootstrap()
        if mon._retraining is not None:
            wait([mon._retraining], timeout=30)
            mon._collect_retrain()

    stream = list(iot_stream(700, drift_at=10**9))
    feed(stream[:200])
    settle()
    assert asked == [(0, 200)] and "error" in mon.outcomes[-1]
    feed(stream[200:500])
    settle()
    assert len(asked) == 1  # not at once: spaced by BOOTSTRAP_RETRY
    monkeypatch.setattr(serving.monitor, "BOOTSTRAP_RETRY", 0.0)
    mon._bootstrap_at = 0.0  # the spacing has passed
    settle()
    assert asked == [(0, 200), (300, 500)] and mon.outcomes[-1]["promoted"]
    feed(stream[500:])
    settle()
    assert len(asked) == 2  # promoted: no third bootstrap while the champion is being followed
    assert mon.records.flush(now=True)  # the monitor writes its ledger entries on a worker thread
    reasons = [e.reason for e in ledger.entries("decision")][::-1]
    assert reasons == ["bootstrap: no champion yet; training on the first 200 labelled records",
                       "bootstrap: no champion yet; training on the newest 200 labelled records"]
    ledger.close()


def test_labels_late_a_provisional_champion_then_the_full_v1(tmp_path):
    """`drift.policy.Bootstrap` live: once `warmup` records are seen with their labels late, a
    provisional champion on the labels in; the full v1 when the first `warmup` labels are in. Both
    are bootstrap triggers (promoted without a gate) and neither starts a cooldown."""
    settings = Settings(home=tmp_path)
    settings.drift.warmup = 200
    settings.drift.early_champion_rows = 100
    asked: list[tuple[tuple[int, int], str]] = []

    def retrain(window, trigger):
        asked.append((window.positions, trigger.kind))
        return {"promoted": True, "version": len(asked)}

    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    mon = Monitor(settings, "127.0.0.1:1", None, ledger, retrain, threading.Event())  # type: ignore[arg-type]
    topics = settings.kafka.topics
    stream = list(iot_stream(400, drift_at=10**9))

    def feed(telemetry, labels) -> None:
        for r in telemetry:
            value = encode_telemetry(r.record)
            mon._dispatch(topics.telemetry, SimpleNamespace(partition=0, offset=r.seq, value=value))
        for r in labels:
            label = encode_label(Label(id=r.record["id"], ts=r.record["ts"], label=r.label))
            mon._dispatch(topics.labels, SimpleNamespace(partition=0, offset=r.seq, value=label))

    def settle() -> None:
        mon._maybe_bootstrap()
        if mon._retraining is not None:
            wait([mon._retraining], timeout=30)
            mon._collect_retrain()

    feed(stream[:199], stream[:120])
    settle()
    assert asked == []  # fewer than warmup records seen: no champion yet
    feed(stream[199:260], [])
    settle()
    assert asked == [((0, 120), "bootstrap")]
    assert mon.watch.bootstrap.provisional
    feed(stream[260:300], stream[120:199])
    settle()
    assert len(asked) == 1  # the full v1 waits for its 200th label
    feed([], stream[199:260])
    settle()
    assert asked == [((0, 120), "bootstrap"), ((0, 200), "bootstrap")]
    assert mon.watch.bootstrap.done and mon.watch.policy.cooldown_until == 0
    feed(stream[300:], stream[260:])
    settle()
    assert len(asked) == 2
    ledger.close()


def test_restarted_while_a_provisional_champion_serves_the_full_v1_still_comes(tmp_path):
    """A monitor restarted while the provisional champion served reads its promotion in the ledger
    (the trigger says `provisional`) and still trains the full v1; a champion promoted by any other
    trigger is left serving."""
    from driftctl.messages import RetrainTrigger
    from training.registry import ModelRef

    settings = Settings(home=tmp_path)
    settings.drift.warmup = 200
    settings.drift.early_champion_rows = 100
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    name = settings.mlflow.model_name
    for version, provisional in ((1, True), (2, False)):
        trigger = RetrainTrigger(kind="bootstrap", reason="bootstrap", provisional=provisional)
        ledger.append("promotion", reason="promoted", model_name=name, model_version=version,
                      payload={"trigger": trigger.model_dump(mode="json")})
    topics = settings.kafka.topics
    stream = list(iot_stream(300, drift_at=10**9))

    def restarted(version: int) -> tuple[Monitor, list]:
        asked: list = []

        def retrain(window, trigger):
            asked.append((window.positions, trigger.kind, trigger.provisional))
            return {"promoted": True, "version": 3}

        mon = Monitor(settings, "127.0.0.1:1", None, ledger, retrain, threading.Event())  # type: ignore[arg-type]
        mon.champion = ModelRef(name, version, "run")
        for r in stream:
            telemetry = encode_telemetry(r.record)
            mon._dispatch(topics.telemetry, SimpleNamespace(partition=0, offset=r.seq, value=telemetry))
            label = encode_label(Label(id=r.record["id"], ts=r.record["ts"], label=r.label))
            mon._dispatch(topics.labels, SimpleNamespace(partition=0, offset=r.seq, value=label))
            mon._maybe_bootstrap()
            if mon._retraining is not None:
                wait([mon._retraining], timeout=30)
                mon._collect_retrain()
        return mon, asked

    mon, asked = restarted(1)
    assert asked == [((0, 200), "bootstrap", False)]  # the full v1, owed since before the restart
    assert mon.watch.bootstrap.done and 1 in mon._provisional
    mon, asked = restarted(2)
    assert asked == [] and mon.watch.bootstrap.done
    ledger.close()
