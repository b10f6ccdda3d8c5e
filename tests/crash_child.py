"""The process tests/test_crash_consistency.py kills: a promotion of version 2 as the flow makes
it (serving.promotion under the lease), or `roll_back` to version 1. Run as
``python -m tests.crash_child SETTINGS_JSON BOOTSTRAP promotion|rollback`` with
DRIFTCTL_FAULT_KILL_AT naming the step to die at."""

from __future__ import annotations

import sys

from driftctl.messages import ModelUpdate
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from serving.promotion import Change, Lease, change_champion
from training.registry import Registry


def promote_v2(registry: Registry, ledger: Ledger, lease: Lease, bootstrap: str, settings: Settings) -> int:
    ref = registry.ref(2)
    update = ModelUpdate(name=ref.name, version=2, run_id=ref.run_id, reason="challenger wins", decision_id="d-v2",
                         previous_version=1)
    return change_champion(Change("promotion", update, registry.champion(), "challenger wins",
                                  {"trigger": {"decision_id": "d-v2"}}),
                           registry=registry, ledger=ledger, lease=lease, bootstrap=bootstrap, kafka=settings.kafka)


def main(settings_json: str, bootstrap: str, kind: str) -> None:
    from driftctl.runtime.stack import configure_environment
    from serving.rollback import roll_back

    settings = Settings.model_validate_json(settings_json)
    configure_environment(settings)
    registry, ledger = Registry.from_settings(settings), Ledger(settings.ledger_url)
    if kind == "rollback":
        roll_back(settings, to=1, bootstrap=bootstrap, registry=registry, ledger=ledger)
    else:
        lease = Lease(ledger, registry.model_name, "decision-v2/child", settings.retrain.lease_seconds)
        assert lease.acquire()
        promote_v2(registry, ledger, lease, bootstrap, settings)
    print("not killed")


if __name__ == "__main__":
    main(*sys.argv[1:4])
