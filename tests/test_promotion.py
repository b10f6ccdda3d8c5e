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


def test_a_held_lease_is_renewed_and_a_lost_one_moves_nothing(home):
    """The lease outlives its time-to-live while its holder works (renewed by a thread); a holder
    whose renewals stopped (a process frozen past it) and whose lease was taken over is fenced off:
    the alias does not move and the intent it wrote is ended by a failure."""
    from sqlalchemy import select

    from driftctl.stores.ledger import leases
    from serving.promotion import Change, ChangeFailed, Lease, change_champion
    from tests.waiting import wait_for

    settings = Settings()
    configure_environment(settings)
    registry = Registry.from_settings(settings)
    model, frame, labels = fitted()
    v1, v2 = register(registry, model, frame, labels), register(registry, model, frame, labels)
    registry.move_champion(v1, "first", expected=None)
    ledger = Ledger(settings.ledger_url)

    def expires() -> float:
        with ledger.engine.connect() as conn:
            return conn.execute(select(leases.c.expires_at).where(leases.c.name == lease.name)).scalar_one()

    try:
        lease = Lease(ledger, registry.model_name, "a-slow-flow", 3.0)
        assert lease.acquire()
        first = expires()
        wait_for(lambda: expires() > first, 30, "a renewal")  # every ttl / 3
        assert not ledger.acquire(lease.name, "another", 3.0)  # held: renewed, not expired
        lease._stop.set()  # its renewals stop; it expires and is taken over
        wait_for(lambda: ledger.acquire(lease.name, "the-next-flow", 60.0), 30, "the lease expiring")
        update = ModelUpdate(name=registry.model_name, version=v2, run_id=registry.ref(v2).run_id,
                             previous_version=v1, reason="late")
        with pytest.raises(ChangeFailed, match="LeaseLost"):
            change_champion(Change("promotion", update, registry.ref(v1), "late", {}, None), registry=registry,
                            ledger=ledger, lease=lease, bootstrap=None, kafka=settings.kafka)
        assert registry.champion().version == v1
        assert not ledger.open_intents(registry.model_name)
        assert "LeaseLost" in ledger.entries("failure")[0].reason
    finally:
        ledger.close()
