"""Detectors over the champion's errors and accuracy (labels needed) and over features and
predictions (label-free).

Every detector follows River's contract: `update(...)` returns the detector, then read
`drift_detected`; when it is set, `evidence` holds the statistic, the threshold, the window
and any per-feature detail. Each detector reports a change once: after firing it starts
afresh from the new regime, so one drift is one event.

Error control is stated as an `AlarmBudget`: the expected number of false alarms per
million records on a stationary stream, shared among the detectors. Each detector turns its
share into a per-test level from how often it tests (a union bound, so the real rate is lower).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, ClassVar, Generic, Self, TypeVar

import numpy as np
from river.drift import ADWIN
from scipy import stats

from driftctl.settings import DriftSettings

MILLION = 1_000_000
X = TypeVar("X")
ADWIN_CLOCK = 32  # River's ADWIN tests for a cut once every 32 updates


class AlarmBudget:
    """Expected false alarms per million records, split evenly among `detectors`.

    A detector that tests once every `every` records runs `1e6 / every` tests per million
    records; giving each test the level `share * every / 1e6` bounds its expected false
    alarms per million records by `share` (union bound).

    >>> budget = AlarmBudget(per_million=1.0, detectors=4)
    >>> budget.share
    0.25
    >>> budget.level(every=1000)  # a test per 1,000-record window
    0.00025
    >>> AlarmBudget(per_million=0)
    Traceback (most recent call last):
    ...
    ValueError: per_million must be positive, got 0
    """

    def __init__(self, per_million: float = 1.0, detectors: int = 4):
        if not per_million > 0:
            raise ValueError(f"per_million must be positive, got {per_million!r}")
        if detectors < 1:
            raise ValueError(f"detectors must be at least 1, got {detectors!r}")
        self.per_million = per_million
        self.detectors = detectors

    @property
    def share(self) -> float:
        return self.per_million / self.detectors

    def level(self, every: int) -> float:
        """The false-alarm probability one test may spend when it runs every `every` records."""
        return min(0.5, self.share * every / MILLION)

    def __repr__(self) -> str:
        return f"AlarmBudget(per_million={self.per_million!r}, detectors={self.detectors!r})"


@dataclass(frozen=True)
class AlarmLevels:
    """The level each detector runs at: an explicit setting, or one share of the alarm budget.

    >>> levels = AlarmLevels.from_settings(DriftSettings())
    >>> levels.error_delta, levels.data_alpha
    (8e-06, 0.00025)
    """

    error_delta: float
    data_alpha: float
    gap_alpha: float

    @classmethod
    def from_settings(cls, settings: DriftSettings) -> AlarmLevels:
        budget = AlarmBudget(settings.false_alarms_per_million, detectors=4)
        return cls(
            error_delta=settings.error_delta if settings.error_delta is not None else budget.level(every=ADWIN_CLOCK),
            data_alpha=(settings.data_alpha if settings.data_alpha is not None
                        else budget.level(every=settings.data_window)),
            gap_alpha=budget.level(every=settings.gap_every),
        )



@dataclass(slots=True)
class Observation:
    """What one record tells the detectors; each detector reads the part it watches and
    ignores an observation without it (a telemetry record has no label yet, a label has no
    features), so a bank of detectors is fed by iterating it. Treat it as read-only (not frozen:
    a frozen dataclass's constructor costs three times as much, twice per record)."""

    features: dict[str, Any] | None = None
    prediction: Any = None  # what the champion served
    score: float | None = None  # its confidence
    champion_right: bool | None = None  # the label has arrived: was the champion right?
    online_right: bool | None = None  # ... and the online learner?


NOTHING = Observation()  # an observation that holds nothing: `observe(NOTHING)` clears a detector's flag


# River's ADWIN keeps its window in a private helper; read directly, it saves four calls a label.
ADWIN_HELPER = hasattr(ADWIN(), "_helper")


class DriftDetector(ABC, Generic[X]):
    """The contract every detector keeps, in the shape of River's `DriftDetector`.

    `update(x)` takes one input and returns the detector; then read the read-only
    `drift_detected`, and `evidence` when it is set. `_reset()` rebuilds all learned state
    (the constructor only stores options, then resets). `name` and `kind` ("concept": labels
    needed; "data" and "prediction": label-free) say what fired. Windowed detectors test once
    per `window` inputs and say so with `window_ended`, so a policy can count drifting
    windows in a row.
    """

    name: ClassVar[str]
    kind: ClassVar[str]
    windowed: ClassVar[bool] = False
    window: int = 0

    def _reset(self) -> None:
        self._drift_detected = False
        self._evidence: dict[str, Any] = {}
        self.n_seen = 0

    def reset(self) -> None:
        """Forget everything learned: a new champion serves."""
        self._reset()

    @property
    def drift_detected(self) -> bool:
        return self._drift_detected

    @property
    def evidence(self) -> dict[str, Any]:
        """The statistic, threshold, window and detail of the last firing (or test, for windowed detectors)."""
        return self._evidence

    @property
    def window_ended(self) -> bool:
        """Whether the last update closed a test window (always false for record-by-record detectors)."""
        return self.windowed and self.n_seen > 0 and self.n_seen % self.window == 0

    @abstractmethod
    def update(self, x: X) -> Self:
        """Take one input; sets `drift_detected` for this input only."""

    @abstractmethod
    def read(self, observation: Observation) -> X | None:
        """This detector's input in `observation`, or None when it holds none."""

    def observe(self, observation: Observation) -> Self:
        """`update` with this detector's part of `observation`; without one, nothing changes."""
        x = self.read(observation)
        if x is None:
            self._drift_detected = False
            return self
        return self.update(x)


class ErrorRateDetector(DriftDetector[bool]):
    """ADWIN over the champion's 0/1 error stream; fires only when the error rate rises.

    ADWIN also fires when a model gets *better*; that is no reason to retrain. After a
    rise is reported ADWIN starts afresh, so the rest of the old regime still in its window
    cannot report the same drift twice. ADWIN tests every `ADWIN_CLOCK` records: `AlarmBudget.level(ADWIN_CLOCK)`
    is the delta that spends a budget share (`ErrorRateDetector.from_budget`).

    >>> import random
    >>> rng = random.Random(7)
    >>> detector = ErrorRateDetector(delta=0.002)
    >>> fired = []
    >>> for i in range(4000):
    ...     _ = detector.update(rng.random() < (0.05 if i < 2000 else 0.35))
    ...     if detector.drift_detected:
    ...         fired.append(i)
    >>> fired
    [2047]

    One abrupt rise, reported once, however long the new regime lasts:

    >>> detector, fired = ErrorRateDetector.from_budget(AlarmBudget(1.0)), []
    >>> for i in range(20000):
    ...     _ = detector.update(rng.random() < (0.1 if i < 5000 else 0.2))
    ...     if detector.drift_detected:
    ...         fired.append(i)
    >>> fired
    [5503]
    """

    name = "error-adwin"
    kind = "concept"

    def __init__(self, delta: float = 0.002):
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        self.delta = delta
        self._reset()

    def _reset(self) -> None:
        self._adwin = ADWIN(delta=self.delta)
        super()._reset()
        self.change_at: int | None = None  # error-stream position where the new regime starts

    @classmethod
    def from_budget(cls, budget: AlarmBudget) -> ErrorRateDetector:
        return cls(delta=budget.level(every=ADWIN_CLOCK))

    @property
    def error_rate(self) -> float:
        """The error rate over ADWIN's current window (since the last change it reported)."""
        return float(self._adwin.estimation)

    @property
    def width(self) -> int:
        """Errors in ADWIN's current window."""
        return int(self._adwin.width)

    def read(self, observation: Observation) -> bool | None:
        return None if observation.champion_right is None else not observation.champion_right

    def update(self, error: bool) -> Self:
        x = 1.0 if error else 0.0
        # ADWIN's width and estimation before the update, read from its helper (River's `width`
        # and `estimation` properties, the same values and operations, four calls fewer a label);
        # a River without that private helper gets the public properties.
        adwin = self._adwin
        helper = adwin._helper if ADWIN_HELPER else None
        if helper is not None:
            width_before = helper.get_width()
            total_before = (0.0 if width_before == 0 else helper.get_total() / width_before) * width_before
        else:
            width_before = int(adwin.width)
            total_before = float(adwin.estimation) * width_before
        adwin.update(x)
        self.n_seen += 1
        self._drift_detected = False
        if not adwin.drift_detected:
            return self
        width, recent = int(self._adwin.width), float(self._adwin.estimation)
        dropped = width_before + 1 - width
        older = (total_before + x - recent * width) / dropped if dropped > 0 else recent
        if recent > older:
            self._drift_detected = True
            self.change_at = self.n_seen - width
            self._evidence = {
                "statistic": recent,
                "threshold": older,
                "error_rate_before": older,
                "error_rate_after": recent,
                "window": width,
                "delta": self.delta,
                "change_at": self.change_at,
            }
            self._adwin = ADWIN(delta=self.delta)  # the next report is a new change
        return self


class DataDriftDetector(DriftDetector[dict[str, Any]]):
    """Per-feature two-sample tests of each full window against a fixed reference.

    Kolmogorov-Smirnov for numbers, chi-squared for categories; Bonferroni across features
    keeps the chance of a false alarm per window at most `alpha`. Reference statistics are
    computed once, so a window costs a few milliseconds.

    >>> import random
    >>> rng = random.Random(1)
    >>> reference = [{"t": rng.gauss(0, 1)} for _ in range(1000)]
    >>> detector = DataDriftDetector(reference, window=500, alpha=0.001)
    >>> fired = []
    >>> for i in range(3000):
    ...     _ = detector.update({"t": rng.gauss(0 if i < 2000 else 0.5, 1)})
    ...     if detector.drift_detected:
    ...         fired.append(i)
    >>> fired
    [2499, 2999]
    """

    name = "data-ks"
    kind = "data"
    windowed = True

    def __init__(self, reference: list[dict[str, Any]], window: int = 1000, alpha: float = 0.001):
        if not reference:
            raise ValueError("reference must hold at least one record")
        if window < 2:
            raise ValueError(f"window must be at least 2, got {window!r}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        self.reference = reference
        self.window = window
        self.alpha = alpha
        self.last_rows: list[dict[str, Any]] = []  # the newest window tested (a survived retrain rebases on it)
        self._reset()

    def _reset(self) -> None:
        self._numeric: dict[str, np.ndarray] = {}
        self._categorical: dict[str, Counter[str]] = {}
        for name in sorted({key for row in self.reference for key in row}):
            values = [row.get(name) for row in self.reference if row.get(name) is not None]
            if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                self._numeric[name] = np.sort(np.asarray(values, dtype=float))
            else:
                self._categorical[name] = Counter(str(v) for v in values)
        self._buffer: list[dict[str, Any]] = []
        self._pending: list[tuple[str, Any, Any]] = []  # KS tests whose p-value is not computed yet
        super()._reset()

    @classmethod
    def from_budget(cls, reference: list[dict[str, Any]], budget: AlarmBudget,
                    window: int = 1000) -> DataDriftDetector:
        """A window-level `alpha` that spends one budget share (one test per window)."""
        return cls(reference, window=window, alpha=budget.level(every=window))

    @property
    def features(self) -> list[str]:
        return [*self._numeric, *self._categorical]

    def read(self, observation: Observation) -> dict[str, Any] | None:
        return observation.features

    def update(self, x: dict[str, Any]) -> Self:
        self._buffer.append(x)
        self.n_seen += 1
        self._drift_detected = False
        if len(self._buffer) >= self.window:
            self._test(self._buffer)
            self._buffer = []
        return self

    def update_all(self, rows: list[dict[str, Any]]) -> Self:
        """`update` with each of `rows` in turn, a window's worth at a time (the flag and the
        evidence are those the last `update` would leave)."""
        start = 0
        while start < len(rows):
            chunk = rows[start:start + self.window - len(self._buffer)]
            start += len(chunk)
            self._buffer.extend(chunk)
            self.n_seen += len(chunk)
            self._drift_detected = False
            if len(self._buffer) >= self.window:
                self._test(self._buffer)
                self._buffer = []
        return self

    def update_columns(self, numbers: dict[str, np.ndarray], counts: dict[str, Counter[str]], rows: int) -> Self:
        """A whole window of `rows` rows given by its columns, as `_test` reads rows: each numeric
        feature's finite values in order, each categorical feature's counts of its values as text.
        The same as `update_all` with those rows when none is buffered (`PredictionDriftDetector`
        knows its columns without making rows)."""
        if self._buffer or rows != self.window:
            raise ValueError(f"a whole window ({self.window} rows) with none buffered, got {rows} "
                             f"and {len(self._buffer)} buffered")
        self.n_seen += rows
        self._drift_detected = False
        self._judge(numbers, counts, rows)
        return self

    def _test(self, rows: list[dict[str, Any]]) -> None:
        self.last_rows = rows
        names = list(self._numeric)
        matrix = _matrix(rows, names)  # one conversion for all columns (None: a gap or a non-number)
        if matrix is None:
            columns = _columns(rows, names)
            numbers = {name: _numbers(columns[name]) for name in names}
        else:  # `_numbers` of each column
            numbers = {name: matrix[:, k][np.isfinite(matrix[:, k])] for k, name in enumerate(names)}
        counts = {name: Counter(str(r[name]) for r in rows if r.get(name) is not None) for name in self._categorical}
        self._judge(numbers, counts, len(rows))

    def _judge(self, numbers: dict[str, np.ndarray], window_counts: dict[str, Counter[str]], rows: int) -> None:
        """Each feature's test of a window's columns (see `update_columns`) against the reference."""
        threshold = self.alpha / max(len(self.features), 1)
        per_feature: dict[str, dict[str, Any]] = {}
        pending: list[tuple[str, Any, Any]] = []
        for name, ref in self._numeric.items():
            values = numbers[name]
            if len(values) < 2:
                continue
            statistic, n = ks_statistic(ref, values)
            detail = per_feature[name] = {"test": "ks", "statistic": float(statistic), "p_value": 1.0}
            if threshold < 0.01 and _KS_SURE_N[0] <= n <= _KS_SURE_N[1] and n * statistic * statistic < _KS_SURE:
                pending.append((name, statistic, n))  # p >= 0.015: not drifted; its p-value is computed when read
            else:
                detail["p_value"] = ks_p_value(statistic, n)
        for name, ref_counts in self._categorical.items():
            counts = window_counts[name]
            categories = sorted(set(ref_counts) | set(counts))
            if len(categories) < 2:
                continue
            table = np.array([[ref_counts.get(c, 0) + 0.5 for c in categories],
                              [counts.get(c, 0) + 0.5 for c in categories]])
            chi2, p_value, _, _ = stats.chi2_contingency(table)
            per_feature[name] = {"test": "chi2", "statistic": float(chi2), "p_value": float(p_value)}
        for detail in per_feature.values():
            detail["drifted"] = detail["p_value"] < threshold
        drifted = sorted(name for name, d in per_feature.items() if d["drifted"])
        smallest = min((d["p_value"] for d in per_feature.values()), default=1.0)
        self._drift_detected = bool(drifted)
        self._evidence = {
            "statistic": smallest,
            "threshold": threshold,
            "alpha": self.alpha,
            "correction": "bonferroni",
            "window": rows,
            "drifted_features": drifted,
            "features": per_feature,
        }
        self._pending = pending

    @property
    def evidence(self) -> dict[str, Any]:
        if self._pending:  # the p-values left for later (see `_test`), then the smallest one
            per_feature = self._evidence["features"]
            for name, statistic, n in self._pending:
                per_feature[name]["p_value"] = ks_p_value(statistic, n)
            self._pending = []
            self._evidence["statistic"] = min(d["p_value"] for d in per_feature.values())
        return self._evidence


class PredictionDriftDetector(DriftDetector[tuple[Any, float | None]]):
    """Label-free drift in what the champion serves: the predicted classes (chi-squared)
    and the confidence of each prediction (Kolmogorov-Smirnov), window by window.

    The reference is the first full window served after the detector is created (scores on
    the champion's own training rows are overconfident and would make every later window
    look drifted), or a list of `(prediction, score)` pairs given up front.

    >>> import random
    >>> rng = random.Random(3)
    >>> detector = PredictionDriftDetector(window=500, alpha=0.0005)
    >>> fired = []
    >>> for i in range(4000):
    ...     positive_share = 0.3 if i < 2500 else 0.5
    ...     prediction = int(rng.random() < positive_share)
    ...     _ = detector.update((prediction, rng.uniform(0.5, 1.0)))
    ...     if detector.drift_detected:
    ...         fired.append(i)
    >>> fired, detector.evidence["drifted_features"]
    ([2999, 3499, 3999], ['prediction'])

    Like `DataDriftDetector` it reports every drifted window: persistence across windows
    is the policy's call.
    """

    name = "prediction-drift"
    kind = "prediction"
    windowed = True

    def __init__(self, window: int = 1000, alpha: float = 0.001,
                 reference: list[tuple[Any, float | None]] | None = None):
        if window < 2:
            raise ValueError(f"window must be at least 2, got {window!r}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        self.window = window
        self.alpha = alpha
        self.reference = reference
        self._reset()

    @classmethod
    def from_budget(cls, budget: AlarmBudget, window: int = 1000) -> PredictionDriftDetector:
        return cls(window=window, alpha=budget.level(every=window))

    def _reset(self) -> None:
        self._inner: DataDriftDetector | None = None
        self._buffer: list[dict[str, Any]] = []
        self._served: list[tuple[Any, float | None]] = []  # this window's records, made rows when it ends
        if self.reference:
            self._inner = DataDriftDetector([self._row(p, s) for p, s in self.reference], window=self.window,
                                            alpha=self.alpha)
        super()._reset()

    @staticmethod
    def _row(prediction: Any, score: float | None) -> dict[str, Any]:
        row: dict[str, Any] = {"prediction": str(prediction)}
        if score is not None and _is_number(score):
            row["score"] = float(score)
        return row

    @classmethod
    def _rows(cls, served: list[tuple[Any, float | None]]) -> list[dict[str, Any]]:
        """`_row` of each record served, with a finite float score written out (once a window)."""
        rows: list[dict[str, Any]] = []
        append, isfinite, row = rows.append, math.isfinite, cls._row
        for prediction, score in served:
            if type(score) is float and isfinite(score):
                append({"prediction": str(prediction), "score": score})
            else:
                append(row(prediction, score))
        return rows

    @staticmethod
    def _columns(served: list[tuple[Any, float | None]],
                 inner: DataDriftDetector) -> tuple[dict[str, np.ndarray], dict[str, Counter[str]]]:
        """The columns `inner._test` would read from `_rows(served)`, without making the rows: the
        prediction as text (never missing), the score where `_row` keeps it (a finite number)."""
        predictions, scores = zip(*served, strict=True)
        numbers: dict[str, np.ndarray] = {}
        if "score" in inner._numeric:
            if all(type(s) is float for s in scores):
                array = np.array(scores, dtype=float)
                numbers["score"] = array[np.isfinite(array)]
            else:
                numbers["score"] = _numbers([float(s) if s is not None and _is_number(s) else None for s in scores])
        counts = {"prediction": Counter(map(str, predictions))} if "prediction" in inner._categorical else {}
        return numbers, counts

    def read(self, observation: Observation) -> tuple[Any, float | None] | None:
        return None if observation.prediction is None else (observation.prediction, observation.score)

    def update(self, x: tuple[Any, float | None]) -> Self:
        """`x` is what was served: (prediction, confidence or None)."""
        self.n_seen += 1
        self._drift_detected = False
        # Records are kept as they came and made rows once their window is full (the same rows,
        # in the same order, a dict per record fewer while the window fills).
        served = self._served
        served.append(x)
        if len(served) < self.window:
            return self
        self._served = []
        if self._inner is None:
            self._buffer.extend(self._rows(served))
            if len(self._buffer) >= self.window:
                self._inner = DataDriftDetector(self._buffer, window=self.window, alpha=self.alpha)
                self._buffer = []
            return self
        inner = self._inner
        if inner._buffer or not inner._numeric.keys() <= {"score"} or not inner._categorical.keys() <= {"prediction"}:
            inner.update_all(self._rows(served))  # (never: it is fed whole windows of `_row`s)
        else:
            inner.update_columns(*self._columns(served, inner), len(served))
        if self._inner.drift_detected:
            self._drift_detected = True
            self._evidence = {**self._inner.evidence, "reference": "first window served" if not self.reference
                             else "given"}
        return self


class AccuracyGapDetector(DriftDetector[tuple[bool, bool]]):
    """The online learner beats the champion on the same recent records: a concept drift
    the champion has not followed, seen through the labels.

    Over the last `window` labelled records it counts the discordant pairs (online right and
    champion wrong: `b`; the reverse: `c`) and runs McNemar's exact one-sided test every
    `every` records. It fires when the gap `(b - c) / window` is at least `min_gap` and the
    test's p-value is below `alpha`. Then it forgets the window and stays silent while the
    gap lasts: it re-arms only once a full window shows a gap below `min_gap / 2` (or on
    `reset()`, when a new champion serves), so one change is one event.

    >>> import random
    >>> rng = random.Random(5)
    >>> detector = AccuracyGapDetector(window=500, alpha=1e-5, min_gap=0.05, every=50)
    >>> fired = []
    >>> for i in range(6000):
    ...     champion_right = rng.random() < (0.9 if i < 3000 else 0.7)
    ...     online_right = rng.random() < (0.85 if i < 3000 else 0.88)
    ...     _ = detector.update((champion_right, online_right))
    ...     if detector.drift_detected:
    ...         fired.append(i)
    >>> fired
    [3299]
    """

    name = "accuracy-gap"
    kind = "concept"

    def __init__(self, window: int = 500, alpha: float = 1e-4, min_gap: float = 0.05, every: int = 50):
        if window < 10:
            raise ValueError(f"window must be at least 10, got {window!r}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        if not 0 <= min_gap < 1:
            raise ValueError(f"min_gap must be in [0, 1), got {min_gap!r}")
        if not 1 <= every <= window:
            raise ValueError(f"every must be between 1 and window, got {every!r}")
        self.window = window
        self.alpha = alpha
        self.min_gap = min_gap
        self.every = every
        self._reset()

    @classmethod
    def from_budget(cls, budget: AlarmBudget, window: int = 500, min_gap: float = 0.05,
                    every: int = 50) -> AccuracyGapDetector:
        return cls(window=window, alpha=budget.level(every=every), min_gap=min_gap, every=every)

    def _reset(self) -> None:
        self._pairs: deque[tuple[bool, bool]] = deque(maxlen=self.window)
        self._b = self._c = self._champion_right = self._online_right = 0
        self.latched = False
        super()._reset()

    def read(self, observation: Observation) -> tuple[bool, bool] | None:
        if observation.champion_right is None or observation.online_right is None:
            return None
        return observation.champion_right, observation.online_right

    def update(self, x: tuple[bool, bool]) -> Self:
        """`x` is (champion right, online learner right) on one labelled record."""
        champion_right, online_right = x
        self.n_seen += 1
        self._drift_detected = False
        champion, online = pair = (bool(champion_right), bool(online_right))
        pairs = self._pairs
        window = self.window
        dropped = pairs[0] if len(pairs) == window else None  # the oldest pair leaves the counts
        pairs.append(pair)
        if dropped != pair:  # (the same pair leaving and joining changes no count: the common case)
            if dropped is not None:
                dropped_champion, dropped_online = dropped
                self._champion_right -= dropped_champion
                self._online_right -= dropped_online
                if dropped_online and not dropped_champion:
                    self._b -= 1
                elif dropped_champion and not dropped_online:
                    self._c -= 1
            # the new pair joins them
            self._champion_right += champion
            self._online_right += online
            if online and not champion:
                self._b += 1
            elif champion and not online:
                self._c += 1
        if len(pairs) < window or self.n_seen % self.every:
            return self
        n, b, c = len(self._pairs), self._b, self._c
        gap = (b - c) / n
        if self.latched:
            self.latched = gap >= self.min_gap / 2
            return self
        if gap < self.min_gap or b + c == 0:
            return self
        p_value = float(stats.binom.sf(b - 1, b + c, 0.5))  # P(X >= b) when neither is better
        if p_value < self.alpha:
            self._drift_detected = True
            self._evidence = {
                "statistic": p_value,
                "threshold": self.alpha,
                "test": "mcnemar-exact-one-sided",
                "window": n,
                "champion_accuracy": self._champion_right / n,
                "online_accuracy": self._online_right / n,
                "gap": gap,
                "min_gap": self.min_gap,
                "online_only_right": b,
                "champion_only_right": c,
            }
            self._pairs.clear()
            self._b = self._c = self._champion_right = self._online_right = 0
            self.latched = True
        return self


class HoldoutGapDetector(DriftDetector[bool]):
    """The champion's live accuracy falls short of its holdout accuracy: a change between its
    training window and its first labels, which the error-rate ADWIN cannot see (its baseline
    is the champion's live errors, already of the new concept).

    `start(accuracy, rows)` arms it for a new champion (its holdout accuracy on `rows` rows).
    Over its first `horizon` labels it tests every `every` labels whether the live accuracy
    is below the holdout's by at least `min_gap`, one-sided two-sample z test on both
    proportions (the holdout is a sample too) at level `alpha`; it fires at most once per
    champion. After the horizon ADWIN has a live baseline and the accuracy-gap detector runs.

    >>> import random
    >>> rng = random.Random(3)
    >>> detector = HoldoutGapDetector(alpha=1e-5, min_gap=0.05)
    >>> detector.start(0.93, 600)
    >>> fired = [i for i in range(1000) if detector.update(rng.random() < 0.65).drift_detected]
    >>> fired
    [99]
    >>> detector.start(0.93, 600)
    >>> [i for i in range(1000) if detector.update(rng.random() < 0.92).drift_detected]
    []
    """

    name = "holdout-gap"
    kind = "concept"

    def __init__(self, alpha: float = 1e-5, min_gap: float = 0.05, every: int = 50, horizon: int = 1000):
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        if not 1 <= every <= horizon:
            raise ValueError(f"every must be between 1 and horizon, got {every!r}")
        self.alpha, self.min_gap, self.every, self.horizon = alpha, min_gap, every, horizon
        self.z = float(stats.norm.isf(alpha))
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self.holdout: tuple[float, int] | None = None
        self.right = 0

    def start(self, accuracy: float | None, rows: int | None) -> None:
        """A new champion serves, with this holdout accuracy on `rows` rows (None: unknown, silent)."""
        self._reset()
        if accuracy is not None and rows:
            self.holdout = (float(accuracy), int(rows))

    def read(self, observation: Observation) -> bool | None:
        return observation.champion_right

    def update(self, right: bool) -> Self:
        self._drift_detected = False
        if self.holdout is None:
            return self
        self.n_seen += 1
        self.right += bool(right)
        n = self.n_seen
        if n % self.every or n > self.horizon:
            return self
        expected, rows = self.holdout
        live = self.right / n
        gap = expected - live
        if gap < self.min_gap:
            return self
        spread = math.sqrt(expected * (1 - expected) / rows + max(live * (1 - live), 1 / n) / n)
        if gap > self.z * spread:
            self._drift_detected = True
            self._evidence = {"statistic": gap / spread, "threshold": self.z, "test": "two-proportion-z-one-sided",
                              "window": n, "live_accuracy": live, "holdout_accuracy": expected,
                              "holdout_rows": rows, "gap": gap, "min_gap": self.min_gap, "alpha": self.alpha}
            self.holdout = None  # once per champion
        return self


# A window's KS p-value costs ~0.5 ms through scipy when D is small (an exact series), and most
# windows are like the reference. With n D^2 below 2.2 the p-value is at least 0.0154 for every
# effective size n from 10 to 20,000 (scipy's `kstwo.sf`, checked on a grid), so under a
# per-feature threshold below 0.01 such a feature has not drifted: its p-value is computed only
# when the evidence is read, with the same function, so every reported number is unchanged.
_KS_SURE = 2.2
_KS_SURE_N = (10, 20_000)


def ks_statistic(reference: np.ndarray, values: np.ndarray) -> tuple[Any, Any]:
    """`scipy.stats.ks_2samp(reference, values, method="asymp")`'s two-sided statistic D and the
    effective size its p-value uses, by the same operations (`reference` sorted already); without
    scipy's argument handling, which costs more than the test on a window.

    >>> rng = np.random.default_rng(0)
    >>> a, b = np.sort(rng.normal(size=300)), rng.normal(0.2, 1, size=200)
    >>> d, n = ks_statistic(a, b)
    >>> result = stats.ks_2samp(a, b, method="asymp")
    >>> (d, ks_p_value(d, n)) == (result.statistic, result.pvalue)
    True
    """
    data2 = np.sort(values)
    n1, n2 = reference.shape[0], data2.shape[0]
    data_all = np.concatenate([reference, data2])
    cddiffs = (np.searchsorted(reference, data_all, side="right") / n1
               - np.searchsorted(data2, data_all, side="right") / n2)
    min_s = np.clip(-cddiffs[np.argmin(cddiffs)], 0, 1)
    max_s = cddiffs[np.argmax(cddiffs)]
    m, n = sorted([float(n1), float(n2)], reverse=True)
    return (min_s if min_s > max_s else max_s), np.round(m * n / (m + n))


def ks_p_value(statistic: Any, n: Any) -> float:
    """The two-sided asymptotic p-value of `ks_statistic`'s D, as `scipy.stats.ks_2samp` computes it."""
    return float(np.clip(stats.kstwo.sf(statistic, n), 0, 1))


def _columns(rows: list[dict[str, Any]], names: list[str]) -> dict[str, Sequence[Any]]:
    """Each named column of `rows`, None where a row lacks it: `[r.get(name) for r in rows]`
    per name, in one pass through the rows when every row has every name."""
    if len(names) > 1 and rows:
        try:
            return dict(zip(names, zip(*map(itemgetter(*names), rows), strict=True), strict=True))
        except KeyError:
            pass
    return {name: [r.get(name) for r in rows] for name in names}


def _matrix(rows: list[dict[str, Any]], names: list[str]) -> np.ndarray | None:
    """The named columns of `rows` as one float array (a row per row), or None when a row lacks a
    name or holds a value `np.asarray(..., dtype=float)` takes for no number (then each column of
    `_columns` goes through `_numbers`, which drops such values)."""
    if len(names) < 2 or not rows:
        return None
    try:
        matrix = np.array(list(map(itemgetter(*names), rows)), dtype=float)
    except (KeyError, TypeError, ValueError):
        return None
    return matrix if matrix.shape == (len(rows), len(names)) else None


def _numbers(values: Sequence[Any]) -> np.ndarray:
    """The finite numbers among `values` (None, NaN, infinities and non-numbers dropped)."""
    try:
        array = np.asarray(values, dtype=float)  # None becomes NaN
    except (TypeError, ValueError):  # a string or other object among the numbers
        array = np.asarray([v for v in values if _is_number(v)], dtype=float)
    finite: np.ndarray = array[np.isfinite(array)]
    return finite


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
