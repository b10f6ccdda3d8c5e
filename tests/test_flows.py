"""The retrain flow in-process on the real stack: Tansu broker, MLflow on SQLite, Prefect
flow runs (ephemeral API). Promotion with full provenance, rejection, failures, the
one-in-flight lease, rollback. Each test starts from champion v1, trained once per session
(tests/conftest.py `champion_v1`), in its own copy of that home."""

import json
import uuid

import mlflow
import pytest
from typer.testing import CliRunner

from driftctl.app.cli import app
from driftctl.messages import DriftEvent
from driftctl.runtime.broker import ensure_topics
from driftctl.runtime.stack import configure_environment
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from flows.retrain import retrain, scheduled_retrain, switch_interval
from serving.kafka_io import read_topic
from serving.promotion import lease_name
from tests.streams import produce, readings, trigger, window
from training.registry import Registry

pytestmark = pytest.mark.integration

DRIFT_AT = 2_000


@pytest.fixture
def stack(champion_v1, home, monkeypatch):
    """The session's broker, holding 2,000 records before the drift and 1,500 after; a copy of
    the home in which champion v1 was trained from the first 2,000 (tests/conftest.py); a
    model-updates topic of this test's own that holds v1's announcement, as training it here would."""
    assert champion_v1.after[0] and len(champion_v1.before) == DRIFT_AT
    champion_v1.copy_to(home)
    monkeypatch.setenv("DRIFTCTL_KAFKA__TOPICS__MODEL_UPDATES", f"driftctl.model-updates.{uuid.uuid4().hex[:8]}")
    settings = Settings()
    configure_environment(settings)
    bootstrap = champion_v1.bootstrap
    ensure_topics(bootstrap, settings.kafka)
    champion_v1.announce(bootstrap, settings)
    assert Registry.from_settings(settings).champion().version == 1
    return settings, bootstrap, champion_v1.before, champion_v1.after


def updates(bootstrap, settings, count):
    messages = read_topic(bootstrap, settings.kafka, settings.kafka.topics.model_updates,
                          until=lambda got: len(got) >= count, timeout=15)
    return [json.loads(m.value) for m in messages]


def test_promotion_records_every_item_of_provenance_in_mlflow_and_the_ledger(stack):
    settings, bootstrap, _, after = stack
    event = DriftEvent(detector="error-adwin", kind="concept", index=2_140, statistic=0.31, threshold=0.05,
                       window={"errors": 900, "change_at_labelled": 2_100}, evidence={"mean_before": 0.02})
    cause = trigger("decision-drift", reason="drift confirmed by 1 event(s)", kind="drift",
                    event_ids=[event.id], evidence=[event.model_dump(mode="json")])
    drift_window = window(bootstrap, settings, after, start=DRIFT_AT)
    outcome = retrain(window=drift_window, trigger=cause)
    assert outcome["promoted"] and outcome["version"] == 2

    registry = Registry.from_settings(settings)
    ledger = Ledger(settings.ledger_url)
    client = registry.client
    version = client.get_model_version(registry.model_name, "2")
    run = client.get_run(version.run_id)
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    # The MLflow UI says why the version exists, in words.
    assert version.description.startswith("Drift retrain, decision decision-drift: ")
    assert "Challenger " in version.description
    assert "against the champion at 77.8 % on 450 holdout rows" in version.description
    # drift evidence: which statistic crossed which threshold over which window
    assert "error-adwin (concept) 0.31 vs threshold 0.05" in tags["driftctl.drift_evidence"]
    assert "change_at_labelled" in tags["driftctl.drift_evidence"]
    stored = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/evidence/trigger.json")
    assert stored["evidence"][0]["id"] == event.id and stored["evidence"][0]["threshold"] == 0.05
    assert any(a.path == "evidence" for a in client.list_artifacts(run.info.run_id))  # Evidently HTML report
    assert client.list_artifacts(run.info.run_id, "evidence")[0].path.endswith(".html") or \
        any(a.path.endswith(".html") for a in client.list_artifacts(run.info.run_id, "evidence"))
    # training data: topics, partitions, offsets, row count, content hash, via log_input
    assert tags["driftctl.window"] == drift_window.describe()
    assert settings.kafka.topics.telemetry in tags["driftctl.window"]
    assert metrics["training_rows"] == 1_500
    assert len(tags["driftctl.training_data_hash"]) == 16
    inputs = run.inputs.dataset_inputs
    assert inputs and inputs[0].dataset.name == drift_window.describe()
    assert json.loads(inputs[0].dataset.profile)["num_rows"] == 1_500
    # model kind, params, training time
    assert params["recipe"] == "gradient-boosting" and "model.max_iter" in params
    assert "HistGradientBoosting" in tags["driftctl.model_kind"]
    assert metrics["training_seconds"] > 0 and tags["driftctl.trained_at"].endswith("+00:00")
    # champion and challenger metrics, decision and reason
    assert metrics["challenger_accuracy"] > metrics["champion_accuracy"]
    assert tags["driftctl.decision"] == "promoted" and "beats champion" in tags["driftctl.decision_reason"]
    # model-version tags: the decision and when deployed / undeployed
    v2_tags, v1_tags = registry.version_tags(2), registry.version_tags(1)
    assert v2_tags["driftctl.decision_id"] == "decision-drift" and event.id in v2_tags["driftctl.event_ids"]
    assert v1_tags["driftctl.undeployed_at"] >= v1_tags["driftctl.deployed_at"]  # ISO 8601, UTC: sorts as text
    assert v2_tags["driftctl.deployed_at"] == v1_tags["driftctl.undeployed_at"]
    assert "/" in tags["driftctl.data_span"] and tags["driftctl.data_span"].endswith("+00:00")
    # the ledger: the same decision, and the alias history MLflow does not keep
    promotion = ledger.last_promotion(registry.model_name, 2)
    assert promotion.event_id == event.id
    assert promotion.payload["trigger"]["evidence"][0]["statistic"] == 0.31
    assert promotion.payload["window"]["telemetry"] == json.loads(drift_window.model_dump_json())["telemetry"]
    assert promotion.payload["evaluation"]["champion_accuracy"] is not None
    assert promotion.payload["evaluation"]["rows"] == 1_500 and promotion.payload["run_id"] == run.info.run_id
    history = ledger.alias_history(registry.model_name)
    assert [h["version"] for h in history] == [1, 2]
    assert history[0]["undeployed_at"] == history[1]["deployed_at"] and history[1]["undeployed_at"] is None
    # and every scorer was told
    assert [u["version"] for u in updates(bootstrap, settings, 2)] == [1, 2]
    assert updates(bootstrap, settings, 2)[1]["previous_version"] == 1


def test_a_worse_challenger_is_rejected_and_recorded(stack):
    settings, bootstrap, _, _ = stack
    # 1,050 records with coin-flip labels to train on, then 450 honest ones to judge on.
    noisy = produce(bootstrap, settings, readings(0, 1_050, drift_at=DRIFT_AT, seed=7), random_labels=True)
    honest = produce(bootstrap, settings, readings(1_050, 1_500, drift_at=DRIFT_AT, seed=7))
    outcome = retrain(window=window(bootstrap, settings, noisy + honest), trigger=trigger("decision-worse"))
    assert not outcome["promoted"] and outcome["version"] is None
    assert outcome["challenger_accuracy"] < outcome["champion_accuracy"]
    registry = Registry.from_settings(settings)
    assert registry.champion().version == 1
    assert len(registry.client.search_model_versions(f"name='{registry.model_name}'")) == 1
    rejection = Ledger(settings.ledger_url).entries("rejection")[0]
    assert "does not beat" in rejection.reason and rejection.payload["trigger"]["decision_id"] == "decision-worse"
    run = registry.client.get_run(rejection.payload["run_id"])
    assert run.data.tags["driftctl.decision"] == "rejected" and run.data.tags["driftctl.promote"] == "False"
    assert run.data.metrics["challenger_accuracy"] < run.data.metrics["champion_accuracy"]


def test_too_little_data_fails_records_it_and_leaves_the_champion(stack):
    settings, bootstrap, before, _ = stack
    with pytest.raises(Exception, match="labelled rows"):
        retrain(window=window(bootstrap, settings, before[:40]), trigger=trigger("decision-tiny"))
    registry = Registry.from_settings(settings)
    assert registry.champion().version == 1
    failure = Ledger(settings.ledger_url).entries("failure")[0]
    assert "champion unchanged" in failure.reason and "TooLittleData" in failure.reason
    assert failure.payload["trigger"]["decision_id"] == "decision-tiny"
    assert Ledger(settings.ledger_url).holder(lease_name(registry.model_name)) is None  # lease released


def test_mlflow_unreachable_fails_records_it_and_leaves_the_champion(stack, monkeypatch):
    settings, bootstrap, _, after = stack
    monkeypatch.setenv("DRIFTCTL_MLFLOW__TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on discard
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(Exception, match=r"127\.0\.0\.1:9"):  # whatever MLflow's client raises, it names the URI
        retrain(window=window(bootstrap, settings, after, start=DRIFT_AT), trigger=trigger("decision-offline"))
    assert Registry.from_settings(settings).champion().version == 1  # the real store never moved
    failure = Ledger(settings.ledger_url).entries("failure")[0]
    assert failure.payload["trigger"]["decision_id"] == "decision-offline" and "127.0.0.1:9" in failure.reason


def test_a_retrain_in_flight_makes_another_a_recorded_skip_and_a_duplicate_a_no_op(stack):
    settings, bootstrap, _, after = stack
    registry = Registry.from_settings(settings)
    ledger = Ledger(settings.ledger_url)
    drift_window = window(bootstrap, settings, after, start=DRIFT_AT)
    assert ledger.acquire(lease_name(registry.model_name), "decision-other/run-elsewhere", ttl=60)
    skipped = retrain(window=drift_window, trigger=trigger("decision-second"))
    assert skipped["skipped"] and "in flight" in skipped["reason"]
    assert ledger.entries("skipped")[0].payload["trigger"]["decision_id"] == "decision-second"
    assert registry.champion().version == 1
    ledger.release(lease_name(registry.model_name), "decision-other/run-elsewhere")
    first = retrain(window=drift_window, trigger=trigger("decision-once"))
    again = retrain(window=drift_window, trigger=trigger("decision-once"))
    assert first["promoted"] and again["skipped"] and "already ended" in again["reason"]
    assert registry.champion().version == 2
    assert len(registry.client.search_model_versions(f"name='{registry.model_name}'")) == 2


def test_scheduled_retrain_without_a_recorded_window_fails_and_records_it(stack):
    settings, _, _, _ = stack
    with pytest.raises(Exception, match="no training window recorded"):
        scheduled_retrain()
    assert "scheduled retrain failed" in Ledger(settings.ledger_url).entries("failure")[0].reason
    assert Registry.from_settings(settings).champion().version == 1


def test_scheduled_retrain_takes_the_window_the_monitor_recorded(stack):
    settings, bootstrap, _, after = stack
    recorded = window(bootstrap, settings, after, start=DRIFT_AT)
    Ledger(settings.ledger_url).append("window", model_name=settings.mlflow.model_name,
                                       payload={"window": recorded.model_dump(mode="json")})
    outcome = scheduled_retrain()
    assert outcome["promoted"] and outcome["version"] == 2
    tags = Registry.from_settings(settings).version_tags(2)
    assert tags["driftctl.trigger_kind"] == "schedule" and tags["driftctl.window"] == recorded.describe()


def test_rollback_command_moves_the_alias_back_announces_and_records_why(stack, monkeypatch):
    settings, bootstrap, _, after = stack
    assert retrain(window=window(bootstrap, settings, after, start=DRIFT_AT),
                   trigger=trigger("decision-v2"))["version"] == 2
    monkeypatch.setenv("DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS", bootstrap)
    runner = CliRunner()
    result = runner.invoke(app, ["rollback", "--reason", "pager: v2 misfires on site B", "--json"])
    assert result.exit_code == 0, result.output
    done = json.loads(result.output)
    assert (done["from_version"], done["to_version"], done["published"]) == (2, 1, True)
    registry = Registry.from_settings(settings)
    assert registry.champion().version == 1
    entry = Ledger(settings.ledger_url).entries("rollback")[0]
    assert entry.reason == "pager: v2 misfires on site B" and entry.model_version == 1
    assert entry.payload["from_version"] == 2 and entry.payload["automatic"] is False
    last = updates(bootstrap, settings, 3)[-1]
    assert last["version"] == 1 and last["rollback"] is True
    assert [h["version"] for h in Ledger(settings.ledger_url).alias_history(registry.model_name)] == [1, 2, 1]
    # --to names the version; a missing one is one clear line and a non-zero exit
    assert runner.invoke(app, ["rollback", "--to", "2"]).exit_code == 0
    assert registry.champion().version == 2
    from driftctl.app.cli import run

    monkeypatch.setattr("sys.argv", ["driftctl", "rollback", "--to", "9"])
    with pytest.raises(SystemExit) as exit_info:
        run()
    assert exit_info.value.code == 1
    history = runner.invoke(app, ["history", "--json"])
    timeline = json.loads(history.output)
    assert [e["kind"] for e in timeline["entries"]][-2:] == ["rollback", "rollback"]
    assert [h["version"] for h in timeline["champion_history"]] == [1, 2, 1, 2]


def test_provenance_command_reads_every_item_back(stack):
    settings, bootstrap, _, after = stack
    retrain(window=window(bootstrap, settings, after, start=DRIFT_AT), trigger=trigger("decision-audit"))
    result = CliRunner().invoke(app, ["provenance"])
    assert result.exit_code == 0, result.output
    audit = json.loads(result.output)
    assert audit["model"]["version"] == 2 and "model.learning_rate" in audit["model"]["params"]
    assert audit["model"]["kind"].startswith("gradient-boosting") and audit["model"]["trained_at"].endswith("+00:00")
    data = audit["training_data"]
    assert data["rows"] == 1_500 and data["content_hash"] and data["mlflow_inputs"][0]["context"] == "training"
    assert settings.kafka.topics.labels in data["window"]
    assert audit["metrics"]["champion_accuracy"] is not None
    assert audit["decision"]["id"] == "decision-audit" and audit["decision"]["outcome"] == "promoted"
    assert audit["deployment"]["served"][0]["undeployed_at"] is None
    assert "driftctl.deployed_at" in audit["deployment"]["version_tags"]
    assert any(path.endswith(".html") for path in audit["evidence_artifacts"])


def test_training_shortens_the_switch_interval_and_restores_it():
    import sys

    before = sys.getswitchinterval()
    with pytest.raises(RuntimeError), switch_interval(before / 10):
        assert sys.getswitchinterval() == pytest.approx(before / 10)
        raise RuntimeError("a failed fit")
    assert sys.getswitchinterval() == before
