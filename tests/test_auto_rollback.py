"""Automatic rollback, wired in the monitor on the real broker and MLflow: a promoted
champion that does worse than its predecessor on the first labelled records after the
promotion is rolled back, announced and recorded."""

import json
import threading
import time

import pandas as pd
import pytest

from driftctl.messages import ModelUpdate
from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
from driftctl.runtime.stack import configure_environment
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from flows.retrain import retrain
from serving.codec import encode
from serving.kafka_io import make_producer, read_topic
from serving.monitor import Monitor
from serving.updates import publish_update
from tests.streams import produce, readings, trigger, window
from training.datasets import to_frame
from training.evaluate import Evaluation
from training.recipes import make_classifier
from training.registry import Registry

pytestmark = pytest.mark.integration


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(0.1)


def test_a_worse_new_champion_is_rolled_back_by_the_monitor(home, monkeypatch):
    monkeypatch.setenv("DRIFTCTL_RETRAIN__PROBATION_ROWS", "150")
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        settings = Settings()
        configure_environment(settings)
        ensure_topics(bootstrap, settings.kafka)
        rows = produce(bootstrap, settings, readings(0, 1_500, drift_at=100_000))
        assert retrain(window=window(bootstrap, settings, rows), trigger=trigger("decision-v1"))["version"] == 1

        # A bad version 2 (learned from coin flips) that got promoted anyway.
        registry = Registry.from_settings(settings)
        noise = readings(1_500, 2_500, drift_at=100_000, seed=9)
        frame = to_frame(r.record["features"] for r in noise)
        flips = pd.Series([i % 2 for i in range(len(noise))])
        bad = make_classifier().fit(frame, flips)
        _, version = registry.record_candidate(
            model=bad, frame=frame, labels=flips, params={}, tags={}, reference_rows=200, training_seconds=0.0,
            evaluation=Evaluation(0.5, None, 0.0, 0, True, "forced for the test"), promote=True)
        assert version == 2

        ledger = Ledger(settings.ledger_url)
        stop = threading.Event()
        monitor = Monitor(settings, bootstrap, registry, ledger, lambda w, t: {"promoted": False}, stop)
        stage = threading.Thread(target=monitor.run, daemon=True)
        stage.start()
        try:
            wait_for(lambda: monitor.champion is not None and monitor.champion.version == 1, 30, "the monitor")
            registry.move_champion(2, "a bad promotion")
            ledger.append("promotion", model_name=registry.model_name, model_version=2, reason="a bad promotion")
            publish_update(bootstrap, settings.kafka, ModelUpdate(name=registry.model_name, version=2,
                                                                  run_id=registry.ref(2).run_id, previous_version=1))
            wait_for(lambda: monitor.champion.version == 2 and monitor.probation is not None, 30, "version 2")

            # Honest records, scored by version 2 (the test plays the scorer).
            batch = readings(3_000, 3_400, drift_at=100_000, seed=11)
            produce(bootstrap, settings, batch)
            predictions = bad.predict(to_frame(r.record["features"] for r in batch))
            producer = make_producer(bootstrap, settings.kafka)
            ref = registry.ref(2)
            for r, p in zip(batch, predictions, strict=True):
                producer.send(settings.kafka.topics.predictions, key=r.device.encode(), value=encode({
                    "id": r.record["id"], "ts": r.record["ts"], "prediction": int(p), "proba": None,
                    "model": {"name": ref.name, "version": 2, "run_id": ref.run_id}}))
            producer.flush()
            producer.close()
            wait_for(lambda: monitor.rollbacks, 60, lambda: (
                f"the automatic rollback: labelled {monitor.labelled}, judged rows {len(monitor._probation_rows)}, "
                f"pending joins {len(monitor._pending)}, champion {monitor.champion}, probation "
                f"{vars(monitor.probation) if monitor.probation else None}, previous {monitor._previous_model}"))
            wait_for(lambda: monitor.champion.version == 1, 30, "the monitor to follow the rollback")
        finally:
            stop.set()
            stage.join(timeout=30)

        assert registry.champion().version == 1
        entry = ledger.entries("rollback")[0]
        assert entry.payload["automatic"] is True and entry.payload["from_version"] == 2
        probation = entry.payload["evidence"]["probation"]
        assert probation["rows"] == 150 and probation["previous_accuracy"] > probation["champion_accuracy"] + 0.2
        assert "automatic rollback" in entry.reason
        last = json.loads(read_topic(bootstrap, settings.kafka, settings.kafka.topics.model_updates,
                                     until=lambda got: len(got) >= 3, timeout=15)[-1].value)
        assert last["version"] == 1 and last["rollback"] is True
        assert [h["version"] for h in ledger.alias_history(registry.model_name)] == [1, 2, 1]
