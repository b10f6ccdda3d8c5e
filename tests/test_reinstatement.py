"""An archived champion comes back when its concept returns (DriftSettings.archive), live: version
1 learned the real labels, version 2 (the champion now) learned inverted ones, as if trained on
a concept that has since gone. Its first labels are already wrong, so the error-rate ADWIN has
no earlier regime to compare with; the holdout test (its live accuracy against its holdout's)
fires, the monitor judges the archived version 1 on the labelled records since, and reinstates
it through the promotion path (intent, lease, compare-and-set, announcement): the scorer serves
version 1 again, and the ledger records a reinstatement, no training.

Real Tansu broker started here, real MLflow store and ledger (SQLite) with champion v1 trained by the
flow (tests/conftest.py `champion_v1`), real scorer and monitor."""

from __future__ import annotations

import json
import threading

import pandas as pd
import pytest

from driftctl.app.history import ledger_history
from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
from driftctl.runtime.stack import configure_environment
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from serving.kafka_io import read_topic
from tests.streams import produce, readings
from tests.waiting import start_stages, wait_for
from training.datasets import to_frame
from training.evaluate import Evaluation
from training.recipes import make_classifier
from training.registry import Registry

pytestmark = pytest.mark.integration


def register_inverted(registry: Registry) -> int:
    rows = readings(0, 600, drift_at=10**9)
    frame = to_frame(r.record["features"] for r in rows)
    labels = pd.Series([1 - r.label for r in rows])
    # Its holdout said 0.95 on 300 rows: what its live accuracy is tested against.
    _, version = registry.record_candidate(
        model=make_classifier().fit(frame, labels), frame=frame, labels=labels,
        evaluation=Evaluation(0.95, None, 0.0, 300, True, "test"), params={}, tags={}, reference_rows=100,
        training_seconds=0.0, promote=True)
    assert version is not None
    return version


def test_an_archived_champion_is_reinstated_when_its_concept_returns_and_the_scorer_serves_it(champion_v1, home,
                                                                                              monkeypatch):
    monkeypatch.setenv("DRIFTCTL_DRIFT__ARCHIVE", "true")
    monkeypatch.setenv("DRIFTCTL_DRIFT__HOLDOUT_GAP", "true")
    monkeypatch.setenv("DRIFTCTL_DRIFT__ARCHIVE_PROBE", "60")
    monkeypatch.setenv("DRIFTCTL_DRIFT__MIN_TRAIN_ROWS", "100000")  # no retrain: the archive answers
    # The online learner knows the true concept all along here: judged against it too, v1 would stay archived.
    monkeypatch.setenv("DRIFTCTL_DRIFT__ARCHIVE_ONLINE_Z", "null")
    monkeypatch.setenv("DRIFTCTL_SERVING__SERVE", "champion")
    monkeypatch.setenv("DRIFTCTL_SERVING__LEARNER", "inline")
    champion_v1.copy_to(home)
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        monkeypatch.setenv("DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS", bootstrap)
        settings = Settings()
        configure_environment(settings)
        ensure_topics(bootstrap, settings.kafka)
        champion_v1.announce(bootstrap, settings)
        registry = Registry.from_settings(settings)
        ledger = Ledger(settings.ledger_url)
        one, two = registry.champion().version, register_inverted(registry)
        # Version 2 served after version 1 (the ledger's alias history is the archive).
        ledger.append("promotion", reason="test", model_name=registry.model_name, model_version=two)
        registry.move_champion(two, "test")

        def no_retrain(window, trigger):
            raise AssertionError("a reinstatement needs no training")

        stop = threading.Event()
        monitor, scorer, stages = start_stages(settings, bootstrap, registry, ledger, no_retrain, stop)

        def state():
            return (f"labelled {monitor.labelled}, events {[e.detector for e in monitor.events]}, monitor champion "
                    f"{monitor.champion and monitor.champion.version}, scorer serves "
                    f"{scorer.current and scorer.current.ref.version}, reinstatements {monitor.reinstatements}")

        try:
            wait_for(lambda: scorer.current is not None and monitor.champion is not None, 60, state, alive=stages)
            assert scorer.current.ref.version == two
            # The real labels (past the records champion v1 learned from): the holdout test fires on
            # version 2's first 50; the archive is judged on the 60 labelled after that.
            produce(bootstrap, settings, readings(4_000, 4_200, drift_at=10**9, seed=3))
            wait_for(lambda: monitor.events, 120, state, alive=stages)
            seq = 4_400
            produce(bootstrap, settings, readings(4_200, seq, drift_at=10**9, seed=3))
            wait_for(lambda: monitor.reinstatements, 180, state, alive=stages)
            wait_for(lambda: scorer.current.ref.version == one and monitor.champion.version == one, 60, state,
                     alive=stages)
            after = readings(seq, seq + 50, drift_at=10**9, seed=3)
            produce(bootstrap, settings, after)
            wanted = {r.record["id"] for r in after}
            served = {json.loads(m.value)["id"]: json.loads(m.value)["model"]["version"] for m in read_topic(
                bootstrap, settings.kafka, settings.kafka.topics.predictions,
                until=lambda got: wanted <= {json.loads(m.value)["id"] for m in got}, timeout=60)}
        finally:
            stop.set()
            for stage in stages:
                stage.join(timeout=60)
        assert not any(stage.is_alive() for stage in stages)
        assert {served[i] for i in wanted} == {one}
        assert "holdout-gap" in [e.detector for e in monitor.events], state()
        assert registry.champion().version == one
        entry = ledger.latest("reinstatement", model_name=registry.model_name)
        assert entry is not None and entry.model_version == one, state()
        assert entry.payload["from_version"] == two and entry.payload["automatic"] is True
        verdict = entry.payload["evidence"]["archive"]
        assert verdict["accuracy"] > verdict["champion_accuracy"] + settings.drift.archive_margin
        assert not ledger.open_intents(registry.model_name)
        history = ledger_history(settings)
        assert [(h["version"], h["deployed_by"]) for h in history["champion_history"]] == [
            (one, "promotion"), (two, "promotion"), (one, "reinstatement")]
        ledger.close()
