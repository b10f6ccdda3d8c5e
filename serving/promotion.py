"""Moving the champion alias crash-consistently: the one sequence that promotions
(flows/retrain.py) and rollbacks (serving/rollback.py: `driftctl rollback` and the monitor's
automatic one) share.

1. ``intent``: the ledger names the change (from, to, why, and the record to append);
2. ``alias``: the model's lease is checked (fencing) and the alias moves, compare-and-set;
3. ``announce``: the change goes out on the model-updates topic;
4. ``record``: the ``promotion``, ``rollback`` or ``reinstatement`` entry is appended, naming its intent.

A process killed between two steps leaves an intent with no outcome. `reconcile`, run under
the same lease when the monitor, the flow and the rollback command start, ends it: if the alias
moved, the change is announced and recorded (finished); if not, a failure names the intent
(undone) and the alias the scorers should serve is announced again. Alias, ledger and scorers
then agree. A failed announcement puts the alias back, announces that, and records a failure.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from driftctl.messages import ModelUpdate
from driftctl.runtime import faults
from driftctl.settings import KafkaSettings
from driftctl.stores.ledger import Entry, Ledger
from serving.updates import publish_update
from training.registry import ModelRef, Registry

log = logging.getLogger(__name__)

Kind = Literal["promotion", "rollback", "reinstatement"]


class LeaseBusy(Exception):
    """Another retrain or rollback of the model holds its lease."""


class LeaseLost(Exception):
    """The lease expired and was taken over: this process must not move the alias."""


class ChangeFailed(Exception):
    """The change was undone (the alias is back) and the failure recorded in the ledger."""


def lease_name(model_name: str) -> str:
    return f"retrain:{model_name}"


class Lease:
    """The model's one-writer lease in the ledger (retrains and rollbacks), renewed every third
    of its time-to-live by a thread while held, so a long flow keeps it and a dead one loses it
    within `ttl` seconds."""

    def __init__(self, ledger: Ledger, model_name: str, holder: str, ttl: float):
        self.ledger, self.name, self.holder, self.ttl = ledger, lease_name(model_name), holder, ttl
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self) -> bool:
        if not self.ledger.acquire(self.name, self.holder, self.ttl):
            return False
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="lease-renewer", daemon=True)
        self._renewer.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.ledger.renew(self.name, self.holder, self.ttl):
                    log.error("lease %s lost by %s", self.name, self.holder)
                    return
            except Exception as exc:  # the ledger briefly away: the next renewal may succeed
                log.warning("lease %s not renewed: %s", self.name, exc)

    def check(self) -> None:
        """Fencing: still ours (and extended), or `LeaseLost`."""
        if not self.ledger.renew(self.name, self.holder, self.ttl):
            raise LeaseLost(f"the lease {self.name} of {self.holder} expired and was taken by "
                            f"{self.ledger.holder(self.name) or 'nobody yet'}: the alias is not moved")

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        self.ledger.release(self.name, self.holder)

    def __enter__(self) -> Lease:
        if not self.acquire():
            raise LeaseBusy(f"a retrain or rollback of {self.name.removeprefix('retrain:')} is in flight "
                            f"({self.ledger.holder(self.name) or 'just ended'}); try again when it ends")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class Change:
    """One champion change: what the intent entry holds, so that a later process can end it."""

    kind: Kind
    update: ModelUpdate  # what is announced
    expected: ModelRef | None  # the champion the decision was made against
    reason: str
    record: dict[str, Any] = field(default_factory=dict)  # the payload of the promotion/rollback entry
    event_id: str | None = None

    @property
    def version(self) -> int:
        return self.update.version

    def as_payload(self) -> dict[str, Any]:
        expected = self.expected
        return {"kind": self.kind, "update": self.update.model_dump(mode="json"),
                "expected": None if expected is None else
                {"name": expected.name, "version": expected.version, "run_id": expected.run_id},
                "record": self.record}

    @classmethod
    def from_entry(cls, entry: Entry) -> Change:
        payload = entry.payload
        expected = payload.get("expected")
        return cls(kind=payload["kind"], update=ModelUpdate.model_validate(payload["update"]),
                   expected=ModelRef(**expected) if expected else None, reason=entry.reason or "",
                   record=payload.get("record") or {}, event_id=entry.event_id)


def change_champion(change: Change, *, registry: Registry, ledger: Ledger, lease: Lease, bootstrap: str | None,
                    kafka: KafkaSettings) -> int:
    """Intent, fenced compare-and-set move, announcement, record; returns the record's ledger id.
    With no `bootstrap` (a rollback made without Kafka) nothing is announced: scorers follow the
    alias at their start and at their next update. On a failed move or announcement the alias is
    put back, the failure recorded against the intent, and `ChangeFailed` raised."""
    name, step = registry.model_name, change.kind
    intent = ledger.append("intent", reason=change.reason, model_name=name, model_version=change.version,
                           event_id=change.event_id, payload=change.as_payload())
    faults.step(f"{step}:intent")
    moved = False
    try:
        lease.check()
        replaced = registry.move_champion(change.version, change.reason,
                                          expected=change.expected.version if change.expected else None, tag=False)
        moved = True
        faults.step(f"{step}:alias")
        published = False
        if bootstrap:
            _announce(bootstrap, kafka, change.update)
            published = True
        faults.step(f"{step}:announce")
    except Exception as exc:
        notes = [_restore(registry, change, bootstrap, kafka, f"{change.kind} to version {change.version} "
                                                              f"failed: {exc}")] if moved else []
        ledger.append("failure", reason=f"{change.kind} to version {change.version} failed, champion unchanged: "
                                        f"{type(exc).__name__}: {exc}", model_name=name,
                      model_version=change.expected.version if change.expected else None,
                      event_id=change.event_id, payload={**change.record, "intent": intent, "notes": notes})
        raise ChangeFailed(f"{type(exc).__name__}: {exc}" + (f" ({'; '.join(notes)})" if notes else "")) from exc
    # The version's deployment tags after the announcement (scorers load meanwhile); the change stands without them.
    _tag(registry, change, replaced)
    entry = ledger.append(change.kind, reason=change.reason, model_name=name, model_version=change.version,
                          event_id=change.event_id,
                          payload={**change.record, "intent": intent, "published": published})
    faults.step(f"{step}:record")
    return entry


def reconcile(*, registry: Registry, ledger: Ledger, bootstrap: str | None, kafka: KafkaSettings) -> list[str]:
    """End every intent a crash left open (the caller holds the lease); returns what was done."""
    done = []
    for intent in ledger.open_intents(registry.model_name):
        change = Change.from_entry(intent)
        current = registry.champion()
        at = current.version if current else None
        expected = change.expected.version if change.expected else None
        if at == change.version:  # the alias moved: finish (announce, record)
            try:
                published = False
                if bootstrap:
                    _announce(bootstrap, kafka, change.update)
                    published = True
            except Exception as exc:  # the same rule as an uncrashed change: not announced, undone
                note = _restore(registry, change, bootstrap, kafka, f"{change.kind} not announced after a crash")
                ledger.append("failure", reason=f"{change.kind} to version {change.version} interrupted and not "
                                                f"announced, champion unchanged: {type(exc).__name__}: {exc}",
                              model_name=registry.model_name, model_version=expected, event_id=change.event_id,
                              payload={**change.record, "intent": intent.id, "notes": [note]})
                done.append(f"intent {intent.id} undone ({note})")
                continue
            _tag(registry, change, change.expected)
            ledger.append(change.kind, reason=change.reason, model_name=registry.model_name,
                          model_version=change.version, event_id=change.event_id,
                          payload={**change.record, "intent": intent.id, "published": published,
                                   "reconciled": "finished after an interruption"})
            done.append(f"intent {intent.id} finished: {change.kind} to version {change.version}")
        else:  # it never moved (or was put back): undone; the alias scorers should serve is announced again
            note = (_announce_current(bootstrap, kafka, registry.model_name, current,
                                      f"{change.kind} to version {change.version} interrupted before it moved")
                    if at == expected else f"the alias is at {at}, neither {expected} nor {change.version}")
            ledger.append("failure", reason=f"{change.kind} to version {change.version} interrupted before the "
                                            f"alias moved, champion unchanged", model_name=registry.model_name,
                          model_version=at, event_id=change.event_id,
                          payload={**change.record, "intent": intent.id, "notes": [note]})
            done.append(f"intent {intent.id} undone ({note})")
    for line in done:
        log.warning("reconciled %s: %s", registry.model_name, line)
    return done


def reconcile_if_free(*, registry: Registry, ledger: Ledger, bootstrap: str | None, kafka: KafkaSettings,
                      holder: str, ttl: float) -> list[str] | None:
    """`reconcile` under the lease, unless a retrain or rollback holds it (None): that one
    reconciles at its own start, and a dead holder's lease expires within `ttl`."""
    if not ledger.open_intents(registry.model_name):
        return []
    lease = Lease(ledger, registry.model_name, holder, ttl)
    if not lease.acquire():
        return None
    try:
        return reconcile(registry=registry, ledger=ledger, bootstrap=bootstrap, kafka=kafka)
    finally:
        lease.release()


def _tag(registry: Registry, change: Change, replaced: ModelRef | None) -> None:
    try:
        registry.tag_deployment(change.version, replaced, change.reason)
    except Exception as exc:  # MLflow's UI misses a date; the alias, the ledger and the scorers agree
        log.warning("%s to version %s: deployment tags not written: %s", change.kind, change.version, exc)


def _announce(bootstrap: str, kafka: KafkaSettings, update: ModelUpdate, attempts: int = 3) -> None:
    for attempt in range(attempts):
        try:
            publish_update(bootstrap, kafka, update)
            return
        except Exception:
            if attempt == attempts - 1:
                raise


def _restore(registry: Registry, change: Change, bootstrap: str | None, kafka: KafkaSettings, why: str) -> str:
    """Put the alias back to the expected champion (only if it still names the change's version)."""
    try:
        current = registry.champion()
        if current is None or current.version != change.version:
            return f"alias not restored: it names {current.version if current else 'none'} now"
        registry.restore_champion(change.expected)
    except Exception as exc:
        return f"alias NOT restored: {exc}"
    back = change.expected.version if change.expected else "none"
    return f"alias restored to {back}; " + _announce_current(bootstrap, kafka, registry.model_name, change.expected,
                                                             f"restored: {why}")


def _announce_current(bootstrap: str | None, kafka: KafkaSettings, model_name: str, ref: ModelRef | None,
                      reason: str) -> str:
    """Every restore is announced: a scorer that saw the failed change checks the alias again."""
    if ref is None:
        return "no champion to announce"
    if not bootstrap:
        return "not announced (no Kafka): scorers follow the alias at start and at their next update"
    update = ModelUpdate(name=model_name, version=ref.version, run_id=ref.run_id, reason=reason[:1000], rollback=True)
    try:
        _announce(bootstrap, kafka, update)
        return f"version {ref.version} announced"
    except Exception as exc:
        return f"version {ref.version} NOT announced ({type(exc).__name__}: {exc})"
