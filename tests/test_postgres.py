"""The ledger and the MLflow backend store on PostgreSQL: a retrain flow promotes, rejects
and records through them. The server is the one at DRIFTCTL_TEST_POSTGRES_URL (default the
local one at 127.0.0.1:5432, user `postgres`, trust authentication) if it answers, else a
throwaway one this test starts from the installed binaries (tests/postgres.py). Each run
creates its own database and drops it afterwards."""

import uuid
from pathlib import Path

import psycopg
import pytest

from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
from driftctl.runtime.stack import configure_environment
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from flows.retrain import retrain
from serving.promotion import lease_name
from tests.postgres import postgres_server
from tests.streams import produce, readings, trigger, window
from training.registry import Registry

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def server():
    with postgres_server() as (admin_url, _):
        yield admin_url


@pytest.fixture
def database(server):
    name = f"driftctl_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"  # the plain URL an operator writes
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
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


def test_a_throwaway_server_starts_answers_and_leaves_nothing_behind(monkeypatch):
    """The path a fresh machine takes when no PostgreSQL answers, run here even when one does;
    and a configured server that answers but refuses us is a failure, never a skip."""
    from tests.postgres import URL_VARIABLE, NoPostgres, answers, postgres_server, throwaway_server

    with throwaway_server() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("select current_setting('fsync')").fetchone()[0] == "off"
            root = Path(conn.execute("select current_setting('data_directory')").fetchone()[0]).parent
        assert root.is_dir() and answers(url)
        monkeypatch.setenv(URL_VARIABLE, url.replace("postgres@", "no_such_role@"))
        with pytest.raises(NoPostgres, match="answers but cannot be used"), postgres_server():
            pass
    assert not root.exists() and not answers(url)
