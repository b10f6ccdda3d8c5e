"""Detectors over the champion's errors (labels needed) and over features (label-free)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
from river.drift import ADWIN
from scipy import stats


class ErrorRateDetector:
    """ADWIN over the champion's 0/1 error stream; fires only when the error rate rises.

    ADWIN also fires when a model gets *better*; that is no reason to retrain.

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
        self.n_seen = 0
        self.drift_detected = False
        self.change_at: int | None = None  # error-stream position where the new regime starts
        self.evidence: dict[str, Any] = {}

    def reset(self) -> None:
        self._reset()

    def update(self, error: bool) -> "ErrorRateDetector":
        x = 1.0 if error else 0.0
        width_before = self._adwin.width
        total_before = self._adwin.estimation * width_before
        self._adwin.update(x)
        self.n_seen += 1
        self.drift_detected = False
        if not self._adwin.drift_detected:
            return self
        width, recent = int(self._adwin.width), float(self._adwin.estimation)
        dropped = width_before + 1 - width
        older = (total_before + x - recent * width) / dropped if dropped > 0 else recent
        if recent > older:
            self.drift_detected = True
            self.change_at = self.n_seen - width
            self.evidence = {
                "statistic": recent,
                "threshold": older,
                "error_rate_before": older,
                "error_rate_after": recent,
                "window": width,
                "delta": self.delta,
            }
        return self


class DataDriftDetector:
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
        self._reset()

    def _reset(self) -> None:
        self._numeric: dict[str, np.ndarray] = {}
        self._categorical: dict[str, Counter] = {}
        for name in sorted({key for row in self.reference for key in row}):
            values = [row.get(name) for row in self.reference if row.get(name) is not None]
            if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                self._numeric[name] = np.sort(np.asarray(values, dtype=float))
            else:
                self._categorical[name] = Counter(str(v) for v in values)
        self._buffer: list[dict[str, Any]] = []
        self.n_seen = 0
        self.drift_detected = False
        self.evidence: dict[str, Any] = {}

    @property
    def features(self) -> list[str]:
        return [*self._numeric, *self._categorical]

    def update(self, x: dict[str, Any]) -> "DataDriftDetector":
        self._buffer.append(x)
        self.n_seen += 1
        self.drift_detected = False
        if len(self._buffer) >= self.window:
            self._test(self._buffer)
            self._buffer = []
        return self

    def _test(self, rows: list[dict[str, Any]]) -> None:
        threshold = self.alpha / max(len(self.features), 1)
        per_feature: dict[str, dict[str, Any]] = {}
        for name, ref in self._numeric.items():
            values = np.asarray([v for v in (r.get(name) for r in rows) if _is_number(v)], dtype=float)
            if len(values) < 2:
                continue
            result = stats.ks_2samp(ref, values)
            per_feature[name] = {"test": "ks", "statistic": float(result.statistic), "p_value": float(result.pvalue)}
        for name, ref_counts in self._categorical.items():
            counts = Counter(str(r[name]) for r in rows if r.get(name) is not None)
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
        self.drift_detected = bool(drifted)
        self.evidence = {
            "statistic": smallest,
            "threshold": threshold,
            "alpha": self.alpha,
            "correction": "bonferroni",
            "window": len(rows),
            "drifted_features": drifted,
            "features": per_feature,
        }


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
