"""Deliverable 6: the retrain flow uses the configured cluster and refuses a payload whose window
names another (the event is not a credential); with no cluster configured (the demo's embedded
broker) the monitor's own window is taken as it is."""

import pytest

from driftctl.messages import RetrainTrigger, TrainingWindow


def window(bootstrap: str) -> TrainingWindow:
    return TrainingWindow(bootstrap_servers=bootstrap, telemetry_topic="t", labels_topic="l",
                          telemetry={0: (0, 10)}, labels={0: (0, 10)}, positions=(0, 10))


def test_a_window_on_another_cluster_is_refused_and_recorded(home, monkeypatch):
    from driftctl.settings import Settings
    from driftctl.stores.ledger import Ledger
    from flows.retrain import ForeignCluster, run_retrain

    monkeypatch.setenv("DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    settings = Settings()
    trigger = RetrainTrigger(reason="forged", event_ids=("event-x",))
    with pytest.raises(ForeignCluster, match="attacker:9092"):
        run_retrain(window("attacker:9092"), trigger, settings)
    ledger = Ledger(settings.ledger_url)
    entries = ledger.entries()
    ledger.close()
    assert [e.kind for e in entries] == ["failure"] and "refused" in entries[0].reason
    assert entries[0].payload["window"]["bootstrap_servers"] == "attacker:9092"
    assert not (settings.home / "mlflow.db").exists()  # refused before the registry was opened


def test_the_configured_cluster_and_the_embedded_demo_pass(home, monkeypatch):
    from driftctl.settings import Settings
    from flows.retrain import check_cluster

    check_cluster(window("127.0.0.1:40000"), Settings())  # nothing configured: the demo's embedded broker
    monkeypatch.setenv("DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS", "kafka-1:9092, kafka-2:9092")
    check_cluster(window("KAFKA-2:9092,kafka-1:9092"), Settings())  # the same cluster, listed otherwise


def test_a_training_window_is_checked_against_the_champions_schema(home):
    """One record with an extra key (and its label) in the window: read as it is, it would become
    a column of the next champion, after which every normal record is dead-lettered as missing it.
    Read against the champion's schema it is left out, like the scorers leave it out."""
    from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
    from driftctl.settings import Settings
    from flows.retrain import load_window
    from tests.streams import produce, readings
    from tests.streams import window as window_of
    from training.datasets import FeatureSchema, to_frame

    settings = Settings()
    batch = readings(0, 300, drift_at=10**9)
    schema = FeatureSchema.from_frame(to_frame(r.record["features"] for r in batch))
    batch[150].record["features"]["voltage"] = 3.3
    with EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap_servers, settings.kafka)
        rows = produce(broker.bootstrap_servers, settings, batch)
        training = window_of(broker.bootstrap_servers, settings, rows)
        loose, _ = load_window.fn(training, settings)
        checked, target = load_window.fn(training, settings, schema)
    assert "voltage" in loose.columns  # what the flow read before the check
    assert sorted(checked.columns) == schema.names and len(checked) == len(target) == 299
