"""Flows for tests/test_retrain_process.py, imported by the warm retrain process it starts
(`flows.trigger.ChildProcessRetrain(settings, flow="tests.fake_flows:retrain")`)."""

from __future__ import annotations

import os

from driftctl.messages import RetrainTrigger, TrainingWindow
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from serving.promotion import lease_name


def retrain(window: TrainingWindow, trigger: RetrainTrigger) -> dict:
    """What the trigger's reason asks for: an outcome naming this process, an exception, or a death
    while the decision holds the model's lease."""
    from prefect.settings import PREFECT_API_URL

    if trigger.reason == "raise":
        raise ValueError("the window had no labelled rows")
    if trigger.reason == "die":
        settings = Settings()
        ledger = Ledger.from_settings(settings)
        assert ledger.acquire(lease_name(settings.mlflow.model_name), f"{trigger.decision_id}/run", 120.0)
        os._exit(3)  # no finally, no reply: as a kill would
    if trigger.reason == "grow":  # what a flow's caches would leave in the process
        _KEPT.append(bytearray(64 * 2**20))
        _KEPT[-1][:: 4096] = b"x" * len(range(0, 64 * 2**20, 4096))  # touched: resident
    return {"promoted": False, "pid": os.getpid(), "api": PREFECT_API_URL.value()}


_KEPT: list[bytearray] = []
