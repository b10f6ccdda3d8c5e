"""The ledger and the MLflow backend store on the local PostgreSQL (127.0.0.1:5432, trust
auth): a retrain flow promotes, rejects and records through them. Each run creates its
own database and drops it afterwards."""

import uuid

import psycopg
import pytest

from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
from driftctl.runtime.stack import configure_environment
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from flows.retrain import lease_name, retrain
from tests.streams import produce, readings, trigger, window
from training.registry import Registry

pytestmark = pytest.mark.integration

SERVER = "postgres@127.0.0.1:5432"


@pytest.fixture
def database():
    name = f"driftctl_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"postgresql://{SERVER}/test", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{SERVER}/{name}"  # the plain URL an operator writes
    finally:
        with psycopg.connect(f"postgresql://{SERVER}/test", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_ledger_and_mlflow_on_postgres(database, home, monkeypatch, tmp_path):
    monkeypatch.setenv("DRIFTCTL_LEDGER__URL", database)
    monkeypatch.setenv("DRIFTCTL_MLFLOW__TRACKING_URI", database)
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        settings = Settings()
        configure_environment(settings)
        ensure_topics(bootstrap, settings.kafka)
        rows = produce(bootstrap, settings, readings(0, 1_200, drift_at=100_000))
        first = retrain(window=window(bootstrap, settings, rows), trigger=trigger("decision-pg-1"))
        again = retrain(window=window(bootstrap, settings, rows), trigger=trigger("decision-pg-2"))
    assert first["promoted"] and first["version"] == 1
    assert not again["promoted"]  # the same data cannot beat the model trained on it by the margin

    registry = Registry.from_settings(settings)
    assert registry.tracking_uri.startswith("postgresql")
    champion = registry.champion()
    assert champion.version == 1
    assert registry.load(1).features == ["firmware", "humidity", "pressure", "temperature", "vibration"]
    run = registry.client.get_run(champion.run_id)
    assert run.data.tags["driftctl.decision"] == "promoted" and run.inputs.dataset_inputs

    ledger = Ledger(settings.ledger_url)
    assert ledger.engine.dialect.name == "postgresql"
    assert [e.kind for e in ledger.timeline()] == ["promotion", "rejection"]
    assert ledger.outcome("decision-pg-2").kind == "rejection"
    assert [h["version"] for h in ledger.alias_history(registry.model_name)] == [1]
    assert ledger.acquire(lease_name("m"), "a", ttl=60) and not ledger.acquire(lease_name("m"), "b", ttl=60)
    ledger.close()
    with psycopg.connect(database) as conn:
        tables = {r[0] for r in conn.execute("select tablename from pg_tables where schemaname = 'public'")}
    assert {"ledger", "retrain_leases", "registered_models", "model_versions", "runs"} <= tables
