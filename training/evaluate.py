"""Champion against challenger on the same holdout: promote only on a clear win."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score

from training.datasets import split_holdout
from training.recipes import make_classifier


class Predictor(Protocol):
    """What `compare` needs of a model: predictions for a frame of features."""

    def predict(self, X: pd.DataFrame) -> Any: ...


@dataclass(frozen=True)
class Evaluation:
    challenger_accuracy: float
    champion_accuracy: float | None
    margin: float
    holdout_rows: int
    promote: bool
    reason: str


def compare(challenger: Predictor, champion: Predictor | None, X_holdout: pd.DataFrame, y_holdout: pd.Series, *,
            margin: float) -> Evaluation:
    """`champion` may be None (no model serves yet): the challenger then wins by default."""
    challenger_accuracy = float(accuracy_score(y_holdout, challenger.predict(X_holdout)))
    if champion is None:
        return Evaluation(challenger_accuracy, None, margin, len(y_holdout), True,
                          "no champion yet: the first model is promoted")
    champion_accuracy = float(accuracy_score(y_holdout, np.asarray(champion.predict(X_holdout))))
    gain = challenger_accuracy - champion_accuracy
    promote = gain > margin
    verdict = "beats" if promote else "does not beat"
    reason = (f"challenger {challenger_accuracy:.4f} {verdict} champion {champion_accuracy:.4f} "
              f"by more than {margin:.4f} on {len(y_holdout)} holdout rows")
    return Evaluation(challenger_accuracy, champion_accuracy, margin, len(y_holdout), promote, reason)


@dataclass(frozen=True)
class Challenge:
    """A trained challenger, the verdict against the champion, and the training time."""

    model: object
    evaluation: Evaluation
    seconds: float


def train_challenger(frame: pd.DataFrame, target: pd.Series, champion: Predictor | None, *, holdout_fraction: float,
                     margin: float, recipe: str = "gradient-boosting", random_state: int = 0) -> Challenge:
    """The one trainer and promotion decision, shared by the retrain flow and the backtest.

    Trains on the older rows of the window, judges challenger and champion on the newest
    `holdout_fraction` of it (`compare`), and when the challenger wins refits it on the
    whole window so the newest rows are learned too. Raises `TooLittleData` on a window
    too small or with a single class.
    """
    (X_train, y_train), (X_holdout, y_holdout) = split_holdout(frame, target, holdout_fraction)
    started = time.perf_counter()
    challenger = make_classifier(recipe, random_state=random_state).fit(X_train, y_train)
    seconds = time.perf_counter() - started
    evaluation = compare(challenger, champion, X_holdout, y_holdout, margin=margin)
    if evaluation.promote:
        challenger = make_classifier(recipe, random_state=random_state).fit(frame, target)
    return Challenge(challenger, evaluation, seconds)
