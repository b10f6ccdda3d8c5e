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


def test_a_provisional_champion_then_the_full_one_then_the_drifts_retrains(loop):
    settings, result = loop
    drift, stream = settings.drift, settings.stream
    # Labels 300 records late: at 2,000 records scored a provisional champion learns the labels in, and
    # the full one on the first 2,000 replaces it without a gate once they are in (drift.policy.Bootstrap).
    ledger = Ledger(settings.ledger_url)
    asked = [e.reason for e in ledger.entries("decision")[::-1] if (e.reason or "").startswith("bootstrap:")]
    assert len(asked) == 2 and "a provisional champion on" in asked[0], asked  # oldest first
    if [s["role"] for s in result.bootstrap] == ["bootstrap"]:
        # Its fit failed (a loaded machine: the flow's local API server slow to start, no ledger entry):
        # the online learner served until the full one.
        assert "error" in result.outcomes[0] and not result.outcomes[0]["promoted"], result.outcomes
        full = result.bootstrap[0]
    else:
        assert [(s["role"], s["promoted"]) for s in result.bootstrap] == [("provisional", True), ("bootstrap", True)]
        provisional, full = result.bootstrap
        assert drift.early_champion_rows <= provisional["rows"] <= drift.warmup - stream.label_delay
        assert full["version"] > provisional["version"] and provisional["served"] > 0
    assert full["rows"] == drift.warmup and full["served"] > 0
    assert result.champion_before_drift == full["version"]
    # One drift, one incident: a first try on few rows (when the change hurt enough), then the full window
    # since the change, at most two retrains; the last one promoted serves.
    roles = [s["role"] for s in result.retrains]
    assert roles in (["full window"], ["first try", "full window"]), result.retrains
    assert all(s["rows"] > 0 for s in result.retrains)
    promoted = [s for s in result.retrains if s["promoted"]]
    assert promoted and result.champion_after_drift == promoted[-1]["version"] > full["version"]
    registry = Registry.from_settings(settings)
    champion = registry.champion()
    assert champion.version == result.champion_after_drift and champion.run_id == result.retrain_run_id
    event_ids = {e["id"] for e in result.drift_events}
    incidents = set()
    for step in promoted:  # each promotion's provenance names the drift's events and its decision
        promotion = ledger.last_promotion(champion.name, step["version"])
        assert promotion.event_id in event_ids
        assert set(promotion.payload["trigger"]["event_ids"]) <= event_ids
        assert promotion.payload["trigger"]["decision_id"] == step["decision_id"]
        incidents.add(promotion.payload["trigger"]["incident"])
        tags = registry.version_tags(step["version"])
        assert promotion.event_id in tags["driftctl.event_ids"].split(",")
        assert tags["driftctl.decision_id"] == step["decision_id"]
    assert len(incidents) == 1 and None not in incidents


def test_every_record_has_exactly_one_prediction(loop):
    settings, result = loop
    ids = [p["id"] for p in result.prediction_log]
    assert result.records >= settings.stream.records
    assert len(ids) == result.records
    assert len(set(ids)) == len(ids)
    assert result.dead_letters == 0


def test_each_champion_serves_from_its_promotion_until_the_next(loop):
    _, result = loop
    by_time = sorted(result.prediction_log, key=lambda p: (p["scored_at"], p["source"]["offset"]))
    blocks = [p["model"]["version"] for p in by_time]
    blocks = [v for i, v in enumerate(blocks) if i == 0 or blocks[i - 1] != v]  # each version's run, in order
    promoted = [s["version"] for s in result.bootstrap + result.retrains if s["promoted"] and s["served"]]
    assert blocks == promoted  # the scorer swaps once to each new champion, and never back
    final = [p for p in by_time if p["model"]["version"] == result.champion_after_drift]
    assert final and all(p["model"]["run_id"] == result.retrain_run_id for p in final)
    assert all(p["online"]["n_learned"] >= 0 and "source" in p for p in by_time)


def test_the_demo_measures_decision_to_serving_and_the_stale_champion(loop):
    _, result = loop
    # From the ledger's decision of the drift's first promoted retrain to the first record its version
    # scored: a retrain ran between.
    assert result.decision_to_serving_s is not None and 0 < result.decision_to_serving_s < result.seconds
    # The bootstrap champion went on scoring after the detection while the retrain ran.
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


def test_the_champion_after_the_drift_passes_its_probation(loop):
    settings, result = loop
    ledger = Ledger(settings.ledger_url)
    kept = [e.model_version for e in ledger.entries("decision") if e.payload.get("action") == "keep"]
    after = [s["version"] for s in result.retrains if s["promoted"]]
    assert result.champion_after_drift in kept and set(kept) <= set(after)
    assert all(e.payload["probation"]["rows"] == settings.retrain.probation_rows
               for e in ledger.entries("decision") if e.payload.get("action") == "keep")
    assert ledger.entries("rollback") == []
    promoted = [s["version"] for s in result.bootstrap + result.retrains if s["promoted"]]
    assert [h["version"] for h in ledger.alias_history(settings.mlflow.model_name)] == promoted
