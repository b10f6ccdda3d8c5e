"""The automatic rollback through the real chain, nothing forged: a real scorer serves champion
v1; the labelling goes wrong (every label inverted), the real monitor sees the champion's error
jump, decides a retrain, and the real retrain flow (run by Prefect, in-process as `driftctl
monitor` runs it) trains on the bad labels. Judged on a holdout of the same bad labels, the
challenger wins honestly and is promoted, announced, and served. The labelling is fixed; on the
next labelled records the monitor's probation finds the new champion far worse than the one it
replaced and rolls back. Afterwards the alias, the ledger and what the scorer serves agree.

Real Tansu broker started here, real MLflow store (SQLite) with champion v1 trained by the flow
(tests/conftest.py `champion_v1`), a real Prefect API server for the flow runs."""

import json
import threading
import time

import pytest

from driftctl.messages import Action
from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
from driftctl.runtime.stack import configure_environment
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from flows.trigger import make_retrain
from serving.kafka_io import read_topic
from tests.streams import produce, readings
from tests.waiting import start_stages, wait_for
from training.registry import Registry

pytestmark = pytest.mark.integration

NO_DRIFT = 10**9  # the features keep their meaning: only the labels go wrong


def test_a_bad_promotion_by_the_real_flow_is_rolled_back_and_everything_agrees(champion_v1, home, monkeypatch):
    monkeypatch.setenv("DRIFTCTL_RETRAIN__PROBATION_ROWS", "200")
    monkeypatch.setenv("DRIFTCTL_DRIFT__MIN_TRAIN_ROWS", "600")  # a short window, so the test is quick
    monkeypatch.setenv("DRIFTCTL_SERVING__SERVE", "champion")  # what is served is the champion's prediction
    monkeypatch.setenv("DRIFTCTL_SERVING__LEARNER", "inline")
    champion_v1.copy_to(home)
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        monkeypatch.setenv("DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS", bootstrap)
        settings = Settings()
        configure_environment(settings)  # the flow builds its settings from the environment
        ensure_topics(bootstrap, settings.kafka)
        champion_v1.announce(bootstrap, settings)
        registry = Registry.from_settings(settings)
        ledger = Ledger(settings.ledger_url)
        assert registry.champion().version == 1

        stop = threading.Event()
        retrain = make_retrain(settings)  # InProcessRetrain: the `retrain` flow, run by Prefect
        monitor, scorer, stages = start_stages(settings, bootstrap, registry, ledger, retrain, stop)

        def state():
            return (f"labelled {monitor.labelled}, events {[e.detector for e in monitor.events]}, decisions "
                    f"{[d.action.value for d in monitor.decisions]}, outcomes {monitor.outcomes}, monitor champion "
                    f"{monitor.champion and monitor.champion.version}, scorer serves "
                    f"{scorer.current and scorer.current.ref.version}, scored {scorer.scored}, "
                    f"rollbacks {len(monitor.rollbacks)}")

        seq = 4_000  # past the records champion v1 learned from

        def stream(n, *, flipped):
            nonlocal seq
            batch = readings(seq, seq + n, drift_at=NO_DRIFT, seed=7)
            produce(bootstrap, settings, batch, flip_labels=flipped)
            seq += n
            return batch

        try:
            wait_for(lambda: scorer.current is not None and monitor.champion is not None, 60, state, alive=stages)
            assert scorer.current.ref.version == 1 and monitor.champion.version == 1

            # 1. The labels go wrong. The monitor decides a retrain once enough of them are labelled.
            def caught_up():  # scored and joined: the monitor judges a record once its prediction is in
                return scorer.scored >= seq - 4_000 and monitor.labelled >= seq - 4_000

            for _ in range(10):
                stream(300, flipped=True)
                wait_for(caught_up, 90, state, alive=stages)
                time.sleep(1.0)  # the last predictions joined
                if any(d.action is Action.RETRAIN for d in monitor.decisions):
                    break
            assert any(d.action is Action.RETRAIN for d in monitor.decisions), state()
            wait_for(lambda: monitor.outcomes, 120, state, alive=stages)
            outcome = monitor.outcomes[0]
            assert outcome["promoted"] and outcome["version"] == 2, outcome
            # Honest by its own gate: on the bad labels' holdout the challenger did beat v1.
            assert outcome["challenger_accuracy"] > outcome["champion_accuracy"] + settings.drift.promote_margin
            wait_for(lambda: scorer.current.ref.version == 2 and monitor.probation is not None, 60, state,
                     alive=stages)

            # 2. The labelling is fixed. Version 2, trained on inverted labels, now does badly.
            served_by_v2 = []
            for _ in range(10):
                served_by_v2 += stream(100, flipped=False)
                if monitor.rollbacks:
                    break
                wait_for(lambda: monitor.rollbacks or caught_up(), 90, state, alive=stages)
                time.sleep(1.0)
            wait_for(lambda: monitor.rollbacks, 60, state, alive=stages)
            wait_for(lambda: scorer.current.ref.version == 1 and monitor.champion.version == 1, 60, state,
                     alive=stages)

            # 3. What is served after the rollback: version 1 again.
            after = stream(100, flipped=False)
            wanted = {r.record["id"] for r in after} | {r.record["id"] for r in served_by_v2}
            predictions = {}
            for message in read_topic(bootstrap, settings.kafka, settings.kafka.topics.predictions,
                                      until=lambda got: wanted <= {json.loads(m.value)["id"] for m in got},
                                      timeout=60):
                value = json.loads(message.value)
                predictions.setdefault(value["id"], set()).add(value["model"]["version"])
        finally:
            stop.set()
            for stage in stages:
                stage.join(timeout=60)
            retrain.close()

        assert not any(stage.is_alive() for stage in stages)
        assert {v for r in after for v in predictions[r.record["id"]]} == {1}
        assert 2 in {v for r in served_by_v2 for v in predictions[r.record["id"]]}  # v2 did serve, for a while

        # The alias, the ledger, the model-updates topic and the scorer agree: version 1.
        assert registry.champion().version == 1
        assert scorer.current.ref.version == 1 and [v for v, _ in scorer.swaps] == [1, 2, 1]
        assert [h["version"] for h in ledger.alias_history(registry.model_name)] == [1, 2, 1]
        promotion = ledger.latest("promotion", model_name=registry.model_name)
        assert promotion.model_version == 2 and promotion.payload["trigger"]["kind"] == "drift"
        assert promotion.payload["trigger"]["decision_id"] == next(
            d.id for d in monitor.decisions if d.action is Action.RETRAIN)
        rollback = ledger.latest("rollback", model_name=registry.model_name)
        assert rollback.id > promotion.id and rollback.payload["automatic"] is True
        assert "automatic rollback" in rollback.reason
        assert rollback.payload["from_version"] == 2 and rollback.model_version == 1
        probation = rollback.payload["evidence"]["probation"]
        assert probation["rows"] >= settings.retrain.probation_rows and probation["version"] == 2
        assert probation["previous_accuracy"] > probation["champion_accuracy"] + settings.retrain.rollback_margin
        assert not ledger.open_intents(registry.model_name)  # every change ended
        updates = [json.loads(m.value) for m in read_topic(
            bootstrap, settings.kafka, settings.kafka.topics.model_updates, until=lambda got: len(got) >= 3,
            timeout=15)]
        assert [(u["version"], bool(u.get("rollback"))) for u in updates] == [(1, False), (2, False), (1, True)]
        ledger.close()
