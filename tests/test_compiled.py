"""The compiled champion: equal to the sklearn pipeline it was compiled from, or not used."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from drift.arbiter import blend
from serving.scorer import _blend_winner
from training.compiled import NotCompilable, compile_pipeline, compile_verified, probe_rows, verify
from training.datasets import FeatureSchema, to_frame
from training.recipes import make_classifier


def frame_and_labels(n=600, seed=0, categories=5):
    rng = np.random.default_rng(seed)
    rows = [{"t": float(rng.normal(20, 5)), "h": float(rng.integers(0, 100)),
             "fw": f"v{int(rng.integers(0, categories))}", "site": ["a", "b", "c"][i % 3]} for i in range(n)]
    frame = to_frame(rows)
    labels = pd.Series([(r["t"] > 20) ^ (r["fw"] in ("v1", "v3")) for r in rows])
    return frame, labels


@pytest.mark.parametrize("categories", [5, 100])  # 100 > MAX_CATEGORIES: the rarest share one column
def test_compiled_equals_the_pipeline_on_every_kind_of_row(categories):
    frame, labels = frame_and_labels(categories=categories)
    model = make_classifier().fit(frame, labels)
    schema = FeatureSchema.from_frame(frame)
    compiled = compile_verified(model, schema)
    assert compiled is not None
    rows = [*frame.to_dict("records"), *probe_rows(schema, n=200, seed=3),
            {"t": None, "h": None, "fw": None, "site": None}, {"t": 1.0, "h": 2.0, "fw": "never-seen", "site": "a"}]
    expected = model.predict_proba(pd.DataFrame.from_records(rows, columns=schema.names))
    np.testing.assert_array_equal(compiled.predict_proba(rows), expected)
    assert list(compiled.classes_) == list(model.classes_)


def test_another_shape_is_not_compiled_and_the_pipeline_serves():
    frame, labels = frame_and_labels()
    numeric = frame[["h", "t"]]
    model = make_pipeline(LogisticRegression()).fit(numeric, labels)
    with pytest.raises(NotCompilable):
        compile_pipeline(model)
    assert compile_verified(model, FeatureSchema.from_frame(numeric)) is None


def test_a_compiled_pipeline_that_differs_is_refused():
    frame, labels = frame_and_labels()
    model = make_classifier().fit(frame, labels)
    schema = FeatureSchema.from_frame(frame)
    compiled = compile_pipeline(model)
    compiled.medians = compiled.medians + 1.0  # what a wrong reading of the imputer would do
    assert "differ" in verify(compiled, model, schema)


@pytest.mark.parametrize("online", [{}, {0: 0.3, 1: 0.7}, {1: 0.5, 0: 0.5}, {2: 0.9, 0: 0.1}, {0: 0.6}])
def test_the_blend_winner_is_the_one_blend_puts_first(online):
    classes, champion = [0, 1], [0.4, 0.6]
    mixed = blend(dict(zip(classes, champion, strict=True)), online)
    winner = max(mixed, key=mixed.__getitem__)
    assert _blend_winner(classes, champion, online) == (winner, mixed[winner])


@pytest.mark.parametrize("classes", [2, 3])
def test_the_trees_called_directly_give_the_estimators_own_probabilities(classes):
    """The compiled champion calls the gradient boosting's trees itself (no per-call checks): the
    same floats as the estimator's predict_proba and the pipeline's, binary and multiclass."""
    frame, labels = frame_and_labels(n=900, seed=4)
    if classes == 3:
        labels = pd.Series([int(t > 22) + int(t > 18) for t in frame["t"]])
    model = make_classifier().fit(frame, labels)
    schema = FeatureSchema.from_frame(frame)
    compiled = compile_verified(model, schema)
    assert compiled is not None and compiled.trees is not None
    rows = [*frame.to_dict("records"), *probe_rows(schema, n=200, seed=9),
            {"t": None, "h": None, "fw": None, "site": None}]
    x = compiled.transform(rows)
    direct = compiled.predict_proba(rows)
    assert direct.shape == (len(rows), classes)
    np.testing.assert_array_equal(direct, compiled.estimator.predict_proba(x))
    np.testing.assert_array_equal(direct, model.predict_proba(pd.DataFrame.from_records(rows, columns=schema.names)))


def test_another_estimator_after_the_compiled_features_keeps_its_own_predict_proba():
    frame, labels = frame_and_labels()
    model = make_classifier().fit(frame, labels)
    model.steps[-1] = ("model", LogisticRegression(max_iter=500).fit(model[:-1].transform(frame), labels))
    schema = FeatureSchema.from_frame(frame)
    compiled = compile_verified(model, schema)
    assert compiled is not None and compiled.trees is None
    rows = probe_rows(schema, n=50, seed=2)
    np.testing.assert_array_equal(compiled.predict_proba(rows),
                                  model.predict_proba(pd.DataFrame.from_records(rows, columns=schema.names)))
