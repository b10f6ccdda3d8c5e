"""The drift policy: detector signals in, a typed decision (retrain, alert, hold) out.

Detection is not decision. A concept drift (errors rising) or a persistent data drift
marks a change point; the policy then waits until enough labelled records *after* the
change exist to train on, keeps one retrain in flight, and holds during a cooldown after
a promotion so a fresh champion is not judged on the data that replaced its predecessor.
A drift seen during the cooldown is not lost: it is deferred and acted on when the cooldown
ends (detectors report a change once, so dropping it would leave the policy blind to it).

Two options fit the retrain window to the drift (`DriftSettings.regrow`, `keep_old_on_covariate`,
both off by default, measured in `benchmarks/results/decisions.md`): after a concept drift,
retrain again each time the window since the change doubles while challengers win; after a
label-free (covariate) drift, keep the champion's rows and add the new ones (`keep_from`).
"""

from __future__ import annotations

from drift.events import Action, Decision, DriftEvent


class DriftPolicy:
    """Turns drift events into decisions; positions count labelled records.

    >>> from drift.events import DriftEvent
    >>> policy = DriftPolicy(min_train_rows=100, data_persistence=2, cooldown=50)
    >>> event = DriftEvent(detector="error-adwin", kind="concept", index=5000, statistic=0.3, threshold=0.05)
    >>> policy.on_event(event, change_at=1000, labelled=1040).action.value
    'alert'
    >>> policy.on_labelled(1099) is None
    True
    >>> decision = policy.on_labelled(1100)
    >>> decision.action.value, decision.window
    ('retrain', (1000, 1100))
    >>> policy.on_event(event, change_at=1100, labelled=1120).action.value
    'hold'
    """

    def __init__(self, *, min_train_rows: int = 1500, data_persistence: int = 2, cooldown: int = 2000,
                 regrow: bool = False, max_train_rows: int | None = None):
        if min_train_rows < 1:
            raise ValueError(f"min_train_rows must be at least 1, got {min_train_rows!r}")
        if data_persistence < 1:
            raise ValueError(f"data_persistence must be at least 1, got {data_persistence!r}")
        if cooldown < 0:
            raise ValueError(f"cooldown must be at least 0, got {cooldown!r}")
        self.min_train_rows = min_train_rows
        self.data_persistence = data_persistence
        self.cooldown = cooldown
        self.regrow = regrow
        self.max_train_rows = max_train_rows
        self._reset()

    def _reset(self) -> None:
        self.change_at: int | None = None  # labelled position where the new regime starts
        self.pending_events: list[str] = []
        self.in_flight = False
        self.cooldown_until = 0
        self.data_streaks: dict[str, int] = {}  # label-free detector -> drifting windows in a row
        self.deferred: tuple[list[str], int, str] | None = None  # event ids, change_at, first reason
        self.keep_from: int | None = None  # label-free drift only: train from here (old rows kept)
        self.concept = False  # a concept (labelled) event is among the pending ones
        self.window: tuple[int, int] | None = None  # the retrain in flight
        self.grow_from: int | None = None  # regrow: the change the champion follows
        self.grow_at: int | None = None  # regrow: retrain again at this labelled position

    def _blocked(self, labelled: int) -> str | None:
        if self.in_flight:
            return "a retrain is already in flight"
        if labelled < self.cooldown_until:
            return f"cooling down after a promotion until labelled record {self.cooldown_until}"
        return None

    def on_event(self, event: DriftEvent, *, change_at: int, labelled: int, keep_from: int | None = None) -> Decision:
        """A drift event: the change is known to start at labelled position `change_at`. For a
        label-free event `keep_from` (when given) is where the retrain window starts instead:
        a covariate shift keeps the old rows and adds the new."""
        blocked = self._blocked(labelled)
        if blocked:
            if not self.in_flight:  # cooling down: keep it for when the cooldown ends
                if self.deferred is None:
                    self.deferred = ([event.id], change_at, f"{event.detector} fired at record {event.index}")
                else:
                    self.deferred[0].append(event.id)
                blocked += "; deferred until then"
            return Decision(action=Action.HOLD, reason=f"{event.detector} fired but {blocked}", event_ids=(event.id,))
        self._release_deferred()
        if self.change_at is None:
            self.change_at = change_at
        if event.kind == "concept":
            self.concept = True
            self.keep_from = None
            self.grow_from = self.grow_at = None  # a new change: the old one's growth is over
        elif keep_from is not None and not self.concept:
            self.keep_from = keep_from if self.keep_from is None else min(self.keep_from, keep_from)
        self.pending_events.append(event.id)
        return Decision(
            action=Action.ALERT,
            reason=(f"{event.detector} fired at record {event.index} "
                    f"({event.statistic:.3f} against {event.threshold:.3f}); "
                    f"collecting {self.min_train_rows} labelled records from position {self.change_at}"),
            event_ids=(event.id,),
        )

    @property
    def data_streak(self) -> int:
        return max(self.data_streaks.values(), default=0)

    def on_data_window(self, event: DriftEvent | None, *, labelled: int, detector: str = "data-ks",
                       keep_from: int | None = None) -> Decision | None:
        """One window of a label-free detector ended: `event` is set when it drifted. Acts
        after `data_persistence` drifting windows in a row of the same detector (`event.detector`,
        else `detector`), so each window detector keeps its own streak."""
        name = event.detector if event is not None else detector
        if event is None:
            self.data_streaks[name] = 0
            return None
        streak = self.data_streaks[name] = self.data_streaks.get(name, 0) + 1
        if streak < self.data_persistence:
            return Decision(action=Action.HOLD, event_ids=(event.id,),
                            reason=f"{name}: drift in {streak} of {self.data_persistence} windows in a row")
        return self.on_event(event, change_at=labelled, labelled=labelled, keep_from=keep_from)

    def _release_deferred(self) -> Decision | None:
        if self.deferred is None:
            return None
        event_ids, change_at, reason = self.deferred
        self.deferred = None
        if self.change_at is None:
            self.change_at = change_at
        self.pending_events.extend(event_ids)
        return Decision(action=Action.ALERT, event_ids=tuple(event_ids),
                        reason=(f"cooldown over; {reason} during it: collecting {self.min_train_rows} "
                                f"labelled records from position {self.change_at}"))

    def on_labelled(self, labelled: int) -> Decision | None:
        """Called as labelled records accrue; returns an alert when a drift deferred by the
        cooldown is released, and a retrain decision once enough labelled records exist."""
        if self.deferred is not None and not self._blocked(labelled):
            return self._release_deferred()
        if self.in_flight:
            return None
        if self.change_at is None:
            return self._grow(labelled)
        if self._blocked(labelled) or labelled - self.change_at < self.min_train_rows:
            return None
        start = self.change_at if self.keep_from is None else self.keep_from
        if self.max_train_rows is not None:
            start = max(start, labelled - self.max_train_rows)
        kept = "" if self.keep_from is None else ", the champion's rows kept (label-free drift)"
        decision = Decision(
            action=Action.RETRAIN,
            reason=(f"drift confirmed by {len(self.pending_events)} event(s); retraining on "
                    f"{labelled - start} labelled records from position {start}{kept}"),
            event_ids=tuple(self.pending_events),
            window=(start, labelled),
        )
        self.in_flight = True
        self.window = decision.window
        return decision

    def _grow(self, labelled: int) -> Decision | None:
        """Regrow: the champion trained on the rows since a change; once that window has doubled,
        train again on all of it (at most `max_train_rows`)."""
        if self.grow_at is None or labelled < self.grow_at:
            return None
        start = self.grow_from if self.max_train_rows is None else max(self.grow_from, labelled - self.max_train_rows)
        decision = Decision(action=Action.RETRAIN, window=(start, labelled),
                            reason=(f"regrow: {labelled - self.grow_from} labelled records since the change at "
                                    f"{self.grow_from}; retraining on {labelled - start}"))
        self.in_flight = True
        self.window = decision.window
        return decision

    def on_retrain_finished(self, *, promoted: bool, labelled: int) -> None:
        growing = self.change_at is None and self.grow_at is not None
        concept, start = self.concept, self.window[0] if self.window else None
        self.in_flight = False
        self.change_at = None
        self.pending_events = []
        self.data_streaks = {}
        self.deferred = None
        self.keep_from = None
        self.concept = False
        self.window = None
        if promoted and not growing:
            self.cooldown_until = labelled + self.cooldown
        # Regrow after a concept drift, and keep regrowing while challengers win, until the window
        # since the change reaches max_train_rows.
        if self.regrow and promoted and (concept or growing) and start is not None:
            if growing:
                start = self.grow_from
            capped = self.max_train_rows is not None and labelled - start >= self.max_train_rows
            self.grow_from, self.grow_at = (None, None) if capped else (start, start + 2 * (labelled - start))
        elif growing or not promoted:
            self.grow_from = self.grow_at = None

    def on_reinstated(self, *, labelled: int) -> None:
        """An archived champion came back (no training): the pending change is answered."""
        self.on_retrain_finished(promoted=True, labelled=labelled)
        self.grow_from = self.grow_at = None
