"""The drift policy: detector signals in, a typed decision (retrain, alert, hold) out.

Detection is not decision. A concept drift (errors rising) or a persistent data drift
marks a change point; the policy then waits until enough labelled records *after* the
change exist to train on, keeps one retrain in flight, and holds during a cooldown after
a promotion so a fresh champion is not judged on the data that replaced its predecessor.
A drift seen during the cooldown is not lost: it is deferred and acted on when the cooldown
ends (detectors report a change once, so dropping it would leave the policy blind to it).

One drift, one incident: the first event that fires while the policy is idle opens an
incident; every event and decision until the policy is idle again (the alert, the wait for
labelled records, the retrain in flight, the cooldown after a promotion, a deferred drift,
a data detector's streak) carries the same incident id, so an operator sees one drift, not
one row per detector firing.

Two options fit the retrain window to the drift (`DriftSettings.regrow`, `keep_old_on_covariate`,
both off by default, measured in `benchmarks/results/decisions.md`): after a concept drift,
retrain again each time the window since the change doubles while challengers win; after a
label-free (covariate) drift, keep the champion's rows and add the new ones (`keep_from`).

Retrains must pay (`DriftSettings.retrain_pay`, `paid`): after retrains that bought little over what was
served, the next waits longer (a stream the serving rule already follows gets few retrains).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from driftctl.messages import Action, Decision, DriftEvent, new_id

if TYPE_CHECKING:
    from driftctl.settings import DriftSettings


class DriftPolicy:
    """Turns drift events into decisions; positions count labelled records.

    >>> from driftctl.messages import DriftEvent
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

    Every decision above acts on the same drift, so they share one incident:

    >>> policy.incident.startswith("incident-"), decision.incident == policy.incident
    (True, True)
    """

    def __init__(self, *, min_train_rows: int = 1500, data_persistence: int = 2, cooldown: int = 2000,
                 regrow: bool = False, max_train_rows: int | None = None, early_train_rows: int | None = None,
                 first_train_rows: int | None = None, regrow_when_stale: bool = False,
                 first_train_z: float | None = None, first_then_full: bool = False, pay: float | None = None,
                 backoff_max: int = 3, pay_realised: bool = False):
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
        self.early_train_rows = early_train_rows
        self.first_train_rows = first_train_rows
        self.regrow_when_stale = regrow_when_stale
        self.first_train_z = first_train_z
        self.first_then_full = first_then_full
        self.pay = pay
        self.backoff_max = backoff_max
        self.pay_realised = pay_realised
        self.lied = 0  # promotions in a row whose gate claimed `pay` and that did not realise it once serving
        self.unpaid = 0  # pay: retrains in a row that bought less than `pay` over what was served
        self.backoff_until = 0  # pay: no retrain before this labelled position
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
        self.incident: str | None = None  # the drift being acted on (None: none yet)
        self.labelled = 0  # the newest labelled position seen
        self.first_tried = False  # first_train_rows: the first retrain of this change was tried

    def engaged(self, labelled: int) -> bool:
        """Whether a drift is being acted on at labelled position `labelled`: collecting records
        after a change, a retrain in flight, a cooldown, a deferred drift or a data streak."""
        return (self.change_at is not None or self.in_flight or self.deferred is not None
                or labelled < self.cooldown_until or any(self.data_streaks.values()))

    def incident_at(self, labelled: int) -> str:
        """The incident an event firing at labelled position `labelled` belongs to: the open
        one while a drift is being acted on, else a new one."""
        self.labelled = max(self.labelled, labelled)
        if self.incident is None or not self.engaged(labelled):
            self.incident = new_id("incident")
        return self.incident

    def _adopt(self, event: DriftEvent, labelled: int) -> str:
        """The event's incident (stamped by `incident_at` when the event was made), else the policy's."""
        if event.incident is None:
            return self.incident_at(labelled)
        self.labelled = max(self.labelled, labelled)
        self.incident = event.incident
        return event.incident

    @property
    def open_incident(self) -> str | None:
        """The incident still being acted on, if any (for status)."""
        return self.incident if self.incident is not None and self.engaged(self.labelled) else None

    def _blocked(self, labelled: int) -> str | None:
        if self.in_flight:
            return "a retrain is already in flight"
        if labelled < self.cooldown_until:
            return f"cooling down after a promotion until labelled record {self.cooldown_until}"
        if labelled < self.backoff_until:
            return (f"backing off until labelled record {self.backoff_until}: the last {self.unpaid} retrain(s) "
                    f"bought less than {self.pay} over what was served")
        return None

    def on_event(self, event: DriftEvent, *, change_at: int, labelled: int, keep_from: int | None = None) -> Decision:
        """A drift event: the change is known to start at labelled position `change_at`. For a
        label-free event `keep_from` (when given) is where the retrain window starts instead:
        a covariate shift keeps the old rows and adds the new."""
        incident = self._adopt(event, labelled)
        blocked = self._blocked(labelled)
        if blocked:
            if not self.in_flight:  # cooling down: keep it for when the cooldown ends
                if self.deferred is None:
                    self.deferred = ([event.id], change_at, f"{event.detector} fired at record {event.index}")
                else:
                    self.deferred[0].append(event.id)
                blocked += "; deferred until then"
            return Decision(action=Action.HOLD, reason=f"{event.detector} fired but {blocked}", event_ids=(event.id,),
                            incident=incident)
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
            event_ids=(event.id,), incident=incident,
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
        incident = self._adopt(event, labelled)
        streak = self.data_streaks[name] = self.data_streaks.get(name, 0) + 1
        if streak < self.data_persistence:
            return Decision(action=Action.HOLD, event_ids=(event.id,), incident=incident,
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
        return Decision(action=Action.ALERT, event_ids=tuple(event_ids), incident=self.incident,
                        reason=(f"cooldown over; {reason} during it: collecting {self.min_train_rows} "
                                f"labelled records from position {self.change_at}"))

    def on_labelled(self, labelled: int, *, overtaken: bool = False, stale: bool = True,
                    first: bool = True) -> Decision | None:
        """Called as labelled records accrue; returns an alert when a drift deferred by the
        cooldown is released, and a retrain decision once enough labelled records exist:
        `min_train_rows` since the change, or `early_train_rows` after a concept drift when the
        online learner has `overtaken` the champion on them (`DriftWatch` judges it), or
        `first_train_rows` after a concept drift (a first try, judged by the promotion gate; with
        `first_train_z` it must win significantly, `Decision.promote_z`; only when `first` holds: with
        `first_train_gap`, `DriftWatch` judges whether the change hurt enough). With
        `regrow_when_stale` a regrow waits until the champion is `stale` (`DriftWatch` judges it)."""
        self.labelled = max(self.labelled, labelled)
        if self.deferred is not None and not self._blocked(labelled):
            return self._release_deferred()
        if self.in_flight:
            return None
        if self.change_at is None:
            return self._grow(labelled) if stale or not self.regrow_when_stale else None
        if self._blocked(labelled):
            return None
        rows = labelled - self.change_at
        early = (self.early_train_rows is not None and overtaken and self.concept and self.keep_from is None
                 and rows >= self.early_train_rows)
        first = (self.first_train_rows is not None and first and not self.first_tried and self.concept
                 and self.keep_from is None and rows >= self.first_train_rows)
        if rows < self.min_train_rows and not early and not first:
            return None
        self.first_tried = self.first_tried or first
        start = self.change_at if self.keep_from is None else self.keep_from
        if self.max_train_rows is not None:
            start = max(start, labelled - self.max_train_rows)
        kept = "" if self.keep_from is None else ", the champion's rows kept (label-free drift)"
        sooner = ("" if rows >= self.min_train_rows else
                  "; early: the online learner has overtaken the champion since the change" if early else
                  f"; a first try after {rows} labelled rows")
        decision = Decision(
            action=Action.RETRAIN,
            reason=(f"drift confirmed by {len(self.pending_events)} event(s); retraining on "
                    f"{labelled - start} labelled records from position {start}{kept}{sooner}"),
            event_ids=tuple(self.pending_events),
            window=(start, labelled), incident=self.incident,
            # A retrain on fewer rows than min_train_rows has a small holdout: it must win significantly.
            promote_z=self.first_train_z if rows < self.min_train_rows else None,
        )
        self.in_flight = True
        self.window = decision.window
        return decision

    def _grow(self, labelled: int) -> Decision | None:
        """Regrow: the champion trained on the rows since a change; once that window has doubled,
        train again on all of it (at most `max_train_rows`)."""
        if self.grow_from is None or self.grow_at is None or labelled < self.grow_at:
            return None
        start = self.grow_from if self.max_train_rows is None else max(self.grow_from, labelled - self.max_train_rows)
        decision = Decision(action=Action.RETRAIN, window=(start, labelled), incident=self.incident,
                            reason=(f"regrow: {labelled - self.grow_from} labelled records since the change at "
                                    f"{self.grow_from}; retraining on {labelled - start}"))
        self.in_flight = True
        self.window = decision.window
        return decision

    def on_retrain_finished(self, *, promoted: bool, labelled: int, window_end: int | None = None,
                            replaced: bool = True, bought: float | None = None) -> None:
        """A retrain ended at labelled position `labelled`. The cooldown after a promotion counts
        from `window_end`, the end of the window the new champion learned from (default:
        `labelled`), so a slow worker does not stretch it; a promotion that `replaced` no
        champion (a bootstrap) starts none: there is no predecessor to protect it from.

        >>> policy = DriftPolicy(min_train_rows=100, cooldown=500)
        >>> policy.on_retrain_finished(promoted=True, labelled=9000, window_end=2000)
        >>> policy.cooldown_until
        2500
        >>> policy.on_retrain_finished(promoted=True, labelled=9000, window_end=2000, replaced=False)
        >>> policy.cooldown_until
        0
        """
        growing = self.change_at is None and self.grow_at is not None
        concept, begin = self.concept, self.window[0] if self.window else None
        self.in_flight = False
        change_at = self.change_at
        first = (concept and self.first_tried and self.window is not None and change_at is not None
                 and self.window[1] - change_at < self.min_train_rows)
        # pay_realised: once two promotions in a row claimed at the gate to pay and did not once serving
        # (`paid(realised=True)`, from DriftWatch), the gate is not trusted: a promotion is judged by what it
        # realises. Under continuous drift with late labels the gate flatters every challenger, and a reset
        # there undid each back-off the realised verdict had set (RandomRBF drift, d=500: 11 retrains).
        provisional = (self.pay_realised and self.lied >= 2 and promoted and bought is not None
                       and bought >= (self.pay or 0.0))
        if promoted and bought is not None and bought < (self.pay or 0.0) and self.lied < 2:
            self.lied = 0  # a promotion that claimed nothing: the two are no longer in a row
        if self.pay is not None and bought is not None and not first and not provisional:
            # A first try's few holdout rows say little of what retrains buy: only full ones are counted.
            self.paid(bought, labelled if window_end is None else min(window_end, labelled))
        if first and not promoted:
            self.window = None  # a first try lost: the change stands, collect on to min_train_rows
            return
        self.first_tried = False
        self.change_at = None
        self.pending_events = []
        self.data_streaks = {}
        self.deferred = None
        self.keep_from = None
        self.concept = False
        self.window = None
        if promoted and not growing:
            start = labelled if window_end is None else min(window_end, labelled)
            self.cooldown_until = start + self.cooldown if replaced else 0
        # Regrow after a concept drift, and keep regrowing while challengers win, until the window
        # since the change reaches max_train_rows.
        if self.regrow and promoted and (concept or growing) and begin is not None:
            if growing and self.grow_from is not None:
                begin = self.grow_from
            capped = self.max_train_rows is not None and labelled - begin >= self.max_train_rows
            self.grow_from, self.grow_at = (None, None) if capped else (begin, begin + 2 * (labelled - begin))
        elif growing or not promoted:
            self.grow_from = self.grow_at = None
        if first and self.first_then_full and not self.regrow:
            # A first try won on few rows: once min_train_rows follow the change, the full window
            # challenges it (a regrow, past the cooldown): at most two retrains per drift either way.
            assert change_at is not None  # a first try follows a change
            self.grow_from, self.grow_at = change_at, change_at + self.min_train_rows

    def paid(self, bought: float, end: int, realised: bool = False) -> None:
        """A retrain bought `bought` accuracy over what was served on its holdout: less than `pay`, k
        times in a row, and the next waits cooldown x 2^(k-1) from `end` (a stream the serving rule
        already follows pays for few retrains); `pay` or more and the wait is over.

        >>> policy = DriftPolicy(min_train_rows=100, cooldown=500, pay=0.02)
        >>> for bought in (0.0, 0.01, -0.1):
        ...     policy.on_retrain_finished(promoted=False, labelled=1000, bought=bought)
        ...     print(policy.backoff_until)
        1500
        2000
        3000
        >>> policy.on_retrain_finished(promoted=False, labelled=1000, bought=0.05)
        >>> policy.unpaid, policy.backoff_until
        (0, 0)
        """
        if bought >= (self.pay or 0.0):
            self.unpaid, self.backoff_until = 0, 0
            if realised:
                self.lied = 0
            return
        self.unpaid += 1
        if realised:
            self.lied += 1
        # pay_realised, the gate distrusted: the gate resets it undid are counted, and each wait is doubled.
        distrust = self.pay_realised and self.lied >= 2
        if distrust:
            self.unpaid = max(self.unpaid, self.lied)
        self.backoff_until = end + self.cooldown * 2 ** min(self.unpaid - 1 + distrust, self.backoff_max)

    def on_reinstated(self, *, labelled: int) -> None:
        """An archived champion came back (no training): the pending change is answered."""
        self.on_retrain_finished(promoted=True, labelled=labelled)
        self.grow_from = self.grow_at = None


class Bootstrap:
    """The first champion, aware of late labels: what to train before any drift can be watched.

    Without a champion every record is served by the online learner alone. Champion v1 learns the
    first `warmup` labelled records, but with labels `delay` records late they are all in only once
    `warmup + delay` records were scored. With `early_rows` set, a provisional champion is trained
    on the labels already in once `warmup` records were scored (at least `early_rows` of them, and
    at least a tenth of the warmup still to come: a briefer stand-in would not pay for its fit); the
    full v1 replaces it, unconditionally, when the `warmup`-th label arrives. Both fits are the
    bootstrap, not retrains: no drift asked for them, and every champion policy of a backtest (static,
    periodic, drift) makes the same ones. Positions count records scored and labels arrived.

    >>> boot = Bootstrap(warmup=2000, early_rows=500)
    >>> boot.due(scored=1999, labelled=1499) is None  # warmup records not scored yet
    True
    >>> first = boot.due(scored=2000, labelled=1500)
    >>> first.window, boot.in_flight
    ((0, 1500), 'early')
    >>> boot.finished(promoted=True)
    >>> boot.provisional
    True
    >>> boot.due(scored=2400, labelled=1900) is None
    True
    >>> full = boot.due(scored=2500, labelled=2000)
    >>> full.window, boot.in_flight
    ((0, 2000), 'full')
    >>> boot.finished(promoted=True)
    >>> boot.done, boot.provisional, boot.due(scored=9000, labelled=8500) is None
    (True, False, True)

    Labels at once (or nearly): the full v1 only, as without `early_rows`.

    >>> boot = Bootstrap(warmup=2000, early_rows=500)
    >>> boot.due(scored=2000, labelled=1900) is None, boot.due(scored=2001, labelled=2000).window
    (True, (0, 2000))
    """

    def __init__(self, *, warmup: int, early_rows: int | None = None):
        self.warmup = warmup
        self.early_rows = early_rows
        self.provisional = False  # the champion serving is the early one (the full v1 still to come)
        self.tried_early = False
        self.in_flight: str | None = None  # "early" or "full" while that fit runs
        self.done = False  # the full v1 was promoted

    @classmethod
    def from_settings(cls, settings: DriftSettings) -> Bootstrap:
        return cls(warmup=settings.warmup, early_rows=settings.early_champion_rows)

    def due(self, *, scored: int, labelled: int) -> Decision | None:
        """The bootstrap retrain to start now, if any (the caller trains it and calls `finished`)."""
        if self.done or self.in_flight is not None:
            return None
        warmup = self.warmup
        if labelled >= warmup:
            self.in_flight = "full"
            return Decision(action=Action.RETRAIN, window=(0, warmup),
                            reason=(f"bootstrap: the first {warmup} labelled records are in; they replace the "
                                    "provisional champion") if self.provisional else
                                   f"bootstrap: no champion yet; training on the first {warmup} labelled records")
        early = self.early_rows
        if (early is None or self.tried_early or scored < warmup or labelled < early
                or warmup - labelled < warmup // 10):
            return None
        self.in_flight, self.tried_early = "early", True
        return Decision(action=Action.RETRAIN, window=(0, labelled),
                        reason=f"bootstrap: {scored} records scored but labels are late; a provisional champion "
                               f"on the {labelled} labelled so far, until the first {warmup} are in")

    def again(self, labelled: int) -> Decision:
        """The full v1 once more, on the newest `warmup` labelled records (a live fit that failed:
        the oldest records may be gone by the time it is tried again)."""
        self.in_flight = "full"
        return Decision(action=Action.RETRAIN, window=(labelled - self.warmup, labelled),
                        reason=f"bootstrap: no champion yet; training on the newest {self.warmup} labelled records")

    def finished(self, *, promoted: bool) -> None:
        """The bootstrap retrain ended. A failed full v1 is asked for again by the next `due`; a
        failed provisional one is not (the full v1 comes soon anyway)."""
        fit, self.in_flight = self.in_flight, None
        if fit == "early":
            self.provisional = promoted
        elif fit == "full" and promoted:
            self.done, self.provisional = True, False
