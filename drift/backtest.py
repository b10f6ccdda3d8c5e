"""Backtest a drift policy on a historical table: prequential, in simulated time, no broker.

Each record is first scored (test), then learned from when its label arrives
`label_delay` records later (train). The same detectors (`drift.detectors`), the same
`DriftPolicy`, the same trainer and promotion decision (`training.evaluate.train_challenger`)
run here as in the live pipeline; only the clock differs. Pure: a DataFrame in, a
`BacktestResult` out. Reading files happens at the edge (`driftctl.app.backtest`).

Policies:

- ``drift``: the product. A champion trained on the first `warmup` labelled records;
  detectors watch its errors, the features and its predictions; the policy decides when
  to retrain and the challenger must beat the champion to be promoted.
- ``static``: the warmup champion serves forever.
- ``periodic:N``: every N labelled records a challenger is trained on the last N and
  judged against the champion with the same promotion decision.
- ``online``: the online River learner alone, learning every label as it arrives.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(6000, 2))
>>> y = np.where(np.arange(6000) < 3000, x[:, 0] > 0, x[:, 0] < 0).astype(int)
>>> frame = pd.DataFrame(x, columns=["a", "b"])
>>> static = run_backtest(frame, pd.Series(y), policy="static", warmup=1000)
>>> static.retrains, round(static.accuracy, 2)
(0, 0.4)
>>> drift = run_backtest(frame, pd.Series(y), policy="drift", warmup=1000)
>>> [(e["index"], e["detector"]) for e in drift.drift_events]
[(3015, 'error-adwin')]
>>> drift.retrains, [p["index"] for p in drift.promotions], round(drift.accuracy, 2)
(1, [4515], 0.7)

The accuracy-gap detector (off by default) runs the online learner beside the champion:

>>> from driftctl.settings import DriftSettings
>>> gap = run_backtest(frame, pd.Series(y), warmup=1000, settings=DriftSettings(accuracy_gap=True))
>>> [(e["index"], e["detector"]) for e in gap.drift_events]
[(3015, 'error-adwin'), (3149, 'accuracy-gap')]
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from drift.detectors import (
    AccuracyGapDetector,
    AlarmLevels,
    DataDriftDetector,
    ErrorRateDetector,
    PredictionDriftDetector,
)
from drift.events import Action, Decision, DriftEvent
from drift.policy import DecisionOptions, DriftPolicy
from driftctl.settings import DriftSettings
from training.datasets import TooLittleData
from training.evaluate import train_challenger
from training.recipes import make_online_learner

POLICIES = ("drift", "static", "periodic:N", "online", "online:LEARNER")


class BacktestError(Exception):
    """The table or the options cannot be backtested."""


@dataclass(frozen=True)
class PolicySpec:
    kind: str  # drift | static | periodic | online
    period: int | None = None
    learner: str | None = None  # online:LEARNER, one of training.recipes.ONLINE_LEARNERS

    def __str__(self) -> str:
        if self.kind == "periodic":
            return f"periodic:{self.period}"
        return f"online:{self.learner}" if self.learner else self.kind


def parse_policy(text: str) -> PolicySpec:
    """`drift`, `static`, `online` or `periodic:N` (N a positive number of records).

    >>> parse_policy("periodic:5000")
    PolicySpec(kind='periodic', period=5000, learner=None)
    >>> parse_policy("weekly")
    Traceback (most recent call last):
    ...
    ValueError: unknown policy 'weekly'; valid policies: drift, static, periodic:N, online, online:LEARNER
    >>> parse_policy("online:adaptive-random-forest-5")
    PolicySpec(kind='online', period=None, learner='adaptive-random-forest-5')
    """
    text = text.strip()
    if text in ("drift", "static", "online"):
        return PolicySpec(text)
    if text.startswith("periodic:"):
        value = text.split(":", 1)[1]
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"policy {text!r}: N in periodic:N must be a positive whole number of records")
        return PolicySpec("periodic", int(value))
    if text.startswith("online:"):
        from training.recipes import ONLINE_LEARNERS

        learner = text.split(":", 1)[1]
        if learner not in ONLINE_LEARNERS:
            raise ValueError(f"policy {text!r}: unknown online learner {learner!r}; valid learners: "
                             f"{', '.join(ONLINE_LEARNERS)}")
        return PolicySpec("online", learner=learner)
    raise ValueError(f"unknown policy {text!r}; valid policies: {', '.join(POLICIES)}")


@dataclass
class BacktestResult:
    rows: int
    warmup: int
    policy: str
    label_delay: int
    accuracy: float | None  # served predictions right, over records at index >= warmup
    retrains: int  # challengers trained after the warmup champion
    drift_events: list[dict] = field(default_factory=list)
    promotions: list[dict] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)
    accuracy_curve: dict = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    dropped_rows: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    records_per_second: float = 0.0
    served: dict = field(default_factory=dict)  # records after warmup served by each: champion, online, blend
    estimated_accuracy: float | None = None  # label-free: mean confidence of the served predictions


    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Champion:
    model: Any
    version: int
    classes: list
    features: list[str]
    window: tuple[int, int] = (0, 0)  # labelled positions it was trained on
    since: int = 0  # labelled position at which it started serving


def prepare(frame: pd.DataFrame, target: str, *, drop: Sequence[str] = (), time_col: str | None = None,
            id_col: str | None = None) -> tuple[pd.DataFrame, pd.Series, pd.Series | None, int]:
    """Split a raw table into features, labels and ids, in time order.

    Rows are sorted by `time_col` (stable) when given; rows without a label are dropped
    (their count is returned). Returns (features, labels, ids or None, dropped rows).
    """
    named = {"target": target, "time column": time_col, "id column": id_col}
    for what, column in named.items():
        if column is not None and column not in frame.columns:
            raise BacktestError(f"unknown {what} {column!r}; columns: {', '.join(map(str, frame.columns))}")
    for column in drop:
        if column not in frame.columns:
            raise BacktestError(f"cannot drop unknown column {column!r}; columns: {', '.join(map(str, frame.columns))}")
    if time_col is not None:
        order = frame[time_col]
        if not pd.api.types.is_numeric_dtype(order):
            parsed = pd.to_datetime(order, errors="coerce", utc=True)
            if parsed.notna().all():
                order = parsed
        frame = frame.assign(_order=order.to_numpy()).sort_values("_order", kind="stable").drop(columns="_order")
    labelled = frame[target].notna()
    dropped = int((~labelled).sum())
    frame = frame[labelled].reset_index(drop=True)
    ids = frame[id_col].astype(str) if id_col is not None else None
    excluded = {target, *drop, *(c for c in (time_col, id_col) if c is not None)}
    features = frame[[c for c in frame.columns if c not in excluded]]
    if features.shape[1] == 0:
        raise BacktestError("no feature columns left after removing the target, dropped, time and id columns")
    features = features.reindex(sorted(features.columns, key=str), axis=1)
    features = features.apply(_as_numbers_or_text)
    features.columns = [str(c) for c in features.columns]
    return features, frame[target], ids, dropped


def _as_numbers_or_text(column: pd.Series) -> pd.Series:
    """Numbers stay numbers; anything else (strings, mixed, booleans) becomes text, missing kept."""
    if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
        return column.astype(object).where(column.notna(), None).map(lambda v: v if v is None else str(v))
    return column.astype(float)


def id_like_columns(features: pd.DataFrame) -> list[str]:
    """Text columns whose values are nearly all distinct: probably ids, worthless as features."""
    n = len(features)
    return [c for c in features.columns
            if features[c].dtype == object and n >= 100 and features[c].nunique() > 0.5 * n]


def _records(features: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as River-style dicts; a missing value is an absent key."""
    rows = features.to_dict("records")
    gappy = [c for c in features.columns if features[c].isna().any()]
    if gappy:
        for row in rows:
            for c in gappy:
                if _missing(row[c]):
                    del row[c]
    return rows


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


class Backtest:
    """One prequential replay. Build it, then `run()`; see `run_backtest`."""

    def __init__(self, features: pd.DataFrame, labels: pd.Series, *, policy: str | PolicySpec = "drift",
                 settings: DriftSettings | None = None, warmup: int | None = None, label_delay: int = 0,
                 ids: pd.Series | None = None, seed: int = 0, dropped_rows: int = 0,
                 options: DecisionOptions | None = None):
        self.settings = settings if settings is not None else DriftSettings()
        self.options = options if options is not None else DecisionOptions()
        self.spec = policy if isinstance(policy, PolicySpec) else parse_policy(policy)
        self.warmup = self.settings.warmup if warmup is None else int(warmup)
        self.label_delay = int(label_delay)
        if len(features) != len(labels):
            raise BacktestError("features and labels differ in length")
        if self.label_delay < 0:
            raise BacktestError(f"label delay must be at least 0, got {label_delay}")
        if self.warmup < 2 * 50:
            raise BacktestError(f"warmup must be at least 100 records to train and judge a model, got {self.warmup}")
        if self.warmup + self.label_delay >= len(features):
            raise BacktestError(f"{len(features)} rows: nothing left to test after warmup {self.warmup} "
                                f"and label delay {self.label_delay}")
        self.features = features.reset_index(drop=True)
        self.labels = list(map(_plain, labels.tolist()))
        self.ids = None if ids is None else ids.reset_index(drop=True).tolist()
        self.seed = seed
        self.dropped_rows = dropped_rows
        self.warnings = [f"column {c!r} looks like an id ({self.features[c].nunique():,} distinct values in "
                         f"{len(self.features):,} rows); pass it as --id-col or --drop it"
                         for c in id_like_columns(self.features)]

    # -- the replay -----------------------------------------------------------------------
    def run(self, progress: Callable[[int, int], None] | None = None) -> BacktestResult:
        # One thread: OpenMP teams spinning on shared cores made small fits ten times slower.
        with threadpool_limits(limits=1):
            return self._run(progress)

    def _run(self, progress: Callable[[int, int], None] | None) -> BacktestResult:
        started = time.perf_counter()
        n = len(self.features)
        self.records = _records(self.features)
        s = self.settings
        kind = self.spec.kind
        o = self.options
        # The adaptive tree by default: a replay is not the hot path, and alone the learner must adapt.
        learner = self.spec.learner or (o.learner if kind == "drift" else "hoeffding-adaptive-tree")
        self.online = make_online_learner(self.seed, learner)
        self.serve_best = kind == "drift" and o.serve == "best"
        self.blend_pred: list = [None] * n
        self.served_by = np.zeros(n, dtype=np.int8)  # 0 champion, 1 online, 2 blend
        self.served_conf = np.full(n, np.nan)
        self.recent = [0.5, 0.5, 0.5]  # EW accuracy over labelled records: champion, online, blend
        self.serving = 0
        self.alpha = 1 - 0.5 ** (1 / o.serve_halflife)
        self.archive: list[_Champion] = []
        self.probe: tuple[int, int] | None = None  # archive: (change at, judge at) in labelled positions
        self.champion: _Champion | None = None
        self.served = [None] * n
        self.champion_pred: list = [None] * n
        self.online_pred: list = [None] * n
        self.champion_version = [0] * n
        self._cache_from = self._cache_to = 0
        self._cache: np.ndarray | None = None
        self.events: list[DriftEvent] = []
        self.event_index: dict[str, int] = {}
        self.decisions: list[tuple[int, Decision]] = []
        self.promotions: list[dict] = []
        self.retrains = 0
        capped = o.regrow or o.keep_old_on_covariate
        self.policy = DriftPolicy(min_train_rows=s.min_train_rows, data_persistence=s.data_persistence,
                                  cooldown=s.cooldown, regrow=o.regrow,
                                  max_train_rows=o.max_train_rows if capped else None)
        self.error_detector = ErrorRateDetector(delta=AlarmLevels.from_settings(s).error_delta)
        self.data_detector: DataDriftDetector | None = None
        self.prediction_detector: PredictionDriftDetector | None = None
        # The online learner runs beside the champion when the accuracy-gap detector needs it.
        self.gap_detector = (AccuracyGapDetector(window=s.gap_window, alpha=AlarmLevels.from_settings(s).gap_alpha, min_gap=s.gap_min,
                                                 every=min(s.gap_every, s.gap_window))
                             if kind == "drift" and s.accuracy_gap else None)
        self.online_always = kind == "online" or self.gap_detector is not None or self.serve_best
        self.labelled = 0
        step = max(1, min(1000, n // 100))
        for t in range(n):
            x = self.records[t]
            self._serve(t, x)
            if self.data_detector is not None:
                self._watch_window(t, x)
            j = t - self.label_delay
            if j >= 0:
                self._on_label(t, j)
            if progress is not None and (t + 1) % step == 0:
                progress(t + 1, n)
        if progress is not None:
            progress(n, n)
        seconds = time.perf_counter() - started
        return self._result(seconds, kind)

    def _serve(self, t: int, x: dict) -> None:
        proba = None
        if self.online_always or self.champion is None:
            proba = self.online.predict_proba_one(x)
            self.online_pred[t] = max(proba, key=proba.get) if proba else None
        if self.champion is None or self.spec.kind == "online":
            self.served[t] = self.online_pred[t]
            self.served_by[t] = 1
            if proba:
                self.served_conf[t] = max(proba.values())
            return
        self.champion_pred[t] = self.served[t] = self._champion_predict(t)
        self.champion_version[t] = self.champion.version
        offset = t - self._cache_from
        self.served_conf[t] = self._confidence[offset]
        if not self.serve_best:
            return
        # Serve the better model: blend the two probability vectors, serve the one whose recent
        # labelled accuracy leads (`self.serving`, switched in `_judge_served`).
        blend = dict.fromkeys(self.champion.classes, 0.0)
        for c, p in zip(self.champion.classes, self._proba[offset]):
            blend[c] = 0.5 * p
        for c, p in proba.items():
            blend[c] = blend.get(c, 0.0) + 0.5 * p
        self.blend_pred[t] = max(blend, key=blend.get)
        self.served_by[t] = self.serving
        if self.serving == 1:
            self.served[t], self.served_conf[t] = self.online_pred[t], max(proba.values()) if proba else np.nan
        elif self.serving == 2:
            self.served[t], self.served_conf[t] = self.blend_pred[t], blend[self.blend_pred[t]]

    def _judge_served(self, j: int, y) -> None:
        """The label of record `j` updates each candidate's recent accuracy; the served one changes
        only when another leads it by more than `serve_margin` (hysteresis)."""
        if self.champion_version[j] != self.champion.version:
            return
        a, recent = self.alpha, self.recent
        for k, pred in enumerate((self.champion_pred[j], self.online_pred[j], self.blend_pred[j])):
            recent[k] += a * ((pred == y) - recent[k])
        best = max(range(3), key=recent.__getitem__)
        if recent[best] > recent[self.serving] + self.options.serve_margin:
            self.serving = best

    def _champion_predict(self, t: int):
        """The champion's prediction for record `t`, computed in blocks (a model only changes
        between records, and then the block is dropped)."""
        if self._cache is None or not self._cache_from <= t < self._cache_to:
            end = min(t + 2000, len(self.records))
            proba = self.champion.model.predict_proba(self.features.iloc[t:end])
            best = proba.argmax(axis=1)
            self._proba = proba.tolist()
            self._cache = [_plain(c) for c in np.asarray(self.champion.classes, dtype=object)[best]]
            self._confidence = proba[np.arange(len(best)), best].tolist()
            self._cache_from, self._cache_to = t, end
        return self._cache[t - self._cache_from]

    def _invalidate(self) -> None:
        self._cache = None

    def _on_label(self, t: int, j: int) -> None:
        """The label of record `j` arrives while record `t` is current."""
        y = self.labels[j]
        self.labelled += 1
        kind = self.spec.kind
        if self.online_always or self.champion is None:
            self.online.learn_one(self.records[j], y)
        if self.champion is None:
            if self.labelled >= self.warmup:
                self._bootstrap(t)
            return
        if kind == "drift":
            if self.serve_best:
                self._judge_served(j, y)
            if self.probe is not None and self.labelled >= self.probe[1]:
                self._judge_archive(t)
            if self.champion_version[j] == self.champion.version:
                self._on_error(t, j, self.champion_pred[j] != y)
                if self.gap_detector is not None:
                    self._on_gap(t, j, self.champion_pred[j] == y, self.online_pred[j] == y)
            decision = self.policy.on_labelled(self.labelled)
            if decision is not None:
                self._act(t, decision)
        elif kind == "periodic":
            since = self.labelled - self.warmup
            if since > 0 and since % self.spec.period == 0:
                start = max(0, self.labelled - self.spec.period)
                decision = Decision(action=Action.RETRAIN, window=(start, self.labelled),
                                    reason=f"periodic: every {self.spec.period} labelled records")
                self._act(t, decision)

    def _bootstrap(self, t: int) -> None:
        decision = Decision(action=Action.RETRAIN, window=(0, self.labelled),
                            reason=f"bootstrap: no champion yet; training on the first {self.labelled} labelled records")
        self.decisions.append((t, decision))
        if self.spec.kind == "online":
            return
        frame = self.features.iloc[: self.labelled]
        challenge = train_challenger(frame, pd.Series(self.labels[: self.labelled]), None,
                                     holdout_fraction=self.settings.holdout_fraction,
                                     margin=self.settings.promote_margin, random_state=self.seed)
        self._promote(t, challenge.model, version=1, window=(0, self.labelled))

    def _promote(self, t: int, model, *, version: int, window: tuple[int, int], accuracy: float | None = None) -> None:
        if self.champion is not None and self.options.archive:
            self.archive = [a for a in self.archive if a.version != self.champion.version][-9:] + [self.champion]
        self.champion = _Champion(model, version, list(model.classes_), list(self.features.columns), window,
                                  self.labelled)
        self.probe = None
        if self.serve_best:
            # A new champion starts from its holdout accuracy; the blend from the mean of the two.
            if accuracy is not None:
                self.recent[0] = accuracy
            self.recent[2] = (self.recent[0] + self.recent[1]) / 2
            self.serving = max(range(3), key=self.recent.__getitem__)
        self._invalidate()
        self.error_detector.reset()
        if self.gap_detector is not None:
            self.gap_detector.reset()
        if self.spec.kind == "drift":
            # The reference is the newest rows the champion was trained on, as the registry stores it.
            start, end = window
            reference = self.records[max(start, end - self.settings.reference_rows):end]
            self.data_detector = DataDriftDetector(reference or [{}], window=self.settings.data_window,
                                                   alpha=AlarmLevels.from_settings(self.settings).data_alpha)
            if self.settings.prediction_drift:
                # Same window and budget share as the data detector; both end their windows together.
                self.prediction_detector = PredictionDriftDetector(window=self.settings.data_window,
                                                                   alpha=AlarmLevels.from_settings(self.settings).data_alpha)

    def _watch_window(self, t: int, x: dict) -> None:
        """Label-free detectors: features and served predictions, window by window (the policy
        keeps a persistence streak per detector)."""
        detectors = [self.data_detector.update(x)]
        if self.prediction_detector is not None and self.champion_version[t]:
            offset = t - self._cache_from
            detectors.append(self.prediction_detector.update(self.champion_pred[t],
                                                             self._confidence[offset]))
        if self.data_detector.n_seen % self.data_detector.window:
            return
        for detector in detectors:
            event = None
            if detector.drift_detected:
                evidence = detector.evidence
                event = self._emit(t, DriftEvent(detector=detector.name, kind=detector.kind, index=t,
                                                  statistic=evidence["statistic"], threshold=evidence["threshold"],
                                                  window={"records": evidence["window"], "end_index": t},
                                                  evidence=evidence, model=self._model_ref()))
            keep_from = self.champion.window[0] if self.options.keep_old_on_covariate else None
            decision = self.policy.on_data_window(event, labelled=self.labelled, detector=detector.name,
                                                  keep_from=keep_from)
            if decision is not None:
                self._act(t, decision)

    def _on_gap(self, t: int, j: int, champion_right: bool, online_right: bool) -> None:
        detector = self.gap_detector.update(champion_right, online_right)
        if not detector.drift_detected:
            return
        evidence = detector.evidence
        event = self._emit(t, DriftEvent(detector=detector.name, kind=detector.kind, index=t,
                                          statistic=evidence["statistic"], threshold=evidence["threshold"],
                                          window={"labelled": evidence["window"], "label_of": j,
                                                  "change_at_labelled": self.labelled},
                                          evidence=evidence, model=self._model_ref()))
        self._act(t, self.policy.on_event(event, change_at=self.labelled, labelled=self.labelled))

    def _on_error(self, t: int, j: int, error: bool) -> None:
        detector = self.error_detector
        detector.update(error)
        if not detector.drift_detected:
            return
        evidence = detector.evidence
        change_at = self.labelled
        if self.options.change_from_detector:  # ADWIN's cut: the rows after it are the new regime
            change_at = max(self.champion.since, self.labelled - int(evidence["window"]))
        event = self._emit(t, DriftEvent(detector=detector.name, kind="concept", index=t,
                                          statistic=evidence["statistic"], threshold=evidence["threshold"],
                                          window={"errors": evidence["window"], "label_of": j,
                                                  "change_at_labelled": change_at},
                                          evidence=evidence, model=self._model_ref()))
        if self.options.archive and self.archive:
            self.probe = (change_at, change_at + self.options.archive_probe)
        self._act(t, self.policy.on_event(event, change_at=change_at, labelled=self.labelled))

    def _next_version(self) -> int:
        return max([self.champion.version, *(a.version for a in self.archive)]) + 1

    def _judge_archive(self, t: int) -> None:
        """Archived champions against the serving one on the labelled records since the change:
        the best one comes back when it leads by `archive_margin` (no training, no retrain)."""
        start, end = self.probe[0], self.labelled
        self.probe = None
        if not self.archive:
            return
        frame, y = self.features.iloc[start:end], np.asarray(self.labels[start:end], dtype=object)

        def accuracy(model) -> float:
            return float((np.asarray(model.predict(frame), dtype=object) == y).mean())

        champion = accuracy(self.champion.model)
        scores = [(accuracy(a.model), a) for a in self.archive]
        best, archived = max(scores, key=lambda pair: pair[0])
        if best <= champion + self.options.archive_margin:
            return
        self.promotions.append({"index": t, "version": archived.version, "window": list(archived.window),
                                "reason": (f"reinstated: archived version {archived.version} {best:.4f} against "
                                           f"champion {champion:.4f} on {end - start} labelled records since the change"),
                                "decision_reason": "archive", "event_ids": [], "challenger_accuracy": best,
                                "champion_accuracy": champion, "training_seconds": 0.0, "reinstated": True})
        self.decisions.append((t, Decision(action=Action.HOLD, reason=self.promotions[-1]["reason"])))
        self._promote(t, archived.model, version=archived.version, window=archived.window, accuracy=best)
        self.policy.on_reinstated(labelled=self.labelled)

    def _model_ref(self) -> dict:
        return {"version": self.champion.version} if self.champion else {}

    def _emit(self, t: int, event: DriftEvent) -> DriftEvent:
        self.events.append(event)
        self.event_index[event.id] = t
        return event

    def _act(self, t: int, decision: Decision) -> None:
        self.decisions.append((t, decision))
        if decision.action is not Action.RETRAIN:
            return
        self.retrains += 1
        start, end = decision.window
        frame = self.features.iloc[start:end]
        target = pd.Series(self.labels[start:end])
        promoted, outcome = False, {}
        try:
            challenge = train_challenger(frame, target, self.champion.model,
                                         holdout_fraction=self.settings.holdout_fraction,
                                         margin=self.settings.promote_margin, random_state=self.seed)
        except TooLittleData as exc:
            outcome = {"promoted": False, "reason": str(exc)}
        else:
            evaluation = challenge.evaluation
            promoted = evaluation.promote
            outcome = {"promoted": promoted, "reason": evaluation.reason,
                       "challenger_accuracy": evaluation.challenger_accuracy,
                       "champion_accuracy": evaluation.champion_accuracy}
            if promoted:
                version = self._next_version()
                self.promotions.append({"index": t, "version": version, "window": [start, end],
                                        "reason": evaluation.reason, "decision_reason": decision.reason,
                                        "event_ids": list(decision.event_ids),
                                        "challenger_accuracy": evaluation.challenger_accuracy,
                                        "champion_accuracy": evaluation.champion_accuracy,
                                        "training_seconds": round(challenge.seconds, 4)})
                self._promote(t, challenge.model, version=version, window=(start, end),
                              accuracy=evaluation.challenger_accuracy)
        self.decisions.append((t, Decision(action=Action.HOLD, reason=f"retrain finished: {outcome['reason']}",
                                           event_ids=decision.event_ids, window=decision.window)))
        self.policy.on_retrain_finished(promoted=promoted, labelled=self.labelled)

    # -- the result -----------------------------------------------------------------------
    def _result(self, seconds: float, kind: str) -> BacktestResult:
        n = len(self.records)
        right = np.fromiter((self.served[i] == self.labels[i] for i in range(n)), dtype=bool, count=n)
        self.right = right  # per record: was the served prediction right (for benchmarks and plots)
        tested = right[self.warmup:]
        accuracy = float(tested.mean()) if len(tested) else None
        by = np.bincount(self.served_by[self.warmup:], minlength=3)
        served = {"champion": int(by[0]), "online": int(by[1]), "blend": int(by[2])}
        confidence = self.served_conf[self.warmup:]
        confidence = confidence[~np.isnan(confidence)]
        estimated = round(float(confidence.mean()), 4) if len(confidence) else None
        every = max(1, min(1000, n // 50))
        curve = [round(float(right[i:i + every].mean()), 4) for i in range(0, n, every)]
        events = []
        for event in self.events:
            index = self.event_index[event.id]
            item = {"index": index, "detector": event.detector, "kind": event.kind, "id": event.id,
                    "statistic": event.statistic, "threshold": event.threshold,
                    "model_version": event.model.get("version")}
            if self.ids is not None:
                item["record_id"] = self.ids[index]
            if event.kind in ("data", "prediction"):
                item["drifted_features"] = event.evidence.get("drifted_features", [])
            events.append(item)
        decisions = [{"index": t, "action": d.action.value, "reason": d.reason,
                      "window": list(d.window) if d.window else None, "event_ids": list(d.event_ids)}
                     for t, d in self.decisions if d.action is not Action.HOLD or d.reason.startswith("retrain")]
        return BacktestResult(
            rows=n, warmup=self.warmup, policy=str(self.spec), label_delay=self.label_delay, accuracy=accuracy,
            retrains=self.retrains, drift_events=events, promotions=self.promotions, decisions=decisions,
            accuracy_curve={"every": every, "values": curve}, features=list(self.features.columns),
            dropped_rows=self.dropped_rows, warnings=self.warnings, seconds=round(seconds, 3),
            records_per_second=round(n / seconds, 1) if seconds > 0 else 0.0, served=served,
            estimated_accuracy=estimated)


def run_backtest(features: pd.DataFrame, labels: pd.Series, *, policy: str | PolicySpec = "drift", settings=None,
                 warmup: int | None = None, label_delay: int = 0, ids: pd.Series | None = None, seed: int = 0,
                 progress: Callable[[int, int], None] | None = None,
                 options: DecisionOptions | None = None) -> BacktestResult:
    """Replay `features`/`labels` in order under `policy`; see the module docstring."""
    return Backtest(features, labels, policy=policy, settings=settings, warmup=warmup, label_delay=label_delay,
                    ids=ids, seed=seed, options=options).run(progress)
