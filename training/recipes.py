"""Model recipes: plain scikit-learn estimators, so `clone`, `get_params` and skops work."""

from __future__ import annotations

from typing import Any, Protocol

from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

RECIPES = ("gradient-boosting", "logistic")
MAX_CATEGORIES = 64


def make_classifier(recipe: str = "gradient-boosting", *, random_state: int = 0) -> Pipeline:
    """Numbers imputed by median, categories one-hot encoded (unseen ones ignored; at most
    `MAX_CATEGORIES` columns per feature, the rarest grouped, so an id-like column stays cheap).
    `gradient-boosting`: a histogram gradient boosting classifier; `logistic`: the same columns
    standardised, a logistic regression (a linear boundary learned from few rows, where trees
    approximate it by steps)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; valid recipes: {', '.join(RECIPES)}")
    features = ColumnTransformer(
        [
            ("numeric", SimpleImputer(strategy="median"), make_column_selector(dtype_include="number")),
            ("categorical",
             make_pipeline(SimpleImputer(strategy="most_frequent"),
                           OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=MAX_CATEGORIES,
                                         sparse_output=False)),
             make_column_selector(dtype_exclude="number")),
        ]
    )
    if recipe == "logistic":
        linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1_000))
        return Pipeline([("features", features), ("model", linear)])
    model = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, random_state=random_state)
    return Pipeline([("features", features), ("model", model)])


def recipe_of(model: Any) -> str:
    """The recipe that made a fitted `make_classifier` pipeline."""
    step = model.named_steps["model"]
    return "logistic" if isinstance(step, Pipeline) and isinstance(step[-1], LogisticRegression) else RECIPES[0]


ONLINE_LEARNERS = ("hoeffding-tree", "renewing-hoeffding-tree", "eager-hoeffding-tree", "renewing-eager-hoeffding-tree",
                   "contending-eager-hoeffding-tree", "renewing-quick-hoeffding-tree", "renewing-tree-linear",
                   "renewing-quick-tree-linear", "renewing-tree-pool", "renewing-tree-pool-window",
                   "renewing-tree-window", "renewing-eager-tree-pool-window",
                   "hoeffding-adaptive-tree", "adaptive-random-forest-3",
                   "adaptive-random-forest-5", "bagging-hoeffding-tree-3", "logistic-regression",
                   "gaussian-naive-bayes")


class OnlineLearner(Protocol):
    """What driftctl asks of a River classifier. (River types a record as dict[Hashable, Any],
    which a dict[str, Any] is not: dicts are invariant.)"""

    def predict_one(self, x: dict[Any, Any]) -> Any: ...

    def predict_proba_one(self, x: dict[Any, Any]) -> dict[Any, float]: ...

    def learn_one(self, x: dict[Any, Any], y: Any) -> None: ...


def make_online_learner(seed: int = 0, kind: str = "hoeffding-tree") -> OnlineLearner:
    """The online River learner that scores beside the champion and learns from late labels.

    `benchmarks/results/learners.md` measures each one's accuracy and cost per record on the
    decision benchmark's streams. The linear and naive Bayes learners scale numbers and
    one-hot encode text, so they take the same records as the trees.
    """
    from river import compose, ensemble, forest, linear_model, naive_bayes, preprocessing, tree

    if kind == "hoeffding-tree":
        # River's tree, bit-identical, with cheaper naive Bayes leaves (training.hoeffding).
        from training.hoeffding import HoeffdingTree

        fast: OnlineLearner = HoeffdingTree(grace_period=100)
        return fast
    if kind == "eager-hoeffding-tree":
        # The same tree, splitting as ARF's member trees do (river.forest.ARFClassifier's defaults: an
        # attempt every 50 labels at confidence 0.99, not every 100 at 1 - 1e-7) for its first 1,000
        # labels, then as the plain tree (training.online.Maturing).
        from training.hoeffding import HoeffdingTree
        from training.online import Maturing

        return Maturing(HoeffdingTree(grace_period=100))
    if kind == "renewing-hoeffding-tree":
        # A fresh tree takes over after an abrupt change (training.online.Renewing).
        from functools import partial

        from training.online import Renewing

        return Renewing(partial(make_online_learner, seed, "hoeffding-tree"))
    if kind in ("renewing-eager-hoeffding-tree", "contending-eager-hoeffding-tree"):
        # The renewing tree whose fresh trees (started on a warning) grow eagerly while young: the
        # first tree is the plain one (an eager start costs up to 2.5 points on noisy linear streams,
        # learners.md round 6), the ones that must learn a new concept fast are eager.
        from functools import partial

        from training.online import Renewing

        return Renewing(partial(make_online_learner, seed, "hoeffding-tree"),
                        make_shadow=partial(make_online_learner, seed, "eager-hoeffding-tree"),
                        contend=kind.startswith("contending"))  # an eager tree contends from the first label
    if kind == "renewing-quick-hoeffding-tree":
        # The renewing tree whose trees always split as ARF's member trees do (an attempt every 50
        # labels at confidence 0.99): they keep growing as the concept moves (RandomRBF drift).
        from functools import partial

        from training.hoeffding import HoeffdingTree
        from training.online import Renewing

        return Renewing(partial(HoeffdingTree, grace_period=50, delta=0.01))
    if kind in ("renewing-tree-linear", "renewing-quick-tree-linear"):
        # A renewing tree beside a logistic regression; the one more accurate lately serves
        # (training.online.WithLinear): the linear model wins where the boundary is a sloping line.
        from training.online import Renewing, WithLinear

        inner = make_online_learner(seed, kind.replace("tree-linear", "hoeffding-tree"))
        assert isinstance(inner, Renewing)
        return WithLinear(inner)
    if kind in ("renewing-tree-pool", "renewing-tree-pool-window", "renewing-tree-window",
                "renewing-eager-tree-pool-window"):
        # The renewing tree pooled with a logistic regression (and a nearest-neighbour window): a
        # log-linear pool whose weights are learned from the labels (training.online.Pooled). `eager`:
        # the trees started on a warning grow as ARF's member trees while young.
        from training.online import Pooled, Renewing

        eager = kind.startswith("renewing-eager")
        inner = make_online_learner(seed, "renewing-eager-hoeffding-tree" if eager else "renewing-hoeffding-tree")
        assert isinstance(inner, Renewing)
        return Pooled(inner, window=kind.endswith("window"), linear=kind != "renewing-tree-window")
    if kind == "hoeffding-adaptive-tree":
        return tree.HoeffdingAdaptiveTreeClassifier(grace_period=100, seed=seed)
    if kind.startswith("adaptive-random-forest-"):
        return forest.ARFClassifier(n_models=int(kind.rsplit("-", 1)[1]), seed=seed)
    if kind == "bagging-hoeffding-tree-3":
        return ensemble.BaggingClassifier(tree.HoeffdingTreeClassifier(grace_period=100), n_models=3, seed=seed)
    if kind in ("logistic-regression", "gaussian-naive-bayes"):
        import numbers

        numeric = compose.SelectType(numbers.Number) | preprocessing.StandardScaler()
        text = compose.SelectType(str) | preprocessing.OneHotEncoder()
        if kind == "gaussian-naive-bayes":
            bayes: OnlineLearner = compose.SelectType(numbers.Number) | naive_bayes.GaussianNB()
            return bayes
        from river import multiclass

        linear: OnlineLearner = (numeric + text) | multiclass.OneVsRestClassifier(linear_model.LogisticRegression())
        return linear
    raise ValueError(f"unknown online learner {kind!r}; valid learners: {', '.join(ONLINE_LEARNERS)}")
