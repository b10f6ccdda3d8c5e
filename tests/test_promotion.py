"""Crash-consistent promotion and rollback on the real broker and MLflow: the alias is the
truth scorers follow, its moves are compare-and-set, and rollbacks take the retrain lease."""

from __future__ import annotations

import threading
import time

import pytest

from driftctl.messages import ModelUpdate
from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
from driftctl.runtime.stack import configure_environment
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from serving.rollback import RollbackError, roll_back
from serving.scorer import Scorer
from serving.updates import publish_update
from tests.test_trust import fitted, register
from training.registry import Registry, RegistryError

pytestmark = pytest.mark.integration


def test_alias_moves_are_compare_and_set_and_rollbacks_take_the_lease(home):
    settings = Settings()
    configure_environment(settings)
    registry = Registry.from_settings(settings)
    model, frame, labels = fitted()
    v1, v2 = register(registry, model, frame, labels), register(registry, model, frame, labels)
    assert registry.move_champion(v1, "first", expected=None) is None
    with pytest.raises(RegistryError, match="moved meanwhile"):
        registry.move_champion(v2, "stale decision", expected=None)
    assert registry.move_champion(v2, "second", expected=v1).version == v1
    # A retried move (the alias already moved): what it replaced is the expected one, not v2 itself.
    assert registry.move_champion(v2, "second, retried", expected=v1).version == v1

    ledger = Ledger(settings.ledger_url)
    try:
        assert ledger.acquire(f"retrain:{registry.model_name}", "a-retrain", 60)
        with pytest.raises(RollbackError, match="in flight"):
            roll_back(settings, to=v1, registry=registry, ledger=ledger)
        assert registry.champion().version == v2
        ledger.release(f"retrain:{registry.model_name}", "a-retrain")
        assert roll_back(settings, to=v1, registry=registry, ledger=ledger).to_version == v1
    finally:
        ledger.close()


def test_a_scorer_at_start_follows_the_alias_not_the_topics_last_message(home):
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        settings = Settings()
        configure_environment(settings)
        ensure_topics(bootstrap, settings.kafka)
        registry = Registry.from_settings(settings)
        model, frame, labels = fitted()
        v1, v2 = register(registry, model, frame, labels), register(registry, model, frame, labels)
        registry.move_champion(v2, "promoted")
        publish_update(bootstrap, settings.kafka, ModelUpdate(name=registry.model_name, version=v2,
                                                              run_id=registry.ref(v2).run_id))
        registry.move_champion(v1, "rolled back without Kafka")  # not on the topic
        stop = threading.Event()
        scorer = Scorer(settings, bootstrap, registry, stop)
        thread = threading.Thread(target=scorer.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 90
        while scorer.current is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # the replayed update (version 2) has been read by now
        stop.set()
        thread.join(30)
    assert scorer.current is not None and scorer.current.ref.version == v1
    assert [version for version, _ in scorer.swaps] == [v1]
