"""The whole loop on the real stack: Tansu broker, MLflow on SQLite, Prefect flow runs.
The demo at its default scale runs once per session (tests/conftest.py `demo`; the
operator's tests watch the same run live): these tests read what it did."""

import json

import pytest

from driftctl.stores.ledger import Ledger
from training.registry import Registry

pytestmark = pytest.mark.integration


@pytest.fixture
def loop(demo_result):
    return demo_result


def test_no_drift_before_the_injected_point_and_drift_after(loop):
    settings, result = loop
    records = [e["record"] for e in result.drift_events]
    assert records, "no drift event at all"
    assert min(records) >= settings.stream.drift_at
    assert result.detected_at is not None and result.detected_at >= settings.stream.drift_at
    assert "error-adwin" in {e["detector"] for e in result.drift_events}


def test_exactly_one_promotion_to_version_2_whose_provenance_names_the_drift_event(loop):
    settings, result = loop
    promotions = [o for o in result.outcomes if o.get("promoted")]
    assert [o["version"] for o in promotions] == [1, 2]  # the bootstrap champion, then one promotion
    registry = Registry.from_settings(settings)
    champion = registry.champion()
    assert champion.version == 2 and champion.run_id == result.retrain_run_id
    event_ids = {e["id"] for e in result.drift_events}
    promotion = Ledger(settings.ledger_url).last_promotion(champion.name, 2)
    assert promotion.event_id in event_ids
    assert set(promotion.payload["trigger"]["event_ids"]) <= event_ids
    tags = registry.version_tags(2)
    assert promotion.event_id in tags["driftctl.event_ids"].split(",")
    assert tags["driftctl.decision_id"] == promotion.payload["trigger"]["decision_id"]


def test_every_record_has_exactly_one_prediction(loop):
    settings, result = loop
    ids = [p["id"] for p in result.prediction_log]
    assert result.records >= settings.stream.records
    assert len(ids) == result.records
    assert len(set(ids)) == len(ids)
    assert result.dead_letters == 0


def test_predictions_after_the_swap_carry_version_2(loop):
    _, result = loop
    by_time = sorted(result.prediction_log, key=lambda p: (p["scored_at"], p["source"]["offset"]))
    versions = [p["model"]["version"] for p in by_time]
    first_v2 = versions.index(2)
    assert set(versions[:first_v2]) == {1}
    assert set(versions[first_v2:]) == {2}
    assert all(p["model"]["run_id"] == result.retrain_run_id for p in by_time[first_v2:])
    assert all(p["online"]["n_learned"] >= 0 and "source" in p for p in by_time)


def test_the_demo_measures_decision_to_serving_and_the_stale_champion(loop):
    _, result = loop
    # From the ledger's decision to the first record version 2 scored: a retrain ran between.
    assert result.decision_to_serving_s is not None and 0 < result.decision_to_serving_s < result.seconds
    # Version 1 went on scoring after the detection while the retrain ran.
    assert 0 < result.records_on_stale_champion < result.records - result.drift_at
    document = json.loads(result.to_json())
    assert document["decision_to_serving_s"] == result.decision_to_serving_s
    assert document["records_on_stale_champion"] == result.records_on_stale_champion


def test_promotion_recovers_accuracy(loop):
    _, result = loop
    assert result.accuracy_before_drift > 0.9
    assert result.accuracy_after_promotion > result.accuracy_after_drift + 0.1
    # serve=best: while the retrain runs, serving the better of champion, online learner and blend
    # does at least as well as the stale champion alone.
    assert result.served_accuracy_after_drift >= result.accuracy_after_drift - 0.01


def test_the_monitor_records_the_window_a_scheduled_retrain_takes(loop):
    settings, result = loop
    from driftctl.messages import TrainingWindow

    latest = Ledger(settings.ledger_url).latest("window", model_name=settings.mlflow.model_name)
    window = TrainingWindow.model_validate(latest.payload["window"])
    # The newest checkpoint of all the labelled records (the stream goes on past `records` while a
    # retrain is pending or the new champion is young: on a busy machine it can).
    end = result.records - result.records % settings.retrain.checkpoint_every
    assert window.positions == (end - settings.retrain.scheduled_rows, end)
    assert sum(e - s for s, e in window.labels.values()) >= settings.retrain.scheduled_rows


def test_the_promoted_champion_passes_its_probation(loop):
    settings, _ = loop
    ledger = Ledger(settings.ledger_url)
    kept = [e for e in ledger.entries("decision") if e.payload.get("action") == "keep"]
    assert [e.model_version for e in kept] == [2]
    assert kept[0].payload["probation"]["rows"] == settings.retrain.probation_rows
    assert ledger.entries("rollback") == []
    assert [h["version"] for h in ledger.alias_history(settings.mlflow.model_name)] == [1, 2]
