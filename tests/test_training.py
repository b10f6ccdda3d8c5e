import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from training.compiled import compile_verified
from training.datasets import FeatureSchema, TooLittleData, join_labelled, split_holdout, to_frame
from training.evaluate import compare, train_challenger
from training.recipes import RECIPES, make_classifier, recipe_of
from training.trust import untrusted_types


def frame(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                      "site": rng.choice(["nord", "süd", "østre"], size=n)})
    x.loc[::17, "a"] = np.nan
    y = pd.Series(((x["b"] > 0) ^ (x["site"] == "süd")).astype(int))
    return x, y


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_contract_clone_fit_and_no_input_mutation(recipe):
    X, _ = frame()
    y = ((X["b"] > 0) | (X["site"] == "süd")).astype(int)  # a rule each recipe can draw (logistic: no XOR)
    before = X.copy()
    model = make_classifier(recipe)
    fitted = clone(model).fit(X, y)
    pd.testing.assert_frame_equal(X, before)
    assert fitted.score(X, y) > 0.9  # categories (non-ASCII) and missing values handled
    assert set(model.get_params()) == set(clone(model).get_params())
    unseen = X.head(5).assign(site="west")
    assert len(fitted.predict(unseen)) == 5
    assert untrusted_types(fitted) == []  # registered and loaded under the allowlist (training.trust)
    compiled = compile_verified(fitted, FeatureSchema.from_frame(X))  # the scorer's per-record path
    assert compiled is not None
    np.testing.assert_allclose(compiled.predict_proba(X.head(50).to_dict("records")),
                               fitted.predict_proba(X.head(50)), atol=1e-9)


def test_unknown_recipe_lists_valid_ones():
    with pytest.raises(ValueError, match="gradient-boosting"):
        make_classifier("magic")


def test_holdout_is_the_newest_rows():
    X, y = frame(200)
    (X_train, _), (X_hold, _) = split_holdout(X, y, 0.25)
    assert list(X_hold.index) == list(range(150, 200)) and len(X_train) == 150


def test_too_little_data_is_an_error():
    X, y = frame(60)
    with pytest.raises(TooLittleData):
        split_holdout(X, y, 0.3)
    with pytest.raises(TooLittleData, match="single class"):
        split_holdout(X, pd.Series([1] * 60), 0.1, min_rows=5)


def test_compare_promotes_only_beyond_the_margin():
    X, y = frame(600)
    good = make_classifier().fit(X, y)
    always_zero = type("Zero", (), {"predict": lambda self, X: np.zeros(len(X), dtype=int)})()
    win = compare(good, always_zero, X, y, margin=0.05)
    assert win.promote and win.champion_accuracy < win.challenger_accuracy
    tie = compare(good, good, X, y, margin=0.0)
    assert not tie.promote and "does not beat" in tie.reason
    first = compare(good, None, X, y, margin=0.5)
    assert first.promote and first.champion_accuracy is None


def test_compare_with_z_asks_for_a_significant_win():
    # Holdout rows 0..99, all of class 1: the challenger is right on all, the champion on all but `misses`.
    X, y = pd.DataFrame({"a": np.arange(100.0)}), pd.Series(np.ones(100, dtype=int))
    ones = type("One", (), {"predict": lambda self, X: np.ones(len(X), dtype=int)})()

    def champion(misses):
        return type("Some", (), {"predict": lambda self, X: (X["a"].to_numpy() >= misses).astype(int)})()

    lucky = compare(ones, champion(4), X, y, margin=0.01, z=3.0)  # 4 against 0: 4 > 3 * 2 fails
    assert not lucky.promote and "McNemar 4 against 0" in lucky.reason
    assert compare(ones, champion(4), X, y, margin=0.01).promote  # the margin alone takes it
    assert compare(ones, champion(10), X, y, margin=0.01, z=3.0).promote  # 10 > 3 * sqrt(10)


def test_join_orders_by_event_time_and_drops_unlabelled():
    records = [{"id": "b", "ts": 2.0, "features": {"x": 2}}, {"id": "a", "ts": 1.0, "features": {"x": 1}},
               {"id": "c", "ts": 3.0, "features": {"x": 3}}]
    X, y, _ = join_labelled(records, {"a": 0, "b": 1})
    assert list(X["x"]) == [1, 2] and list(y) == [0, 1]
    assert list(to_frame([{"b": 1, "a": 2}]).columns) == ["a", "b"]


def test_candidate_windows_are_judged_on_the_same_newest_holdout():
    rng = np.random.default_rng(1)
    x = pd.DataFrame({"a": rng.normal(size=1600), "b": rng.normal(size=1600)})
    # The label's rule flips at row 1000: only the newest rows teach the current one.
    y = pd.Series(np.where(np.arange(1600) < 1000, x["a"] > 0, x["a"] < 0).astype(int))
    whole = train_challenger(x, y, None, holdout_fraction=0.3, margin=0.0)
    assert whole.rows == 1600  # no candidates: the whole window
    fit = train_challenger(x, y, None, holdout_fraction=0.3, margin=0.0, tails=(1600, 600))
    # The holdout is 30% of the first window (480 rows, all after the flip); the 600 newest rows win.
    assert fit.rows == 600 and fit.evaluation.holdout_rows == 480
    assert fit.evaluation.challenger_accuracy > whole.evaluation.challenger_accuracy + 0.2
    assert "newest 600 rows" in fit.evaluation.reason


def test_cheap_judging_picks_the_same_window_and_fits_the_winner_in_full():
    rng = np.random.default_rng(1)
    x = pd.DataFrame({"a": rng.normal(size=1600), "b": rng.normal(size=1600)})
    y = pd.Series(np.where(np.arange(1600) < 1000, x["a"] > 0, x["a"] < 0).astype(int))
    full = train_challenger(x, y, None, holdout_fraction=0.3, margin=0.0, tails=(1600, 800, 600))
    cheap = train_challenger(x, y, None, holdout_fraction=0.3, margin=0.0, tails=(1600, 800, 600),
                             judge_iterations=5)
    assert full.rows == cheap.rows == 600
    # The winner is fitted in full before it faces the champion: the same verdict as full judging.
    assert cheap.evaluation == full.evaluation
    assert cheap.model.get_params()["model__max_iter"] == full.model.get_params()["model__max_iter"] == 100


def test_candidate_recipes_are_judged_on_the_same_holdout_and_the_winner_is_named():
    rng = np.random.default_rng(2)
    x = pd.DataFrame({"a": rng.uniform(0, 10, size=600), "b": rng.uniform(0, 10, size=600)})
    y = pd.Series((x["a"] + x["b"] <= 9).astype(int))  # SEA's boundary: a line, drawn by trees in steps
    boosted = train_challenger(x, y, None, holdout_fraction=0.3, margin=0.0)
    both = train_challenger(x, y, None, holdout_fraction=0.3, margin=0.0, recipes=("gradient-boosting", "logistic"))
    assert (boosted.recipe, recipe_of(boosted.model)) == ("gradient-boosting", "gradient-boosting")
    assert (both.recipe, recipe_of(both.model)) == ("logistic", "logistic")
    assert both.evaluation.challenger_accuracy > boosted.evaluation.challenger_accuracy
    assert "recipe logistic (the best of 2)" in both.evaluation.reason
    # A constant label: every candidate ties, the first recipe wins.
    constant = train_challenger(x, (x["a"] >= 0).astype(int).where(x.index > 0, 0), None, holdout_fraction=0.3,
                                margin=0.0, recipes=("gradient-boosting", "logistic"))
    assert constant.recipe == "gradient-boosting"


def test_a_recipe_switch_must_beat_the_incumbent_recipe_by_the_margin():
    rng = np.random.default_rng(2)
    x = pd.DataFrame({"a": rng.uniform(0, 10, size=600), "b": rng.uniform(0, 10, size=600)})
    y = pd.Series((x["a"] + x["b"] <= 9).astype(int))
    both = ("gradient-boosting", "logistic")
    lead = (train_challenger(x, y, None, holdout_fraction=0.3, margin=0.0, recipes=both).evaluation.challenger_accuracy
            - train_challenger(x, y, None, holdout_fraction=0.3, margin=0.0).evaluation.challenger_accuracy)
    assert lead > 0
    # The first champion's incumbent is the first recipe: logistic leads by less than the margin, boosting stays.
    assert train_challenger(x, y, None, holdout_fraction=0.3, margin=lead + 0.001, recipes=both).recipe == both[0]
    assert train_challenger(x, y, None, holdout_fraction=0.3, margin=lead - 0.001, recipes=both).recipe == both[1]
    # Against a logistic champion, logistic is the incumbent: it keeps the window's best score unhandicapped.
    linear = make_classifier("logistic").fit(x, y)
    assert train_challenger(x, y, linear, holdout_fraction=0.3, margin=lead + 0.001, recipes=both).recipe == both[1]
