"""One drift, one incident in the ledger: the monitor's drift events and decisions, folded.

The policy stamps every event and decision with the incident it belongs to (see
`drift.policy`). The ledger stays append-only; what reaches it per incident is:

- an `incident` row when it opens, and the opening event as a `drift_event` row;
- the decisions that change what is being done: the first decision, the first alert of each
  round of collecting, every retrain;
- the events that fire while the drift is already being acted on (and the holds the policy
  answers them with), folded: buffered, then written as one `incident_update` row with their
  count per detector and their evidence, before the incident's next row, at most every
  `flush_seconds`, when a retrain ends and when the monitor stops.

Events and decisions without an incident (a bootstrap, a schedule) are written one row each.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from driftctl.messages import Action, Decision, DriftEvent
from driftctl.stores.ledger import Backlog, Ledger

MAX_EVIDENCE = 100  # events per incident_update row; a storm is written in several rows
KEEP = 64  # incidents remembered (an older one's late event opens a fresh row, which says so)


@dataclass
class _Incident:
    id: str
    model: dict[str, Any]
    events: int = 0
    by_detector: Counter = field(default_factory=Counter)
    decided: bool = False  # a decision of this incident is in the ledger
    alerted: bool = False  # an alert is in the ledger since the last retrain
    pending: list[dict[str, Any]] = field(default_factory=list)  # folded events not written yet
    holds: int = 0  # folded holds not written yet
    last_hold: str | None = None
    flushed_at: float = 0.0


class IncidentLog:
    """The monitor's writer of drift events and decisions, one incident per drift."""

    def __init__(self, ledger: Ledger | Backlog, *, flush_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.ledger = ledger
        self.flush_seconds = flush_seconds
        self.clock = clock
        self._open: OrderedDict[str, _Incident] = OrderedDict()
        self.folded = 0  # events folded so far (not written one row each)

    def event(self, event: DriftEvent) -> bool:
        """Record one drift event; True when it got its own `drift_event` row, False when folded."""
        if event.incident is None:
            self._write_event(event)
            return True
        incident = self._open.get(event.incident)
        if incident is not None:
            incident.events += 1
            incident.by_detector[event.detector] += 1
            incident.pending.append(event.model_dump(mode="json"))
            self.folded += 1
            if len(incident.pending) >= MAX_EVIDENCE or self.clock() - incident.flushed_at >= self.flush_seconds:
                self.flush(incident.id)
            return False
        self.flush()  # a new drift: what the others folded goes in before it
        incident = _Incident(event.incident, dict(event.model), events=1, flushed_at=self.clock())
        incident.by_detector[event.detector] += 1
        self._open[incident.id] = incident
        while len(self._open) > KEEP:
            self._open.popitem(last=False)
        self.ledger.append("incident", reason=f"drift: {event.detector} fired at record {event.index}",
                           model_name=event.model.get("name"), model_version=event.model.get("version"),
                           event_id=event.id,
                           payload={"incident": incident.id, "opened_by": event.id, "detector": event.detector,
                                    "kind": event.kind, "index": event.index, "statistic": event.statistic,
                                    "threshold": event.threshold, "model": event.model})
        self._write_event(event)
        return True

    def decision(self, decision: Decision, *, model_name: str | None, model_version: int | None) -> bool:
        """Record one decision; True when written, False when folded (a hold, or a repeated alert,
        on an event of a drift already being acted on)."""
        incident = self._open.get(decision.incident) if decision.incident else None
        if incident is not None:
            if (decision.action is Action.HOLD and incident.decided) or (
                    decision.action is Action.ALERT and incident.alerted):
                incident.holds += 1
                incident.last_hold = decision.reason
                return False
            self.flush(incident.id)
            incident.decided = True
            if decision.action is not Action.HOLD:  # a retrain ends a round of collecting; an alert starts one
                incident.alerted = decision.action is Action.ALERT
        self.ledger.append("decision", reason=decision.reason, event_id=(decision.event_ids or (None,))[0],
                           model_name=model_name, model_version=model_version,
                           payload=decision.model_dump(mode="json"))
        return True

    def flush(self, incident_id: str | None = None) -> None:
        """Write what `incident_id` (default: every incident) folded since its last row."""
        if incident_id is None:
            chosen = list(self._open.values())
        else:
            found = self._open.get(incident_id)
            chosen = [found] if found is not None else []
        for incident in chosen:
            incident.flushed_at = self.clock()
            if not incident.pending and not incident.holds:
                continue
            folded, incident.pending = incident.pending, []
            holds, incident.holds = incident.holds, 0
            detectors = Counter(e["detector"] for e in folded)
            said = ", ".join(f"{name} x{n}" for name, n in sorted(detectors.items())) or "no event"
            self.ledger.append(
                "incident_update", model_name=incident.model.get("name"), model_version=incident.model.get("version"),
                event_id=folded[0]["id"] if folded else None,
                reason=f"{len(folded)} more event(s) while the drift was being acted on ({said}); {holds} held",
                payload={"incident": incident.id, "folded": len(folded), "events": incident.events,
                         "by_detector": dict(incident.by_detector), "holds": holds, "last_hold": incident.last_hold,
                         "evidence": folded})

    def _write_event(self, event: DriftEvent) -> None:
        self.ledger.append("drift_event", reason=f"{event.detector} {event.statistic:.4g} vs {event.threshold:.4g}",
                           model_name=event.model.get("name"), model_version=event.model.get("version"),
                           event_id=event.id, payload=event.model_dump(mode="json"))
