"""Backtest a drift policy on a historical table: prequential, in simulated time, no broker.

Each record is first scored (test), then learned from when its label arrives
`label_delay` records later (train). The same detectors (`drift.detectors`), the same
`DriftPolicy`, the same trainer and promotion decision (`training.evaluate.train_challenger`)
run here as in the live pipeline; only the clock differs. Pure: a DataFrame in, a
`BacktestResult` out. Reading files happens at the edge (`driftctl.app.backtest`).

Policies:

- ``drift``: the product. A champion trained on the first `warmup` labelled records;
  detectors watch its errors, the features and its predictions; the policy decides when
  to retrain and the challenger must beat the champion to be promoted. The online learner
  runs beside it and, as in the live scorer (`ServingSettings.serve`, default ``best``), each
  record is served by the champion, the online learner or their blend, whichever has the
  best recent labelled accuracy (`drift.arbiter.ServingRule`); the blend is a log-linear pool of the
  two learned from the labels (`ServingSettings.serve_blend`, `drift.arbiter.StackedBlend`).
- ``static``: the warmup champion serves forever.
- ``periodic:N``: every N labelled records a challenger is trained on the last N and
  judged against the champion with the same promotion decision.
- ``online``: the online River learner alone, learning every label as it arrives
  (``online:LEARNER`` names one of `training.recipes.ONLINE_LEARNERS`).

Every policy reports `served` (records after warmup served by each of champion, online,
blend) and `estimated_accuracy`, the label-free estimate (`drift.arbiter.AccuracyEstimate`:
the mean calibrated confidence of the served predictions) beside the realised `accuracy`.

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
[(3015, 'error-adwin'), (3099, 'accuracy-gap')]
>>> drift.incidents, drift.retrains, [p["index"] for p in drift.promotions], round(drift.accuracy, 2)
(1, 1, [4515], 0.99)
>>> drift.served, drift.estimated_accuracy
({'champion': 3218, 'online': 1494, 'blend': 288}, 0.9908)

The online learner (the default pool around a renewing tree, `training.online.Pooled`) recovered
within about a hundred labels of the change and served until the retrained champion was promoted;
both detector events are one incident. Because the online learner kept its accuracy, the quick
first try on the few rows since the change (`DriftSettings.first_train_gap`) was not needed: one
retrain on the full post-change window (`min_train_rows`), one promotion.

The policy as it was before issue 10: the champion alone served, no accuracy-gap detector:

>>> from driftctl.settings import DriftSettings, ServingSettings
>>> before = DriftSettings(accuracy_gap=False, first_train_rows=None, archive=False)
>>> old = run_backtest(frame, pd.Series(y), warmup=1000, settings=before, serving=ServingSettings(serve="champion"))
>>> [(e["index"], e["detector"]) for e in old.drift_events], round(old.accuracy, 2)
([(3015, 'error-adwin')], 0.7)
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from drift.arbiter import SOURCES, AccuracyEstimate, ServingRule
from drift.policy import Bootstrap
from drift.watch import DriftWatch, Step
from driftctl.messages import Action, Decision, DriftEvent
from driftctl.settings import DriftSettings, ServingSettings
from training.datasets import TooLittleData
from training.evaluate import train_challenger
from training.online import top
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
    drift_events: list[dict[str, Any]] = field(default_factory=list)
    incidents: int = 0  # drifts acted on: events that fire while one is acted on fold into it
    promotions: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    accuracy_curve: dict[str, Any] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    dropped_rows: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    records_per_second: float = 0.0
    served: dict[str, int] = field(default_factory=dict)  # records after warmup served by each: champion, online, blend
    estimated_accuracy: float | None = None  # label-free: mean calibrated confidence of the served predictions

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Champion:
    model: Any
    version: int
    classes: list[Any]
    features: list[str]
    window: tuple[int, int] = (0, 0)  # labelled positions it was trained on
    holdout: float | None = None  # its holdout accuracy when it was trained


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
        kept = column.astype(object).where(column.notna(), None)  # type: ignore[call-overload]  # None is valid
        text: pd.Series = kept.map(lambda v: v if v is None else str(v))
        return text
    return column.astype(float)


def id_like_columns(features: pd.DataFrame) -> list[str]:
    """Text columns whose values are nearly all distinct: probably ids, worthless as features."""
    n = len(features)
    return [c for c in features.columns
            if features[c].dtype == object and n >= 100 and features[c].nunique() > 0.5 * n]


def _records(features: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as River-style dicts; a missing value is an absent key."""
    if all(dtype == np.float64 for dtype in features.dtypes):  # numbers only: the same dicts, built faster
        columns = list(features.columns)
        rows = [dict(zip(columns, row, strict=True)) for row in features.to_numpy().tolist()]
    else:
        rows = cast("list[dict[str, Any]]", features.to_dict("records"))  # `prepare` names columns with str
    gappy = [c for c in features.columns if features[c].isna().any()]
    if gappy:
        for row in rows:
            for c in gappy:
                if _missing(row[c]):
                    del row[c]
    return rows


@contextlib.contextmanager
def _gc_frozen() -> Iterator[None]:
    """The objects that exist when a replay starts (the caller's: imported libraries, the table; hundreds
    of thousands) are left out of the garbage collector's passes until it ends: each full pass walked
    them all (~5% of a replay's time). Only when no one else froze objects (unfreezing would undo
    their freeze). What the replay computes does not depend on when garbage is collected."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


class Backtest:
    """One prequential replay. Build it, then `run()`; see `run_backtest`."""

    def __init__(self, features: pd.DataFrame, labels: pd.Series, *, policy: str | PolicySpec = "drift",
                 settings: DriftSettings | None = None, warmup: int | None = None, label_delay: int = 0,
                 ids: pd.Series | None = None, seed: int = 0, dropped_rows: int = 0,
                 serving: ServingSettings | None = None):
        self.settings = settings if settings is not None else DriftSettings()
        self.serving = serving if serving is not None else ServingSettings()
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
        with threadpool_limits(limits=1), _gc_frozen():
            return self._run(progress)

    def _run(self, progress: Callable[[int, int], None] | None) -> BacktestResult:
        started = time.perf_counter()
        n = len(self.features)
        self.records = _records(self.features)
        s = self.settings
        kind = self.spec.kind
        # The drift policy runs the live scorer's learner (ServingSettings.online_learner); alone, the
        # learner named by the policy, else the adaptive tree (a learner serving alone must adapt).
        learner = self.spec.learner or (self.serving.online_learner if kind == "drift" else "hoeffding-adaptive-tree")
        self.online = make_online_learner(self.seed, learner)
        self.champion: _Champion | None = None
        self.archive: list[_Champion] = []  # earlier champions (DriftSettings.archive)
        self.served: list[Any] = [None] * n
        self.champion_pred: list[Any] = [None] * n
        self.online_pred: list[Any] = [None] * n
        self.blend_pred: list[Any] = [None] * n
        self.blend_x: list[Any] = [None] * n  # what the serving rule's blend learns from with the label
        self.champion_version = [0] * n
        # Per record: who served (index in drift.arbiter.SOURCES), each source's confidence, and the
        # label-free estimate of the served prediction's accuracy (benchmarks read them per window).
        self.served_by: Any = [0] * n  # a numpy array (int8) once the replay ends
        self.confidence: list[list[float | None]] = [[None] * n, [None] * n, [None] * n]
        self.expected: list[float | None] = [None] * n
        self._cache_from = self._cache_to = 0
        self._cache: list[Any] = []
        self._confidence: list[float] = []
        self._proba: list[list[float]] | None = None  # the champion's probabilities (serve=best blends them)
        self._pair: Any = None  # the champion's two classes (a keys view) and StackedBlend.combine_pair
        self.events: list[DriftEvent] = []
        self.event_index: dict[str, int] = {}
        self.decisions: list[tuple[int, Decision]] = []
        self.promotions: list[dict[str, Any]] = []
        self.retrains = 0
        # DriftSettings.probation: (the champion a retrain replaced, the first record its successor scored)
        self._probation: tuple[_Champion, int] | None = None
        # The same engine as the live monitor; the other policies only replay a schedule.
        self.watch = DriftWatch(s) if kind == "drift" else None
        # Every champion policy bootstraps alike (with labels late, a provisional champion first).
        self.bootstrap = Bootstrap(warmup=self.warmup, early_rows=s.early_champion_rows)
        if self.watch is not None:
            self.watch.bootstrap = self.bootstrap  # the backtest's warmup may differ from the settings'
        self.estimate = self.watch.estimate if self.watch is not None else AccuracyEstimate(window=s.data_window)
        # The same serving rule as the live scorer: the drift policy serves the best of champion, online
        # learner and blend (serve=best), or the one `serve` names; the other policies serve their model.
        self.serve = self.serving.serve if kind == "drift" else "online" if kind == "online" else "champion"
        self.rule = ServingRule.from_settings(self.serving) if self.serve == "best" else None
        # The online learner runs beside the champion when it may serve or a detector compares them.
        self.online_always = kind == "online" or self.serve != "champion" or (
            self.watch is not None and self.watch.needs_online)
        self.labelled = 0
        self._renewed_at: list[int] = []  # where the online learner renewed itself (training.online.Renewing)
        self._needs_online = self.watch is not None and self.watch.needs_online
        self._pay = self.watch is not None and s.retrain_pay is not None
        every = max(1, min(1000, n // 100))
        watch = self.watch
        for t in range(n):
            x = self.records[t]
            self._serve(t, x)
            if watch is not None and self.champion is not None:  # the label-free detectors
                step = watch.observe_record(x, self.champion_pred[t], self._confidence[t - self._cache_from],
                                            index=t, labelled=self.labelled)
                if step is not None:
                    self._take(t, step)
            j = t - self.label_delay
            if j >= 0:
                self._on_label(t, j)
            if progress is not None and (t + 1) % every == 0:
                progress(t + 1, n)
        if progress is not None:
            progress(n, n)
        self.served_by = np.array(self.served_by, dtype=np.int8)
        seconds = time.perf_counter() - started
        return self._result(seconds, kind)

    def _serve(self, t: int, x: dict[str, Any]) -> None:
        proba = None
        confidence = self.confidence
        if self.online_always or self.champion is None:
            proba = self.online.predict_proba_one(x)
            if proba:
                online = top(proba)
                self.online_pred[t], confidence[1][t] = online, proba[online]
        champion = self.champion
        if champion is None or self.serve == "online":
            self.served[t] = self.online_pred[t]
            self.served_by[t] = 1
            self.expected[t] = self.estimate.served("online", proba[self.online_pred[t]]) if proba else None
            return
        if not self._cache_from <= t < self._cache_to:
            self._champion_predict(t)
        offset = t - self._cache_from
        self.champion_pred[t] = self.served[t] = self._cache[offset]
        self.champion_version[t] = champion.version
        served: Any = self._confidence[offset]  # a float (Any: no cast call per record)
        confidence[0][t] = served
        rule = self.rule
        if rule is None:
            self.expected[t] = self.estimate.served("champion", served)
            return
        assert self._proba is not None  # kept whenever a serving rule runs
        pair = self._pair
        if pair is not None and (not proba or proba.keys() <= pair[0]):  # `StackedBlend.combine`'s own test
            (c0, c1), (p0, p1) = champion.classes, self._proba[offset]
            chosen, blended, self.blend_x[t] = pair[1](c0, c1, p0, p1, proba)
        else:
            chosen, blended, self.blend_x[t] = rule.blend(
                dict(zip(champion.classes, self._proba[offset], strict=True)), proba or {})
        self.blend_pred[t] = chosen
        confidence[2][t] = blended
        source = rule.serving_index
        if source == 1 and proba:
            self.served[t], served = self.online_pred[t], confidence[1][t]
        elif source == 2:
            self.served[t], served = chosen, blended
        else:
            source = 0
        self.served_by[t] = source
        self.expected[t] = self.estimate.served(SOURCES[source], served)

    def _champion_predict(self, t: int) -> None:
        """The champion's predictions from record `t` on, computed in blocks (a model only changes
        between records, and then the block is dropped)."""
        assert self.champion is not None  # called only once a champion serves
        end = min(t + 5000, len(self.records))  # ~4 ms a call besides its rows: blocks of 5,000
        proba = self.champion.model.predict_proba(self.features.iloc[t:end])
        best = proba.argmax(axis=1)
        self._cache = [_plain(c) for c in np.asarray(self.champion.classes, dtype=object)[best]]
        self._confidence = proba[np.arange(len(best)), best].tolist()
        self._proba = proba.tolist() if self.rule is not None else None
        classes, stacked = self.champion.classes, self.rule.stacked if self.rule is not None else None
        # Two classes: the stacked blend's two-class path, called directly (no dict per record).
        self._pair = (dict.fromkeys(classes).keys(), stacked.combine_pair) if stacked and len(classes) == 2 else None
        self._cache_from, self._cache_to = t, end

    def _invalidate(self) -> None:
        self._cache, self._cache_from, self._cache_to = [], 0, 0

    def _on_label(self, t: int, j: int) -> None:
        """The label of record `j` arrives while record `t` is current."""
        y = self.labels[j]
        self.labelled += 1
        kind = self.spec.kind
        s = self.settings
        champion = self.champion
        # Whether the champion serving now scored record j, and who was right on it (once per label).
        current = champion is not None and self.champion_version[j] == champion.version
        champion_right = current and self.champion_pred[j] == y
        fresh = True  # record j was scored by the online learner serving now (no renewal since)
        if self.online_always or champion is None:
            renewed_at = self._renewed_at
            scored = bisect.bisect_left(renewed_at, j)  # the learner's renewals when record j was scored
            fresh = scored == len(renewed_at)
            online = self.online
            online.learn_one(self.records[j], y)
            renewals = getattr(online, "renewals", 0)
            rule = self.rule
            if rule is not None:  # the live scorer's call (serving.scorer.Scorer._learn_one)
                outcomes = ((champion_right, self.online_pred[j] == y, self.blend_pred[j] == y)
                            if current else None)
                # The learner's accuracy matters only on a renewal (`ServingRule.on_renewals`).
                accuracy = getattr(online, "accuracy", None) if renewals != rule.renewals else None
                features = self.blend_x[j]
                renewed = rule.on_label(outcomes, scored_renewals=scored, renewals=renewals, accuracy=accuracy,
                                        blend_features=features, label=y)
                if features is not None:  # rule.learn_blend(features, y)
                    rule.stacked.learn(features, y)  # type: ignore[union-attr]  # only a stacked blend gives any
                    self.blend_x[j] = None
            else:
                renewed = renewals != len(renewed_at)
            if renewed:
                renewed_at.append(t)
                if self.watch is not None:
                    self.watch.online_renewed()
                else:
                    self.estimate.reset("online")
                    self.estimate.reset("blend")
        # Calibration: the label of record j calibrates the confidence of every source that scored it
        # (the estimate of a source that starts serving is then calibrated already).
        learn = self.estimate.learn
        confidence = self.confidence
        if fresh:  # scored by the online learner before it renewed: says nothing of the new one
            online_confidence = confidence[1][j]
            if online_confidence is not None:
                learn("online", online_confidence, self.online_pred[j] == y)
        champion_confidence = confidence[0][j]
        if champion_confidence is not None and current:
            learn("champion", champion_confidence, champion_right)
            blended = confidence[2][j]
            if blended is not None and fresh:
                learn("blend", blended, self.blend_pred[j] == y)
        if kind == "online":
            if self.labelled >= self.warmup:
                self.decisions.append((t, Decision(action=Action.RETRAIN, window=(0, self.labelled),
                                                   reason=f"bootstrap: no champion yet; training on the first "
                                                          f"{self.labelled} labelled records")))
            return
        if not self.bootstrap.done:  # the first champion (with labels late, a provisional one first)
            boot = self.bootstrap.due(scored=t + 1, labelled=self.labelled)
            if boot is not None:
                self._bootstrap(t, boot)
                return
            if champion is None:
                return
        watch = self.watch
        if watch is not None:
            if self._pay:
                watch.served_outcome(j, self.served[j] == y, self.online_pred[j] == y, current)
            if current:
                online_right = self.online_pred[j] == y if self.online_always and self._needs_online else None
                step = watch.observe_label(champion_right, online_right, index=t, labelled=self.labelled,
                                           context={"label_of": j})
                if step is not None:
                    self._take(t, step)
            if self._probation is not None and self.labelled >= self._probation[1] + s.gap_window:
                self._judge_probation(t)
            probe = watch.archive_due(self.labelled)
            if probe is not None:
                self._judge_archive(t, probe)
            decision = watch.on_labelled(self.labelled)
            if decision is not None:
                self._act(t, decision)
        elif kind == "periodic":
            period = self.spec.period
            assert period is not None  # `parse_policy` gives every periodic policy its period
            since = self.labelled - self.warmup
            if since > 0 and since % period == 0:
                start = max(0, self.labelled - period)
                decision = Decision(action=Action.RETRAIN, window=(start, self.labelled),
                                    reason=f"periodic: every {period} labelled records")
                self._act(t, decision)

    def _bootstrap(self, t: int, decision: Decision) -> None:
        """A bootstrap fit (`drift.policy.Bootstrap`): promoted without a gate, as every champion policy's."""
        self.decisions.append((t, decision))
        assert decision.window is not None  # bootstrap decisions carry their window
        start, end = decision.window
        try:
            challenge = train_challenger(self.features.iloc[start:end], pd.Series(self.labels[start:end]), None,
                                         holdout_fraction=self.settings.holdout_fraction,
                                         margin=self.settings.promote_margin, random_state=self.seed,
                                         recipes=self.settings.candidate_recipes)
        except TooLittleData:
            if self.bootstrap.in_flight != "early":
                raise
            self.bootstrap.finished(promoted=False)  # the full v1 comes when its labels are in
            return
        if self.rule is not None and self.champion is None:
            # The rule has judged no source yet (no champion scored a labelled record, and the first one's
            # labels come `label_delay` records late): the online learner starts from its prequential
            # accuracy on the champion's holdout rows, the champion from its own, so the first choice between
            # them is informed. (Live, nothing is scored before the first champion: nothing to start from.)
            held = round((end - start) * self.settings.holdout_fraction)
            online = [self.online_pred[j] == self.labels[j] for j in range(end - held, end)
                      if self.online_pred[j] is not None]
            if online:
                self.rule.on_online(sum(online) / len(online))
        version = 1 if self.champion is None else self._next_version()
        self._promote(t, challenge.model, version=version, window=(start, end), archive=False,
                      accuracy=challenge.evaluation.challenger_accuracy, rows=challenge.evaluation.holdout_rows)
        self.bootstrap.finished(promoted=True)

    def _promote(self, t: int, model: Any, *, version: int, window: tuple[int, int],
                 accuracy: float | None = None, rows: int | None = None, archive: bool = True) -> None:
        """`model` serves from record `t`; `accuracy` on `rows` rows is what it was judged on. The
        champion it replaces is archived unless `archive` is False (a provisional one)."""
        if self.champion is not None and self.settings.archive and archive:
            self.archive = [*[a for a in self.archive if a.version != self.champion.version][-9:], self.champion]
        # Plain Python classes (not numpy scalars): the blend computes in Python floats, the same values.
        self.champion = _Champion(model, version, [_plain(c) for c in model.classes_], list(self.features.columns),
                                  window, accuracy)
        self._invalidate()
        if self.rule is not None:
            self.rule.on_champion(accuracy)  # a new champion starts from its holdout accuracy
        if self.watch is not None:
            # The reference is the newest rows the champion was trained on, as the registry stores it.
            start, end = window
            reference = self.records[max(start, end - self.settings.reference_rows):end]
            self.watch.on_champion({"version": version}, reference, trained_on=window, labelled=self.labelled,
                                   holdout=(accuracy, rows))
        else:
            self.estimate.reset("champion")

    def _judge_archive(self, t: int, probe: tuple[int, int]) -> None:
        """Archived champions against the serving one on the labelled records since the change:
        the best one comes back when `DriftWatch.archive_verdict` says so (no training, no retrain)."""
        if not self.archive:
            return
        start, end = probe
        frame, y = self.features.iloc[start:end], np.asarray(self.labels[start:end], dtype=object)

        def right(model: Any) -> list[bool]:
            outcomes: list[bool] = (np.asarray(model.predict(frame), dtype=object) == y).tolist()
            return outcomes

        assert self.champion is not None and self.watch is not None  # probes follow a drift the watch saw
        verdict = self.watch.archive_verdict(range(start, end), right(self.champion.model),
                                             [(a.version, right(a.model)) for a in self.archive],
                                             self.watch.probe_online, {a.version: a.holdout for a in self.archive})
        if verdict is None or not verdict["reinstate"]:
            return
        archived = next(a for a in self.archive if a.version == verdict["to"])
        self._probation = None
        best, champion = verdict["accuracy"], verdict["champion_accuracy"]
        reason = (f"reinstated: archived version {archived.version} {best:.4f} against champion {champion:.4f} "
                  f"on {end - start} labelled records since the change")
        self._reinstate(t, archived, reason, "archive", best, champion, rows=end - start)
        self.watch.reinstated(labelled=self.labelled, answers=verdict.get("answers", True))

    def _reinstate(self, t: int, earlier: _Champion, reason: str, decision_reason: str, accuracy: float,
                   champion: float, *, rows: int) -> None:
        """An earlier champion (archived, or the one a probation failed against) serves again, untrained."""
        self.promotions.append({"index": t, "version": earlier.version, "window": list(earlier.window),
                                "reason": reason, "decision_reason": decision_reason, "event_ids": [],
                                "challenger_accuracy": accuracy, "champion_accuracy": champion,
                                "training_seconds": 0.0, "reinstated": True})
        self.decisions.append((t, Decision(action=Action.HOLD, reason=reason)))
        self._promote(t, earlier.model, version=earlier.version, window=earlier.window, accuracy=accuracy,
                      rows=rows)
        assert self.champion is not None
        self.champion.holdout = earlier.holdout

    def _judge_probation(self, t: int) -> None:
        """`DriftSettings.probation`: the champion a retrain promoted against the one it replaced, on the
        labelled records the new one scored (`DriftWatch.probation_verdict`); the replaced one may return."""
        assert self._probation is not None and self.champion is not None and self.watch is not None
        replaced, start = self._probation
        self._probation = None
        version, labels = self.champion.version, self.labels
        rows = [i for i in range(start, self.labelled) if self.champion_version[i] == version]
        if len(rows) < (self.labelled - start) // 2:
            return
        old = np.asarray(replaced.model.predict(self.features.iloc[rows]), dtype=object)
        verdict = self.watch.probation_verdict([self.champion_pred[i] == labels[i] for i in rows],
                                               [bool(old[k] == labels[i]) for k, i in enumerate(rows)])
        if verdict is None or not verdict["reinstate"]:
            return
        accuracy, champion = verdict["accuracy"], verdict["champion_accuracy"]
        reason = (f"probation: version {replaced.version} {accuracy:.4f} against its successor {champion:.4f} on "
                  f"the {len(rows)} labelled records the successor scored; version {replaced.version} returns")
        self._reinstate(t, replaced, reason, "probation", accuracy, champion, rows=len(rows))
        self.watch.probation_failed(verdict, labelled=self.labelled)

    def _next_version(self) -> int:
        assert self.champion is not None
        return max([self.champion.version, *(a.version for a in self.archive)]) + 1

    def _take(self, t: int, step: Step) -> None:
        for event in step.events:
            self._emit(t, event)
        for decision in step.decisions:
            self._act(t, decision)

    def _emit(self, t: int, event: DriftEvent) -> DriftEvent:
        self.events.append(event)
        self.event_index[event.id] = t
        return event

    def _act(self, t: int, decision: Decision) -> None:
        self.decisions.append((t, decision))
        if decision.action is not Action.RETRAIN:
            return
        assert self.champion is not None and decision.window is not None  # retrains follow the bootstrap
        self.retrains += 1
        start, end = decision.window
        frame = self.features.iloc[start:end]
        target = pd.Series(self.labels[start:end])
        promoted, outcome, bought = False, {}, None
        try:
            challenge = train_challenger(frame, target, self.champion.model,
                                         holdout_fraction=self.settings.holdout_fraction,
                                         margin=self.settings.promote_margin, random_state=self.seed,
                                         tails=decision.candidates, z=decision.promote_z,
                                         judge_iterations=self.settings.candidate_judge_iterations,
                                         recipes=self.settings.candidate_recipes)
        except TooLittleData as exc:
            outcome = {"promoted": False, "reason": str(exc)}
        else:
            evaluation = challenge.evaluation
            promoted = evaluation.promote
            if self.watch is not None and evaluation.holdout_rows:
                bought = self.watch.bought(evaluation.challenger_accuracy, (end - evaluation.holdout_rows, end))
            outcome = {"promoted": promoted, "reason": evaluation.reason,
                       "challenger_accuracy": evaluation.challenger_accuracy,
                       "champion_accuracy": evaluation.champion_accuracy}
            if promoted:
                start = end - challenge.rows  # another candidate window may have won
                version = self._next_version()
                self.promotions.append({"index": t, "version": version, "window": [start, end],
                                        "reason": evaluation.reason, "decision_reason": decision.reason,
                                        "event_ids": list(decision.event_ids),
                                        "challenger_accuracy": evaluation.challenger_accuracy,
                                        "champion_accuracy": evaluation.champion_accuracy,
                                        "training_seconds": round(challenge.seconds, 4)})
                replaced = self.champion
                self._promote(t, challenge.model, version=version, window=(start, end),
                              accuracy=evaluation.challenger_accuracy, rows=evaluation.holdout_rows)
                if self.settings.probation:
                    self._probation = (replaced, t + 1)
        paid = "" if bought is None else f"; it bought {bought:+.4f} over the served predictions on its holdout"
        self.decisions.append((t, Decision(action=Action.HOLD, reason=f"retrain finished: {outcome['reason']}{paid}",
                                           event_ids=decision.event_ids, window=decision.window)))
        if self.watch is not None:
            self.watch.retrain_finished(promoted=promoted, labelled=self.labelled, bought=bought)

    # -- the result -----------------------------------------------------------------------
    def _result(self, seconds: float, kind: str) -> BacktestResult:
        n = len(self.records)
        right = np.fromiter((self.served[i] == self.labels[i] for i in range(n)), dtype=bool, count=n)
        self.right = right  # per record: was the served prediction right (for benchmarks and plots)
        tested = right[self.warmup:]
        accuracy = float(tested.mean()) if len(tested) else None
        by = np.bincount(self.served_by[self.warmup:], minlength=3)
        served = dict(zip(SOURCES, map(int, by), strict=True))
        expected = [e for e in self.expected[self.warmup:] if e is not None]
        estimated = round(float(sum(expected)) / len(expected), 4) if expected else None
        every = max(1, min(1000, n // 50))
        curve = [round(float(right[i:i + every].mean()), 4) for i in range(0, n, every)]
        events = []
        for event in self.events:
            index = self.event_index[event.id]
            item = {"index": index, "detector": event.detector, "kind": event.kind, "id": event.id,
                    "incident": event.incident,
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
            retrains=self.retrains, drift_events=events, promotions=self.promotions,
            incidents=len({e.incident for e in self.events if e.incident is not None}), decisions=decisions,
            accuracy_curve={"every": every, "values": curve}, features=list(self.features.columns),
            dropped_rows=self.dropped_rows, warnings=self.warnings, seconds=round(seconds, 3),
            records_per_second=round(n / seconds, 1) if seconds > 0 else 0.0, served=served,
            estimated_accuracy=estimated)


def run_backtest(features: pd.DataFrame, labels: pd.Series, *, policy: str | PolicySpec = "drift",
                 settings: DriftSettings | None = None, warmup: int | None = None, label_delay: int = 0,
                 ids: pd.Series | None = None, seed: int = 0,
                 progress: Callable[[int, int], None] | None = None,
                 serving: ServingSettings | None = None) -> BacktestResult:
    """Replay `features`/`labels` in order under `policy`; see the module docstring."""
    return Backtest(features, labels, policy=policy, settings=settings, warmup=warmup, label_delay=label_delay,
                    ids=ids, seed=seed, serving=serving).run(progress)
