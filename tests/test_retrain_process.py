"""The in-process retrain path runs its flow in a warm child process (flows.trigger.ChildProcessRetrain):
the outcome and the flow's exceptions come back to the monitor as from a call in its own process; a child
that dies mid-flow is recorded as the decision's failure, frees the decision's lease, and is replaced."""

import os

import pytest

from driftctl.messages import RetrainTrigger, TrainingWindow
from driftctl.runtime.stack import configure_environment
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from flows.trigger import ChildProcessRetrain, RetrainProcessDied
from serving.promotion import lease_name

WINDOW = TrainingWindow(bootstrap_servers="", telemetry_topic="t", labels_topic="l", telemetry={}, labels={},
                        positions=(0, 0))


def test_the_flow_runs_in_a_child_that_answers_raises_and_is_replaced_when_it_dies(home):
    settings = Settings()
    configure_environment(settings)
    retrain = ChildProcessRetrain(settings, flow="tests.fake_flows:retrain")
    ledger = Ledger.from_settings(settings)
    try:
        first = retrain(WINDOW, RetrainTrigger(reason="ok"))
        assert first["pid"] not in (os.getpid(), None) and first["api"] == retrain.api.api_url()
        assert retrain(WINDOW, RetrainTrigger(reason="ok"))["pid"] == first["pid"]  # warm: the same process

        with pytest.raises(ValueError, match="no labelled rows"):
            retrain(WINDOW, RetrainTrigger(reason="raise"))

        dying = RetrainTrigger(reason="die", event_ids=("drift-1",))
        with pytest.raises(RetrainProcessDied, match="exited with code 3"):
            retrain(WINDOW, dying)
        failure = ledger.latest("failure")
        assert failure is not None and failure.payload["trigger"]["decision_id"] == dying.decision_id
        assert ledger.holder(lease_name(settings.mlflow.model_name)) is None  # not left to expire

        again = retrain(WINDOW, RetrainTrigger(reason="ok"))
        assert again["pid"] != first["pid"]
    finally:
        retrain.close()
        ledger.close()


def test_a_child_grown_past_its_bound_is_replaced_between_runs(home, monkeypatch):
    monkeypatch.setenv("DRIFTCTL_RETRAIN__CHILD_MAX_GROWTH_MB", "32")
    settings = Settings()
    configure_environment(settings)
    retrain = ChildProcessRetrain(settings, flow="tests.fake_flows:retrain")
    try:
        first = retrain(WINDOW, RetrainTrigger(reason="ok"))["pid"]
        assert retrain(WINDOW, RetrainTrigger(reason="ok"))["pid"] == first  # not grown: kept warm
        assert retrain(WINDOW, RetrainTrigger(reason="grow"))["pid"] == first  # answered, then replaced
        assert retrain(WINDOW, RetrainTrigger(reason="ok"))["pid"] != first
    finally:
        retrain.close()


def test_by_default_a_child_left_a_tenth_larger_by_a_run_is_replaced(home):
    # A drift retrain's window (20,000 rows against the bootstrap's 2,000) left the ~460 MB child 52 MB
    # larger for the rest of the 2M soak (round 10): the default bound must catch that, not only 256 MB.
    settings = Settings()
    configure_environment(settings)
    retrain = ChildProcessRetrain(settings, flow="tests.fake_flows:retrain")
    try:
        first = retrain(WINDOW, RetrainTrigger(reason="ok"))["pid"]
        assert retrain(WINDOW, RetrainTrigger(reason="grow"))["pid"] == first  # 64 MB kept by the run
        assert retrain(WINDOW, RetrainTrigger(reason="ok"))["pid"] != first
    finally:
        retrain.close()
