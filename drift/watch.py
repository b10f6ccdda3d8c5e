"""DriftWatch: the one decision engine. The live monitor and the backtest both drive it.

It holds the detector bank and the policy. Fed observations (a record's features, what the
champion served, whether the champion and the online learner were right once the label
came) it returns the drift events that fired and the decisions the policy took; between
records it says how many labelled records exist (`on_labelled`) and how a retrain ended
(`retrain_finished`). Pure: no Kafka, no clock but the caller's positions, so replaying
history through it *is* the live logic.

It also keeps the label-free accuracy estimate of the served predictions (`served`,
`served_label`, `drift.arbiter.AccuracyEstimate`) and, when `DriftSettings.archive` is on,
says when the archived champions should be judged against the serving one (`archive_due`).

>>> import random
>>> from driftctl.settings import DriftSettings
>>> watch = DriftWatch(DriftSettings(min_train_rows=200))
>>> rng = random.Random(0)
>>> watch.on_champion({"version": 1}, reference=[{"x": rng.gauss(0, 1)} for _ in range(500)])
>>> fired, decisions = [], []
>>> for labelled in range(1, 6001):
...     right = rng.random() < (0.95 if labelled < 3000 else 0.6)
...     step = watch.observe(Observation(champion_right=right), index=labelled, labelled=labelled)
...     fired += [(e.index, e.detector) for e in step.events]
...     decision = watch.on_labelled(labelled)
...     if decision is not None and decision.action is Action.RETRAIN:
...         decisions.append(decision.window)
...         watch.retrain_finished(promoted=False, labelled=labelled)
>>> fired
[(3072, 'error-adwin')]
>>> decisions
[(3072, 3272)]
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drift.arbiter import AccuracyEstimate
from drift.detectors import (
    NOTHING,
    AccuracyGapDetector,
    AlarmLevels,
    DataDriftDetector,
    DriftDetector,
    ErrorRateDetector,
    HoldoutGapDetector,
    Observation,
    PredictionDriftDetector,
)
from drift.policy import Bootstrap, DriftPolicy
from driftctl.messages import Action, Decision, DriftEvent
from driftctl.settings import DriftSettings

__all__ = ["Action", "DriftWatch", "Observation", "Step"]


@dataclass
class Step:
    """What one observation produced: the events that fired and the policy's decisions on them."""

    events: list[DriftEvent] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


class PositionRuns:
    """Index (0, 1, 2, ...) -> labelled position, kept as runs of consecutive positions: a label a
    record, the usual case, is one run however long ADWIN's window grows between changes (a
    position each was 8 bytes a label, for as long as a champion served). Indexes before
    `drop_before`'s are forgotten."""

    __slots__ = ("_firsts", "_last", "_n", "_starts")

    def __init__(self) -> None:
        self._starts = array("q")  # the index at which each run starts
        self._firsts = array("q")  # the labelled position it starts at
        self._n = 0
        self._last = -2

    def append(self, labelled: int) -> None:
        if labelled != self._last + 1:
            self._starts.append(self._n)
            self._firsts.append(labelled)
        self._last = labelled
        self._n += 1

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> int:
        k = max(bisect_right(self._starts, index) - 1, 0)
        return self._firsts[k] + index - self._starts[k]

    def __iter__(self) -> Iterator[int]:
        return (self[i] for i in range(self.first, self._n))

    @property
    def first(self) -> int:
        """The oldest index still known."""
        return self._starts[0] if self._starts else self._n

    @property
    def runs(self) -> int:
        return len(self._starts)

    @property
    def nbytes(self) -> int:
        return 2 * self._starts.itemsize * len(self._starts)

    def drop_before(self, index: int) -> None:
        k = bisect_right(self._starts, index) - 1
        if k > 0:
            del self._starts[:k]
            del self._firsts[:k]


class DriftWatch:
    """The detector bank and the drift policy, built from `DriftSettings`."""

    def __init__(self, settings: DriftSettings, *, accuracy_gap: bool | None = None):
        self.settings = settings
        self.levels = AlarmLevels.from_settings(settings)
        capped = settings.regrow or settings.keep_old_on_covariate
        self.policy = DriftPolicy(min_train_rows=settings.min_train_rows,
                                  data_persistence=settings.data_persistence, cooldown=settings.cooldown,
                                  regrow=settings.regrow, max_train_rows=settings.max_train_rows if capped else None,
                                  early_train_rows=settings.early_train_rows,
                                  first_train_rows=settings.first_train_rows,
                                  regrow_when_stale=settings.regrow_when_stale,
                                  first_train_z=settings.first_train_z,
                                  first_then_full=settings.first_then_full,
                                  pay=settings.retrain_pay, backoff_max=settings.retrain_backoff_max,
                                  pay_realised=settings.retrain_pay_realised)
        self.bootstrap = Bootstrap.from_settings(settings)  # the first champion (late labels: a provisional one)
        # regrow_when_stale: the last gap_window labels' outcomes, champion and online learner.
        self._recent: deque[tuple[bool, bool]] = deque(maxlen=settings.gap_window)
        # Since the change the policy collects rows for: labelled records only the online learner /
        # only the champion got right (McNemar: has the online learner overtaken the champion?).
        self._online_only = self._champion_only = 0
        self._overtake_from: int | None = None
        # first_train_gap: since that change, labels seen, the champion's right, the online learner's scored
        # and right; and the holdout accuracy of the champion serving (what it was promoted on).
        self._fall_from: int | None = None
        self._fall = [0, 0, 0, 0]
        self._promised: float | None = None
        self._moved_at: int | None = None  # first_train_fall: the labelled position of the last drifting data window
        gap = settings.accuracy_gap if accuracy_gap is None else accuracy_gap
        self.error_detector = ErrorRateDetector(delta=self.levels.error_delta)
        self.gap_detector = (AccuracyGapDetector(window=settings.gap_window, alpha=self.levels.gap_alpha,
                                                 min_gap=settings.gap_min,
                                                 every=min(settings.gap_every, settings.gap_window))
                             if gap else None)
        # The holdout test shares the gap detector's level: both test every `gap_every` labels.
        self.holdout_detector = (HoldoutGapDetector(alpha=self.levels.gap_alpha, min_gap=settings.gap_min / 2,
                                                    every=settings.gap_every, horizon=settings.holdout_gap_labels)
                                 if settings.holdout_gap else None)
        self.data_detector: DataDriftDetector | None = None
        self.prediction_detector: PredictionDriftDetector | None = None
        self.model: dict[str, Any] = {}
        # Error-stream index -> labelled position, for ADWIN's cut (`_event`).
        self._error_positions = PositionRuns()
        self.trained_on: tuple[int, int] | None = None  # labelled positions the champion was trained on
        self.since = 0  # labelled position at which the champion began serving
        self.probe: tuple[int, int] | None = None  # archive: (change at, judge at), labelled positions
        # archive_online_z: the online learner's outcomes on the probe's records (position -> right), and
        # those of the last probe that came due (what `archive_verdict` compares an archived champion with).
        self._probe_online: dict[int, bool] = {}
        self.probe_online: dict[int, bool] = {}
        self._probe_next = 0  # archive_every: the labelled position of the probe's next look
        self.estimate = AccuracyEstimate(window=settings.data_window)
        # retrain_pay: whether the served prediction was right, by labelled position, in a ring of fixed size
        # (the newest max_train_rows; a holdout is a fraction of a window): position + 1 when right, its
        # negative when wrong, 0 when not seen. Allocated once: the monitor's state does not grow with records.
        self._served = array("q", bytes(8 * settings.max_train_rows)) if settings.retrain_pay is not None else None
        # ... and once a retrain's champion serves: its records' labels seen, the served right, the online right.
        self._after: list[int] | None = None

    @property
    def detectors(self) -> list[DriftDetector[Any]]:
        """The bank, in the order it is fed."""
        bank: list[DriftDetector[Any] | None] = [self.error_detector, self.gap_detector, self.holdout_detector,
                                                 self.data_detector, self.prediction_detector]
        return [d for d in bank if d is not None]

    @property
    def needs_online(self) -> bool:
        """Whether a detector compares the online learner with the champion."""
        return self.gap_detector is not None

    def on_champion(self, model: Mapping[str, Any], reference: list[dict[str, Any]] | None, *,
                    trained_on: tuple[int, int] | None = None, labelled: int = 0,
                    holdout: tuple[float | None, int | None] | None = None) -> None:
        """A new champion serves: detectors start afresh; features are judged against its
        training `reference` (None: data-drift checks pause, label-based detection goes on).
        `trained_on` (labelled positions, when known) lets a covariate drift keep its rows;
        `labelled` is where it began serving (a change found later cannot start before it);
        `holdout` its (accuracy, rows) on its holdout, which its first labels are tested against."""
        self.model = dict(model)
        self._promised = holdout[0] if holdout is not None else None  # first_train_gap: the level it promised
        self._moved_at = None
        self.trained_on = trained_on
        self.since = labelled
        self.probe = None
        self._probe_online = {}
        self.estimate.reset("champion")
        self.estimate.reset("blend")
        self._recent.clear()
        self.error_detector.reset()
        self._error_positions = PositionRuns()
        if self.gap_detector is not None:
            self.gap_detector.reset()
        if self.holdout_detector is not None:
            self.holdout_detector.start(*(holdout or (None, None)))
        self._label_free(reference)

    def _label_free(self, reference: list[dict[str, Any]] | None) -> None:
        """The data and prediction detectors start afresh, features judged against `reference`
        (None: data-drift checks pause)."""
        s = self.settings
        self.prediction_detector = (PredictionDriftDetector(window=s.data_window, alpha=self.levels.data_alpha)
                                    if s.prediction_drift else None)
        self.data_detector = (DataDriftDetector(reference or [{}], window=s.data_window, alpha=self.levels.data_alpha)
                              if reference is not None else None)

    def observe(self, observation: Observation, *, index: int, labelled: int,
                context: dict[str, Any] | None = None) -> Step:
        """Feed every detector its part of `observation`. `index` is the stream position,
        `labelled` the labelled records so far; `context` goes into each event's window
        (the record id, say). Only the detectors that watch what it holds are fed (the others
        would read nothing and change nothing): its label's, then its record's."""
        o = observation
        fired = None
        if o.champion_right is not None:
            fired = self.observe_label(o.champion_right, o.online_right, index=index, labelled=labelled,
                                       context=context)
            if o.features is None and o.prediction is None:
                return fired or Step()
        more = self.observe_record(o.features, o.prediction, o.score, index=index, labelled=labelled,
                                   context=context)
        if fired is None:
            return more or Step()
        if more is not None:
            fired.events += more.events
            fired.decisions += more.decisions
        return fired

    def observe_label(self, champion_right: bool, online_right: bool | None = None, *, index: int, labelled: int,
                      context: dict[str, Any] | None = None) -> Step | None:
        """`observe(Observation(champion_right=..., online_right=...))` without the objects (once a label,
        a backtest's hot path); None when nothing fired."""
        positions = self._error_positions
        positions.append(labelled)
        if not len(positions) & 1023:
            self._trim_error_positions()
        settings = self.settings
        if settings.early_train_rows is not None and online_right is not None:
            self._count_overtake(champion_right, online_right, labelled)
        if ((settings.first_train_gap is not None or settings.covariate_hold)
                and (self.policy.change_at is not None or self._fall_from is not None)):
            self._count_fall(champion_right, online_right, labelled)  # (a no-op when both are None)
        if settings.regrow_when_stale and online_right is not None:
            self._recent.append((champion_right, online_right))
        probe = self.probe
        if probe is not None and online_right is not None and probe[0] < labelled <= probe[1]:
            self._probe_online[labelled - 1] = online_right  # the record at position labelled - 1
        # Each detector's `read` of such an observation, written out.
        fired = None
        error = self.error_detector
        error.update(not champion_right)
        if error.drift_detected:
            fired = self._on_concept(error, index, labelled, context, fired)
        gap = self.gap_detector
        if gap is not None:
            if online_right is None:
                gap.observe(NOTHING)  # it reads nothing: its flag is cleared, as `observe` does
            elif gap.update((champion_right, online_right)).drift_detected:
                fired = self._on_concept(gap, index, labelled, context, fired)
        holdout = self.holdout_detector
        if holdout is not None and holdout.update(champion_right).drift_detected:
            fired = self._on_concept(holdout, index, labelled, context, fired)
        return fired

    def observe_record(self, features: dict[str, Any] | None, prediction: Any = None, score: float | None = None,
                       *, index: int, labelled: int, context: dict[str, Any] | None = None) -> Step | None:
        """`observe(Observation(features=..., prediction=..., score=...))` without the objects (once a
        record, a backtest's hot path); None when nothing fired."""
        fired = None
        data = self.data_detector
        if data is not None:
            if features is None:
                data.observe(NOTHING)
            elif not data.update(features).n_seen % data.window:  # its `window_ended`
                fired = self._on_window(data, index, labelled, context, fired)
        served = self.prediction_detector
        if served is not None:
            if prediction is None:
                served.observe(NOTHING)
            elif not served.update((prediction, score)).n_seen % served.window:
                fired = self._on_window(served, index, labelled, context, fired)
        return fired

    def _on_concept(self, detector: DriftDetector[Any], index: int, labelled: int, context: dict[str, Any] | None,
                    fired: Step | None) -> Step:
        """A record-by-record (label) detector fired: its event and the policy's decision, added to `fired`."""
        step = fired if fired is not None else Step()
        event = self._event(detector, index, labelled, context)
        step.events.append(event)
        change_at = labelled
        if self.settings.change_from_detector and "adwin_change_at_labelled" in event.evidence:
            # ADWIN's cut: the rows after it are the new regime, so the first retrain comes sooner.
            change_at = max(self.since, min(labelled, event.evidence["adwin_change_at_labelled"]))
        if self.settings.archive and self.probe is None:
            self.probe = (change_at, change_at + self.settings.archive_probe)
            self._probe_next = change_at + (self.settings.archive_every or self.settings.archive_probe)
            self._probe_online = {}
        decision = self.policy.on_event(event, change_at=change_at, labelled=labelled)
        if decision is not None:
            step.decisions.append(decision)
        return step

    def _on_window(self, detector: DriftDetector[Any], index: int, labelled: int, context: dict[str, Any] | None,
                   fired: Step | None) -> Step | None:
        """A windowed (label-free) detector closed a window: its event when it drifted and the policy's decision."""
        event = self._event(detector, index, labelled, context) if detector.drift_detected else None
        if event is not None and detector is self.data_detector:
            self._moved_at = labelled
        keep_from = self.trained_on[0] if self.settings.keep_old_on_covariate and self.trained_on else None
        decision = self.policy.on_data_window(event, labelled=labelled, detector=detector.name, keep_from=keep_from)
        if event is None and decision is None:
            return fired
        step = fired if fired is not None else Step()
        if event is not None:
            step.events.append(event)
        if decision is not None:
            step.decisions.append(decision)
        return step

    def _trim_error_positions(self) -> None:
        """Drop the positions before ADWIN's window: a later cut (`n_seen - width`, the width
        growing by one a label at most) never reaches them."""
        self._error_positions.drop_before(self.error_detector.n_seen - self.error_detector.width)

    def _event(self, detector: DriftDetector[Any], index: int, labelled: int,
               context: dict[str, Any] | None) -> DriftEvent:
        evidence = dict(detector.evidence)
        window: dict[str, Any] = {"end_index": index}
        if detector.kind == "concept":
            # The records labelled from the detection on are the ones known to follow the new
            # concept (ADWIN's own cut often lies well before the real change).
            window.update(labelled=evidence["window"], change_at_labelled=labelled)
            if detector is self.error_detector and self.error_detector.change_at is not None:
                positions = self._error_positions
                evidence["adwin_change_at_labelled"] = positions[min(self.error_detector.change_at,
                                                                     len(positions) - 1)]
        else:
            window["records"] = evidence["window"]
        window.update(context or {})
        return DriftEvent(detector=detector.name, kind=detector.kind, index=index, statistic=evidence["statistic"],
                          threshold=evidence["threshold"], window=window, evidence=evidence, model=self.model,
                          incident=self.policy.incident_at(labelled))

    def _count_overtake(self, champion_right: bool, online_right: bool, labelled: int) -> None:
        change_at = self.policy.change_at
        if change_at != self._overtake_from:  # a new change (or none): count afresh from it
            self._overtake_from, self._online_only, self._champion_only = change_at, 0, 0
        if change_at is not None and labelled > change_at:
            self._online_only += online_right and not champion_right
            self._champion_only += champion_right and not online_right

    def _count_fall(self, champion_right: bool, online_right: bool | None, labelled: int) -> None:
        change_at = self.policy.change_at
        if change_at != self._fall_from:  # a new change (or none): count afresh from it
            self._fall_from, self._fall = change_at, [0, 0, 0, 0]
        if change_at is not None and labelled > change_at:
            fall = self._fall
            fall[0] += 1
            fall[1] += champion_right
            if online_right is not None:
                fall[2] += 1
                fall[3] += online_right

    @property
    def fallen(self) -> bool:
        """Whether, on the labelled records since the change being collected for, the champion and the
        online learner are both `first_train_gap` or more below the accuracy the champion was promoted
        on (its holdout's): neither serves the new concept, so a first try on few rows may pay."""
        gap, promised = self.settings.first_train_gap, self._promised
        if gap is None or promised is None or self.policy.change_at is None or self.policy.change_at != self._fall_from:
            return False
        seen, champion, scored, online = self._fall
        fall = self.settings.first_train_fall
        alone = fall == "champion" or (fall == "covariate" and self._moved_at is not None
                                       and self._moved_at >= self.policy.change_at - self.settings.data_window)
        best = max(champion / seen if seen else 1.0, online / scored if scored and not alone else 0.0)
        return best < promised - gap

    @property
    def overtaken(self) -> bool:
        """Whether the online learner is significantly more accurate than the champion on the
        labelled records since the change being collected for (McNemar, z = 3)."""
        if self.policy.change_at is None or self.policy.change_at != self._overtake_from:
            return False
        wins, losses = self._online_only, self._champion_only
        return wins - losses > 3.0 * math.sqrt(wins + losses)

    @property
    def stale(self) -> bool:
        """Whether the online learner was significantly more accurate than the champion over the last
        `gap_window` labels the champion served (McNemar, z = 3): a retrain would likely pay."""
        recent = self._recent
        if len(recent) < (recent.maxlen or 0):
            return False
        wins = sum(online and not champion for champion, online in recent)
        losses = sum(champion and not online for champion, online in recent)
        return wins - losses > 3.0 * math.sqrt(wins + losses)

    def on_labelled(self, labelled: int) -> Decision | None:
        """Labelled records accrued: a retrain decision once enough follow a change (sooner with
        `early_train_rows` once the online learner has overtaken the champion since the change)."""
        decision = self.policy.on_labelled(labelled, overtaken=self.settings.early_train_rows is not None
                                           and self.overtaken,
                                           first=self.settings.first_train_gap is None or self.fallen,
                                           stale=not self.settings.regrow_when_stale or self.stale)
        if (decision is not None and decision.action is Action.RETRAIN and self.settings.covariate_hold
                and not self.policy.concept and self.policy.change_at is not None and self._holds_up()):
            # Only the features moved, and the labels since show the champion as accurate as it was promoted
            # on: a retrain has nothing to win back. As after a retrain it survived, the moved features become
            # the label-free detectors' reference (else they fire again, a retrain each time).
            seen, right = self._fall[0], self._fall[1]
            self.retrain_finished(promoted=False, labelled=labelled)
            return Decision(action=Action.HOLD, event_ids=decision.event_ids, incident=decision.incident,
                            reason=f"covariate drift held: the champion {right / seen:.4f} on the {seen} labelled "
                                   f"records since the change, promoted on {self._promised:.4f}; no retrain")
        if decision is not None and decision.window is not None and self.settings.candidate_windows:
            decision = self._candidates(decision)
        return decision

    def _holds_up(self) -> bool:
        """`covariate_hold`: whether, on the labelled records since the change, the champion is within
        `retrain_pay` (else `promote_margin`) of the accuracy it was promoted on (its holdout's)."""
        promised, (seen, right) = self._promised, self._fall[:2]
        if promised is None or self._fall_from != self.policy.change_at or not seen:
            return False
        margin = self.settings.retrain_pay if self.settings.retrain_pay is not None else self.settings.promote_margin
        return right / seen >= promised - margin

    def _candidates(self, decision: Decision) -> Decision:
        """The decision's window, its newest half (of the rows before the holdout) and the champion's
        rows plus the new ones (at most `max_train_rows`), as newest-row counts of a window that holds all."""
        assert decision.window is not None  # called for retrain decisions only
        start, end = decision.window
        rows = end - start
        holdout = round(rows * self.settings.holdout_fraction)
        tails = [rows, holdout + (rows - holdout) // 2]
        if self.trained_on is not None and self.trained_on[0] < start:
            tails.append(min(end - self.trained_on[0], self.settings.max_train_rows))
        tails = [t for k, t in enumerate(tails) if t not in tails[:k]]
        return decision.model_copy(update={"window": (end - max(tails), end), "candidates": tuple(tails)})

    def archive_due(self, labelled: int) -> tuple[int, int] | None:
        """With `archive` on: once `archive_probe` labelled records follow a concept drift, the
        window (start, end) of labelled positions to judge the archived champions on (once); with
        `archive_every`, also every that many labelled records before (each look sees all the rows
        since the change: a concept that clearly returns comes back sooner)."""
        if self.probe is None or labelled < min(self._probe_next, self.probe[1]):
            return None
        start = self.probe[0]
        if labelled >= self.probe[1]:  # the last look
            self.probe = None
            self.probe_online, self._probe_online = self._probe_online, {}
        else:
            self.probe_online = dict(self._probe_online)
            self._probe_next = labelled + (self.settings.archive_every or self.settings.archive_probe)
        return start, labelled

    def archive_verdict(self, positions: Sequence[int], champion: Sequence[bool],
                        archived: Sequence[tuple[int, Sequence[bool]]],
                        online: Mapping[int, bool] | None = None,
                        holdouts: Mapping[int, float | None] | None = None) -> dict[str, Any] | None:
        """Judge archived champions (version, right or not per record) against the champion on the
        probe's labelled records at `positions`. The best (the first on a tie) returns (`reinstate`)
        when it leads the champion by `archive_margin` and, with `archive_online_z`, the online
        learner significantly on the records `online` (position -> right, `probe_online`) holds
        (McNemar): the online learner serves a drift anyway, so a champion no better than it would
        only stand in the way of the retrain that follows. With `holdouts` (version -> its holdout
        accuracy when trained), `answers` says whether it is about as accurate on the probe as then
        (within `archive_margin`): its concept returned. Else it is a stopgap, and with
        `archive_stopgap` the change stays pending (`reinstated(answers=False)`). None: nothing to judge.

        >>> watch = DriftWatch(DriftSettings(archive=True, archive_online_z=2.0))
        >>> positions = range(100)
        >>> old = [True] * 90 + [False] * 10
        >>> watch.archive_verdict(positions, [False] * 100, [(1, old)])["reinstate"]
        True
        >>> online = {p: True for p in positions}  # the online learner had them all right
        >>> verdict = watch.archive_verdict(positions, [False] * 100, [(1, old)], online)
        >>> verdict["reinstate"], verdict["online_accuracy"]
        (False, 1.0)
        """
        rows = len(positions)
        if not archived or not rows:
            return None
        current = sum(champion) / rows
        best, version, right = max(((sum(r) / rows, v, r) for v, r in archived), key=lambda item: item[0])
        verdict: dict[str, Any] = {"to": version, "accuracy": best, "champion_accuracy": current, "rows": rows,
                                   "reinstate": best > current + self.settings.archive_margin}
        z = self.settings.archive_online_z
        if verdict["reinstate"] and z is not None and online:
            pairs = [(r, online[p]) for p, r in zip(positions, right, strict=True) if p in online]
            if pairs:  # none: the online learner scored none of them, nothing to compare with
                wins = sum(r and not o for r, o in pairs)
                losses = sum(o and not r for r, o in pairs)
                verdict["online_accuracy"] = sum(o for _, o in pairs) / len(pairs)
                verdict["reinstate"] = wins - losses > z * math.sqrt(wins + losses)
        holdout = (holdouts or {}).get(version)
        if holdout is not None:
            verdict["answers"] = best >= holdout - self.settings.archive_margin
        return verdict

    def probation_verdict(self, champion: Sequence[bool], replaced: Sequence[bool]) -> dict[str, Any] | None:
        """`probation`: a retrain's champion (right or not on each of the labelled records it scored, its
        first `gap_window`) against the champion it replaced on the same records. The replaced one returns
        (`reinstate`) when it was right significantly more often where they disagree (McNemar at
        `probation_z`). None: nothing to judge.

        >>> watch = DriftWatch(DriftSettings(probation=True))
        >>> watch.probation_verdict([True] * 60 + [False] * 40, [True] * 90 + [False] * 10)["reinstate"]
        True
        >>> watch.probation_verdict([True] * 85 + [False] * 15, [True] * 90 + [False] * 10)["reinstate"]
        False
        """
        rows = len(champion)
        if not rows or len(replaced) != rows:
            return None
        wins = sum(r and not c for c, r in zip(champion, replaced, strict=True))
        losses = sum(c and not r for c, r in zip(champion, replaced, strict=True))
        return {"rows": rows, "accuracy": sum(replaced) / rows, "champion_accuracy": sum(champion) / rows,
                "reinstate": wins - losses > self.settings.probation_z * math.sqrt(wins + losses)}

    def probation_failed(self, verdict: Mapping[str, Any], *, labelled: int) -> None:
        """The replaced champion came back on probation: the change is answered (it serves it as well as what
        was trained on it; no regrow), and the promotion did not pay (`retrain_pay`'s back-off)."""
        self.policy.on_reinstated(labelled=labelled)
        self.policy.paid(verdict["champion_accuracy"] - verdict["accuracy"], labelled, realised=True)

    def reinstated(self, *, labelled: int, answers: bool = True) -> None:
        """An archived champion came back without training: the pending change is answered
        (call `on_champion` for it as for any champion), unless with `archive_stopgap` it does not
        `answer` it (far below its own holdout accuracy): then it serves until the retrain."""
        if answers or not self.settings.archive_stopgap:
            self.policy.on_reinstated(labelled=labelled)

    # -- the label-free accuracy estimate ------------------------------------------------------
    def served(self, source: str, confidence: float | None) -> float | None:
        """A record was served by `source` (champion, online, blend) with `confidence` (the
        served class's probability): its expected accuracy, counted in the estimate."""
        return None if confidence is None else self.estimate.served(source, confidence)

    def online_renewed(self) -> None:
        """The online learner renewed itself (`training.online.Renewing`): its calibration map,
        and the blend's, were the old learner's; the new one starts from its raw confidence."""
        self.estimate.reset("online")
        self.estimate.reset("blend")

    def served_label(self, source: str, confidence: float | None, right: bool) -> None:
        """The label of a served record came: calibrate `source`'s confidence with it."""
        if confidence is not None:
            self.estimate.learn(source, confidence, right)

    def retrain_started(self) -> None:
        """A retrain the policy did not ask for (a bootstrap, a schedule) is in flight."""
        self.policy.in_flight = True

    def served_outcome(self, position: int, right: bool, online_right: bool | None = None,
                       current: bool = False) -> None:
        """The label of the record at labelled position `position` came: was the served prediction right
        (with `retrain_pay`, what a challenger is measured against), and the online learner's; `current`:
        the champion serving now scored it. A retrain's champion that won is judged again on its first
        `gap_window` such labels: it paid only if the served predictions beat the online learner's by
        `retrain_pay` (else the champion adds nothing the online learner does not give already)."""
        served = self._served
        if served is None:
            return
        served[position % len(served)] = position + 1 if right else -(position + 1)
        after = self._after
        if after is None or not current or online_right is None:
            return
        after[0] += 1
        after[1] += right
        after[2] += online_right
        if after[0] >= self.settings.gap_window:
            self._after = None
            self.policy.paid((after[1] - after[2]) / after[0], position + 1, realised=True)

    def bought(self, accuracy: float | None, holdout: tuple[int, int] | None) -> float | None:
        """What a challenger of holdout `accuracy` on labelled positions `holdout` (start, end) buys over the
        served predictions on them; None: not known (too few of them seen served)."""
        served = self._served
        if accuracy is None or holdout is None or served is None:
            return None
        start, end = holdout
        size = len(served)
        marks = [served[p % size] for p in range(max(start, end - size), end)]
        seen = [m for m, p in zip(marks, range(max(start, end - size), end), strict=True) if abs(m) == p + 1]
        if not seen or len(seen) < (end - start) // 2:
            return None
        return accuracy - sum(m > 0 for m in seen) / len(seen)

    def retrain_finished(self, *, promoted: bool, labelled: int, window_end: int | None = None,
                         replaced: bool = True, bought: float | None = None) -> None:
        """A retrain ended; see `DriftPolicy.on_retrain_finished` for `window_end`, `replaced` and `bought`."""
        self.policy.on_retrain_finished(promoted=promoted, labelled=labelled, window_end=window_end,
                                        replaced=replaced, bought=bought)
        if not promoted and self.data_detector is not None and self.data_detector.last_rows:
            # The champion held against a challenger trained on the new rows: the shifted features are its
            # data now, so the data detectors judge against them (else they fire again, a retrain each time).
            self._label_free(self.data_detector.last_rows)
        pay = self.settings.retrain_pay
        self._after = [0, 0, 0] if pay is not None and promoted and bought is not None and bought >= pay else None

    @property
    def busy(self) -> bool:
        return self.policy.in_flight

    def vitals(self) -> dict[str, Any]:
        """The detectors' current statistics and the champion's recent accuracy, for status and plots."""
        vitals: dict[str, Any] = {"detectors": {}, "incident": self.policy.open_incident}
        if self.estimate.estimated_accuracy is not None:
            vitals["estimated_accuracy"] = self.estimate.estimated_accuracy
        errors = self.error_detector
        if errors.width:
            vitals["accuracy"] = round(1.0 - errors.error_rate, 4)
            vitals["detectors"][errors.name] = {"statistic": round(errors.error_rate, 4), "window": errors.width,
                                                "n": errors.n_seen}
        data = self.data_detector
        if data is not None and data.evidence:
            vitals["detectors"][data.name] = {"statistic": data.evidence["statistic"],
                                              "threshold": data.evidence["threshold"],
                                              "drifted_features": data.evidence.get("drifted_features", []),
                                              "n": data.n_seen}
        return vitals
