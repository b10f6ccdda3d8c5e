"""Moving the champion alias back: `driftctl rollback [--to VERSION]` and the monitor's
automatic rollback share this. The ledger records why; the model-updates topic tells
every scorer and monitor to swap."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Literal

from driftctl.messages import ModelUpdate
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from serving.promotion import Change, Lease, change_champion, reconcile
from training.registry import Registry


class RollbackError(Exception):
    """No champion to roll back from, or no valid version to roll back to."""


class RollbackBusy(RollbackError):
    """A retrain or another rollback holds the lease: the same rollback may be tried again later."""


class RollbackSuperseded(RollbackError):
    """The champion is no longer the version the rollback was decided against."""


@dataclass(frozen=True)
class Rollback:
    name: str
    from_version: int
    to_version: int
    run_id: str
    reason: str
    automatic: bool
    published: bool
    ledger_entry: int

    def as_dict(self) -> dict:
        return asdict(self)


def previous_version(ledger: Ledger, model_name: str, current: int) -> int | None:
    """The version that served before `current` took over, from the ledger's alias history."""
    history = ledger.alias_history(model_name)
    for i in range(len(history) - 1, 0, -1):
        if history[i]["version"] == current:
            return history[i - 1]["version"]
    return None


def roll_back(settings: Settings, *, to: int | None = None, reason: str | None = None, automatic: bool = False,
              bootstrap: str | None = None, registry: Registry | None = None, ledger: Ledger | None = None,
              evidence: dict | None = None, expect: int | None = None,
              kind: Literal["rollback", "reinstatement"] = "rollback") -> Rollback:
    """Point `champion` at `to` (default: the version that served before the current one),
    record it, and announce it on the model-updates topic of `bootstrap` (default: the
    configured cluster; with none, the change is recorded and scorers pick it up at start).
    Under the retrain lease, after ending any change a crash left half done (serving.promotion).
    `expect`: the version the rollback was decided against; if the alias names another by the
    time the lease is held (a newer promotion), nothing moves (`RollbackSuperseded`).
    `kind` "reinstatement": the monitor brings an archived champion back after a concept drift
    (DriftSettings.archive); the same path, recorded as a reinstatement (no training)."""
    registry = registry or Registry.from_settings(settings)
    own_ledger = ledger is None
    ledger = ledger or Ledger.from_settings(settings)
    bootstrap = bootstrap or settings.kafka.bootstrap_servers or None
    # The same lease as retrains: a rollback never interleaves with a promotion.
    lease = Lease(ledger, registry.model_name, f"rollback/{uuid.uuid4().hex}", settings.retrain.lease_seconds)
    try:
        if not lease.acquire():
            raise RollbackBusy(f"a retrain or rollback of {registry.model_name} is in flight "
                                f"({ledger.holder(lease.name) or 'just ended'}); try again when it ends")
        try:
            reconcile(registry=registry, ledger=ledger, bootstrap=bootstrap, kafka=settings.kafka)
            current = registry.champion()
            if current is None:
                raise RollbackError(f"{registry.model_name} has no champion to roll back")
            if expect is not None and current.version != expect:
                raise RollbackSuperseded(f"{registry.model_name} version {current.version} is champion now, not "
                                         f"version {expect} the rollback was decided against")
            target = to if to is not None else previous_version(ledger, registry.model_name, current.version)
            if target is None:
                target = current.version - 1 if current.version > 1 else None
            if target is None:
                raise RollbackError(f"{registry.model_name} version {current.version} has no earlier version; "
                                    f"pass --to VERSION")
            if target == current.version:
                raise RollbackError(f"version {target} is already the champion of {registry.model_name}")
            if not registry.exists(target):
                raise RollbackError(f"{registry.model_name} has no version {target}")
            reason = reason or f"manual rollback from version {current.version} to version {target}"
            ref = registry.ref(target)
            update = ModelUpdate(name=ref.name, version=target, run_id=ref.run_id, reason=reason, rollback=True,
                                 previous_version=current.version)
            record = {"from_version": current.version, "to_version": target, "from_run_id": current.run_id,
                      "to_run_id": ref.run_id, "automatic": automatic, "evidence": evidence or {}}
            entry = change_champion(Change(kind, update, current, reason, record), registry=registry,
                                    ledger=ledger, lease=lease, bootstrap=bootstrap, kafka=settings.kafka)
        finally:
            lease.release()
        return Rollback(ref.name, current.version, target, ref.run_id, reason, automatic, bootstrap is not None,
                        entry)
    finally:
        if own_ledger:
            ledger.close()
