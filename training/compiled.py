"""The champion pipeline evaluated on dict rows without pandas: what the scorer calls per batch.

`Pipeline([("features", ColumnTransformer(...)), ("model", estimator)])` from
`training.recipes` spends most of a small batch's time building a DataFrame and running the
column transformer over it. `compile_pipeline` reads the fitted imputers' statistics and the
one-hot encoders' categories once and builds the estimator's input array straight from the
rows; the fitted estimator then predicts on it as it would inside the pipeline.

It is only ever used after `verify` has found its output equal to the pipeline's on probe
rows (every category, missing values, extreme numbers, the model's reference rows). A
pipeline of another shape, or one whose output differs, is not compiled: the caller keeps
the sklearn pipeline.

>>> import pandas as pd
>>> from training.datasets import FeatureSchema
>>> from training.recipes import make_classifier
>>> frame = pd.DataFrame({"t": [float(i % 7) for i in range(60)], "c": ["a", "b", "c"] * 20})
>>> model = make_classifier().fit(frame, [i % 7 > 3 for i in range(60)])
>>> compiled = compile_verified(model, FeatureSchema.from_frame(frame))
>>> compiled.predict_proba([{"t": 6.0, "c": "a"}, {"t": None, "c": None}]).shape
(2, 2)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from training.datasets import FeatureSchema

log = logging.getLogger(__name__)


class NotCompilable(Exception):
    """The pipeline is not of the shape `compile_pipeline` knows; the sklearn pipeline serves."""


class CompiledPipeline:
    """A fitted pipeline's preprocessing as arrays and dicts, and its final estimator."""

    def __init__(self, numeric: list[str], medians: np.ndarray,
                 categorical: list[tuple[str, dict[str, int], int, int]], width: int, estimator: Any):
        self.numeric = numeric  # columns imputed by median, in output order
        self.medians = medians
        # (column, category -> output column, column of an unseen category, of a missing value); -1: none
        self.categorical = categorical
        self.width = width
        self.estimator = estimator
        self.classes_ = estimator.classes_
        # A histogram gradient boosting model's trees called directly (None: its predict_proba serves).
        self.trees = _trees_of(estimator, width)

    def transform(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        n, numeric = len(rows), self.numeric
        out = np.zeros((n, self.width), dtype=np.float64)
        if numeric:
            # None becomes NaN in a float array; NaN then takes the median, as SimpleImputer does.
            values = np.array([[row[name] for name in numeric] for row in rows], dtype=np.float64)
            missing = np.isnan(values)
            if missing.any():
                values = np.where(missing, self.medians, values)
            out[:, :len(numeric)] = values
        if self.categorical:
            index = np.arange(n)
            for name, columns, unseen, if_missing in self.categorical:
                hot = np.array([if_missing if (v := row[name]) is None else columns.get(v, unseen) for row in rows],
                               dtype=np.intp)
                known = hot >= 0
                if known.all():
                    out[index, hot] = 1.0
                else:
                    out[index[known], hot[known]] = 1.0
        return out

    def predict_proba(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        if self.trees is not None:
            return self.trees.predict_proba(self.transform(rows))
        return np.asarray(self.estimator.predict_proba(self.transform(rows)))


class _Trees:
    """`HistGradientBoostingClassifier.predict_proba` on an array this module built, without the
    per-call checks (validation, fitted check, the categories' bitsets: ~1.5 us a record at
    500 rows, a fifth of the call): the same trees, summed in the same order, so the same floats."""

    def __init__(self, estimator: Any) -> None:
        self.predictors = estimator._predictors
        self.baseline = estimator._baseline_prediction
        self.k = estimator.n_trees_per_iteration_
        self.loss = estimator._loss
        self.known, self.index = estimator._bin_mapper.make_known_categories_bitsets()

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

        # As `BaseHistGradientBoosting._raw_predict` and `_predict_iterations` do it.
        raw = np.zeros((x.shape[0], self.k), dtype=self.baseline.dtype, order="F")
        raw += self.baseline
        threads = _openmp_effective_n_threads(None)  # honours threadpool_limits, as sklearn's call does
        for trees in self.predictors:
            for k, tree in enumerate(trees):
                raw[:, k] += tree.predict(x, known_cat_bitsets=self.known, f_idx_map=self.index, n_threads=threads)
        return np.asarray(self.loss.predict_proba(raw))


def _trees_of(estimator: Any, width: int) -> _Trees | None:
    """The direct path for a fitted HistGradientBoostingClassifier that takes the compiled array as
    it is (no categorical columns of its own, no preprocessor); None for anything else. `verify`
    still compares the whole compiled pipeline with the sklearn one before it serves."""
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier

        if (type(estimator) is not HistGradientBoostingClassifier or getattr(estimator, "_in_fit", False)
                or getattr(estimator, "_preprocessor", None) is not None
                or getattr(estimator, "is_categorical_", None) is not None
                or getattr(estimator, "n_features_in_", None) != width):
            return None
        return _Trees(estimator)
    except Exception as exc:  # a scikit-learn whose private attributes moved: its own predict_proba serves
        log.info("champion's trees not called directly: %s: %s", type(exc).__name__, exc)
        return None


def compile_pipeline(model: Any) -> CompiledPipeline:
    """Read the recipe's fitted preprocessing; `NotCompilable` for any other shape."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        raise NotCompilable("not a two-step pipeline")
    features, estimator = model.steps[0][1], model.steps[1][1]
    if not isinstance(features, ColumnTransformer) or not hasattr(estimator, "predict_proba"):
        raise NotCompilable("not a column transformer and a classifier")
    if getattr(features, "sparse_output_", False):
        raise NotCompilable("sparse output")
    numeric: list[str] = []
    medians: list[float] = []
    categorical: list[tuple[str, dict[str, int], int, int]] = []
    width = 0
    parts = [(name, step, list(columns)) for name, step, columns in features.transformers_
             if not (isinstance(step, str) and step == "drop") and len(columns)]
    for name, step, columns in parts:
        if not all(isinstance(c, str) for c in columns):
            raise NotCompilable(f"{name}: columns chosen by position")
        if isinstance(step, SimpleImputer) and step.strategy in ("median", "mean") and not categorical:
            stats = np.asarray(step.statistics_, dtype=np.float64)
            if len(stats) != len(columns) or np.isnan(stats).any() or step.add_indicator:
                raise NotCompilable(f"{name}: an imputer that drops or adds columns")
            numeric.extend(columns)
            medians.extend(stats.tolist())
            width += len(columns)
        elif isinstance(step, Pipeline) and len(step.steps) == 2:
            imputer, encoder = step.steps[0][1], step.steps[1][1]
            if not (isinstance(imputer, SimpleImputer) and imputer.strategy in ("most_frequent", "constant")
                    and not imputer.add_indicator and isinstance(encoder, OneHotEncoder)
                    and encoder.drop_idx_ is None and not encoder.sparse_output):
                raise NotCompilable(f"{name}: not an imputer and a dense one-hot encoder")
            fills = list(imputer.statistics_)
            if len(fills) != len(columns) or len(encoder.categories_) != len(columns):
                raise NotCompilable(f"{name}: an imputer that drops columns")
            infrequent = getattr(encoder, "infrequent_categories_", [None] * len(columns))
            for column, categories, rare in zip(columns, encoder.categories_, infrequent, strict=True):
                rare_set = set() if rare is None else {str(c) for c in rare}
                frequent = [str(c) for c in categories if str(c) not in rare_set]
                mapping = {c: width + i for i, c in enumerate(frequent)}
                width += len(frequent)
                if rare_set:  # infrequent ones share the feature's last column; so do unseen ones
                    mapping.update({c: width for c in rare_set})
                    unknown = width
                    width += 1
                elif encoder.handle_unknown in ("ignore", "infrequent_if_exist"):
                    unknown = -1
                else:
                    raise NotCompilable(f"{name}: unseen categories raise")
                # The imputer looks for NaN, and None in a column of text is not NaN to it: a missing
                # category reaches the encoder as an unknown one (`verify` holds us to that).
                categorical.append((column, mapping, unknown, unknown))
        else:
            raise NotCompilable(f"{name}: {type(step).__name__} is not compiled")
    return CompiledPipeline(numeric, np.array(medians, dtype=np.float64), categorical, width, estimator)


def probe_rows(schema: FeatureSchema, n: int = 64, seed: int = 0) -> list[dict[str, Any]]:
    """Rows that exercise every branch: each category, missing values, extreme and ordinary numbers."""
    rng = np.random.default_rng(seed)
    extremes = [0.0, -1.0, 1.0, -1e12, 1e12, 1e-300, None]
    rows = []
    for i in range(n):
        row: dict[str, Any] = {}
        for name in schema.numeric:
            row[name] = extremes[i % len(extremes)] if i % 3 == 0 else float(rng.normal(0, 10 ** (i % 5)))
        for k, (name, categories) in enumerate(schema.categorical.items()):
            options = [*categories, None]
            row[name] = options[(i + k) % len(options)]
        rows.append(row)
    return rows


def verify(compiled: CompiledPipeline, model: Any, schema: FeatureSchema,
           rows: Sequence[dict[str, Any]] = ()) -> str | None:
    """Why the compiled pipeline may not serve (None: its output equals the pipeline's)."""
    probes = [*probe_rows(schema), *rows]
    names = schema.names
    try:
        expected = np.asarray(model.predict_proba(pd.DataFrame.from_records(probes, columns=names)))
        got = compiled.predict_proba(probes)
    except Exception as exc:  # a probe either cannot take: not equivalent
        return f"{type(exc).__name__}: {exc}"
    if got.shape != expected.shape:
        return f"shape {got.shape} instead of {expected.shape}"
    if list(compiled.classes_) != list(model.classes_):
        return "classes differ"
    worst = float(np.max(np.abs(got - expected))) if got.size else 0.0
    if not math.isfinite(worst) or worst > 1e-9:
        return f"probabilities differ by up to {worst:.3g}"
    return None


def compile_verified(model: Any, schema: FeatureSchema,
                     rows: Sequence[dict[str, Any]] = ()) -> CompiledPipeline | None:
    """The compiled pipeline when it is equivalent on the probes, else None (the pipeline serves)."""
    try:
        compiled = compile_pipeline(model)
    except NotCompilable as exc:
        log.info("champion not compiled: %s", exc)
        return None
    except Exception as exc:  # an unexpected fitted attribute: never a reason not to serve
        log.warning("champion not compiled: %s: %s", type(exc).__name__, exc)
        return None
    reason = verify(compiled, model, schema, rows)
    if reason is not None:
        log.warning("champion not compiled: its output differs from the pipeline's: %s", reason)
        return None
    return compiled
