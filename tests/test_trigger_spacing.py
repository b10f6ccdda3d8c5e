"""The monitor's requests to the deployment are spaced beyond the trigger's `within`: the
trigger runs one request per model per window and absorbs the rest, so a drift decided
seconds after the bootstrap would otherwise never run (the served test once waited the
whole outcome timeout for it)."""

import time

from driftctl.messages import RetrainTrigger, TrainingWindow
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from flows import trigger as trigger_module


def test_a_second_request_waits_for_the_triggers_next_window(home, monkeypatch):
    monkeypatch.setenv("DRIFTCTL_PREFECT__API_URL", "http://127.0.0.1:1/api")
    monkeypatch.setenv("DRIFTCTL_PREFECT__TRIGGER_WITHIN", "1.5")
    settings = Settings()
    ledger = Ledger(settings.ledger_url)
    emitted: list[float] = []

    def emit(settings, window, trigger):  # the outcome is recorded as the flow would, at once
        emitted.append(time.monotonic())
        ledger.append("rejection", model_name="m", reason="test",
                      payload={"trigger": {"decision_id": trigger.decision_id}})

    monkeypatch.setattr(trigger_module, "emit_drift_detected", emit)
    retrain = trigger_module.make_retrain(settings)
    window = TrainingWindow(bootstrap_servers="", telemetry_topic="t", labels_topic="l", telemetry={}, labels={},
                            positions=(0, 0))
    for kind in ("bootstrap", "drift"):
        assert retrain(window, RetrainTrigger(kind=kind))["promoted"] is False
    assert emitted[1] - emitted[0] >= 2.5  # within + 1 s
    ledger.close()
