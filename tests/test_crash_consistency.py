"""Crash-consistent promotion and rollback: a process doing one is killed with SIGKILL at each
step (after the intent, the alias move, the announcement, the record; `driftctl.runtime.faults`),
then the start-up reconciliation runs, and the alias, the ledger, the model-updates topic and a
scorer that kept running through the crash must all name the same version. Real MLflow store,
real broker, a real process killed; one tiny model registered twice (versions 1 and 2)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from driftctl.messages import ModelUpdate
from driftctl.runtime.broker import EmbeddedBroker, ensure_topics, free_loopback_port
from driftctl.runtime.faults import VARIABLE
from driftctl.runtime.stack import configure_environment
from driftctl.settings import Settings
from driftctl.stores.ledger import INTENT_OUTCOMES, Ledger
from serving.kafka_io import read_topic
from serving.promotion import Change, ChangeFailed, Lease, change_champion, reconcile_if_free
from serving.scorer import Scorer
from tests.crash_child import promote_v2
from tests.homes import clone_home
from tests.test_trust import fitted, register
from tests.waiting import wait_for
from training.registry import Registry

pytestmark = pytest.mark.integration

LEASE = 1.0  # seconds: a killed holder's lease expires this long after its last renewal

@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A home with versions 1 and 2 registered, version 1 champion and recorded as promoted."""
    home = tmp_path_factory.mktemp("crash-template") / "home"
    saved = dict(os.environ)
    try:
        settings = Settings(home=home)
        configure_environment(settings)
        registry = Registry.from_settings(settings)
        model, frame, labels = fitted()
        assert [register(registry, model, frame, labels) for _ in range(2)] == [1, 2]
        ledger = Ledger(settings.ledger_url)
        ref = registry.ref(1)
        update = ModelUpdate(name=ref.name, version=1, run_id=ref.run_id, reason="bootstrap")
        with Lease(ledger, registry.model_name, "bootstrap", LEASE) as lease:
            change_champion(Change("promotion", update, None, "bootstrap"), registry=registry, ledger=ledger,
                            lease=lease, bootstrap=None, kafka=settings.kafka)
        ledger.close()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return home


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker() as running:
        yield running.bootstrap_servers


# (kind, step where the process dies) -> the version every part must agree on afterwards.
CASES = {("promotion", "intent"): 1, ("promotion", "alias"): 2, ("promotion", "announce"): 2,
         ("promotion", "record"): 2,
         ("rollback", "intent"): 2, ("rollback", "alias"): 1, ("rollback", "announce"): 1, ("rollback", "record"): 1}


@pytest.mark.parametrize(("kind", "step"), list(CASES))
def test_a_kill_at_each_step_leaves_alias_ledger_and_scorers_agreeing(kind, step, template, broker, tmp_path):
    home = clone_home(template, tmp_path / "home")
    case = f"crash-{kind}-{step}"
    settings = Settings(home=home)
    settings.kafka.topics.model_updates = f"{case}.model-updates"
    settings.kafka.topics.telemetry = f"{case}.telemetry"
    settings.kafka.topics.labels = f"{case}.labels"
    settings.kafka.scorer_group = f"{case}-scorers"
    settings.retrain.lease_seconds = LEASE
    configure_environment(settings)
    ensure_topics(broker, settings.kafka)
    registry, ledger = Registry.from_settings(settings), Ledger(settings.ledger_url)
    if kind == "rollback":  # version 2 promoted first (cleanly), then rolled back to 1
        with Lease(ledger, registry.model_name, "set-up", LEASE) as lease:
            promote_v2(registry, ledger, lease, broker, settings)
    before = registry.champion().version

    stop = threading.Event()
    scorer = Scorer(settings, broker, registry, stop)
    thread = threading.Thread(target=scorer.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: scorer.current is not None, 90, "the scorer's first model")
        assert scorer.current.ref.version == before

        child = subprocess.run([sys.executable, "-m", "tests.crash_child", settings.model_dump_json(), broker, kind],
                               env={**os.environ, VARIABLE: f"{kind}:{step}", "PYTHONPATH": str(Path.cwd())},
                               capture_output=True, text=True, timeout=180)
        assert child.returncode == -9, f"not killed at {kind}:{step}: {child.returncode}\n{child.stderr[-3000:]}"

        # The restart: what the monitor, the flow and the rollback command run first, once the dead
        # holder's lease has expired.
        done: list = []
        wait_for(lambda: done.append(reconcile_if_free(registry=registry, ledger=ledger, bootstrap=broker,
                                                       kafka=settings.kafka, holder="restarted",
                                                       ttl=LEASE)) or done[-1] is not None,
                 30, "the lease of the killed process to expire")
        expected = CASES[(kind, step)]
        assert registry.champion().version == expected
        # The ledger: every intent ended exactly once, and its last alias move names the alias.
        assert ledger.open_intents(registry.model_name) == []
        intents = ledger.entries("intent")
        outcomes = [e for e in ledger.entries() if e.kind in INTENT_OUTCOMES and "intent" in e.payload]
        for intent in intents:
            assert [o.payload["intent"] for o in outcomes].count(intent.id) == 1, (intent, outcomes)
        assert ledger.alias_history(registry.model_name)[-1]["version"] == expected
        assert (step == "record") == (done[-1] == []), done  # only the last step leaves nothing to end
        # The topic's last word and the scorer that ran through it all.
        updates = read_topic(broker, settings.kafka, settings.kafka.topics.model_updates,
                             until=lambda got: False, timeout=3)
        assert ModelUpdate.from_json(updates[-1].value).version == expected
        wait_for(lambda: scorer.current.ref.version == expected, 60,
                 lambda: f"the scorer to serve {expected}, it serves {scorer.current.ref.version}")
    finally:
        stop.set()
        thread.join(30)
        ledger.close()


def test_a_failed_announcement_puts_the_alias_back_and_records_it_against_its_intent(template, tmp_path):
    home = clone_home(template, tmp_path / "home")
    settings = Settings(home=home)
    settings.kafka.send_timeout = 2.0  # each attempt to announce gives up after 2 s
    configure_environment(settings)
    registry, ledger = Registry.from_settings(settings), Ledger(settings.ledger_url)
    gone = f"127.0.0.1:{free_loopback_port()}"  # nothing listens: the broker is away
    try:
        with Lease(ledger, registry.model_name, "decision-v2/here", LEASE) as lease, \
                pytest.raises(ChangeFailed, match="alias restored to 1"):
            promote_v2(registry, ledger, lease, gone, settings)
        assert registry.champion().version == 1
        assert ledger.open_intents(registry.model_name) == []
        failure = ledger.latest("failure")
        intent = ledger.latest("intent")
        assert failure.payload["intent"] == intent.id and intent.model_version == 2
        assert "alias restored to 1" in failure.payload["notes"][0]
        assert ledger.alias_history(registry.model_name)[-1]["version"] == 1
    finally:
        ledger.close()


def test_the_monitor_ends_an_interrupted_promotion_when_it_starts(template, broker, tmp_path):
    """The restart is a real monitor start: a promotion killed after the alias moved is finished
    (announced, recorded) before the monitor follows the champion."""
    from serving.monitor import Monitor

    home = clone_home(template, tmp_path / "home")
    settings = Settings(home=home)
    for topic in ("model_updates", "telemetry", "labels", "predictions"):
        setattr(settings.kafka.topics, topic, f"crash-monitor.{topic}")
    settings.kafka.monitor_group = "crash-monitor"
    settings.retrain.lease_seconds = LEASE
    settings.evidently.snapshot_interval = 0
    configure_environment(settings)
    ensure_topics(broker, settings.kafka)
    child = subprocess.run([sys.executable, "-m", "tests.crash_child", settings.model_dump_json(), broker, "promotion"],
                           env={**os.environ, VARIABLE: "promotion:alias", "PYTHONPATH": str(Path.cwd())},
                           capture_output=True, text=True, timeout=180)
    assert child.returncode == -9, child.stderr[-3000:]
    registry, ledger = Registry.from_settings(settings), Ledger(settings.ledger_url)
    assert ledger.open_intents(registry.model_name)  # half done: the alias names 2, nothing recorded
    time.sleep(LEASE + 0.2)
    stop = threading.Event()
    monitor = Monitor(settings, broker, registry, ledger, lambda w, t: {"promoted": False}, stop)
    thread = threading.Thread(target=monitor.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: monitor.champion is not None, 60, "the monitor's champion")
        assert monitor.champion.version == 2
        assert ledger.open_intents(registry.model_name) == []
        assert ledger.latest("promotion").model_version == 2
        assert ledger.latest("promotion").payload["reconciled"]
        updates = read_topic(broker, settings.kafka, settings.kafka.topics.model_updates,
                             until=lambda got: len(got) >= 1, timeout=15)
        assert ModelUpdate.from_json(updates[-1].value).version == 2
    finally:
        stop.set()
        thread.join(30)
        ledger.close()
