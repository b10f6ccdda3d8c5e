"""Champion against challenger on the same holdout: promote only on a clear win."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
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
            margin: float, z: float | None = None) -> Evaluation:
    """`champion` may be None (no model serves yet): the challenger then wins by default. With `z`
    the challenger must also win significantly: McNemar on the holdout rows only one of them gets
    right, wins - losses > z * sqrt(wins + losses) (a small holdout's lucky lead is not enough)."""
    predicted = np.asarray(challenger.predict(X_holdout))
    truth = np.asarray(y_holdout)
    challenger_accuracy = float(accuracy_score(y_holdout, predicted))
    if champion is None:
        return Evaluation(challenger_accuracy, None, margin, len(y_holdout), True,
                          "no champion yet: the first model is promoted")
    served = np.asarray(champion.predict(X_holdout))
    champion_accuracy = float(accuracy_score(y_holdout, served))
    gain = challenger_accuracy - champion_accuracy
    promote = gain > margin
    test = ""
    if z is not None:
        wins = int(np.sum((predicted == truth) & (served != truth)))
        losses = int(np.sum((served == truth) & (predicted != truth)))
        promote = promote and wins - losses > z * math.sqrt(wins + losses)
        test = f" and significantly (McNemar {wins} against {losses}, z {z:g})"
    verdict = "beats" if promote else "does not beat"
    reason = (f"challenger {challenger_accuracy:.4f} {verdict} champion {champion_accuracy:.4f} "
              f"by more than {margin:.4f}{test} on {len(y_holdout)} holdout rows")
    return Evaluation(challenger_accuracy, champion_accuracy, margin, len(y_holdout), promote, reason)


@dataclass(frozen=True)
class Challenge:
    """A trained challenger, the verdict against the champion, the training time, and the rows it
    learned from (the newest `rows` of the window: fewer than the window when another candidate won)."""

    model: object
    evaluation: Evaluation
    seconds: float
    rows: int = 0


def train_challenger(frame: pd.DataFrame, target: pd.Series, champion: Predictor | None, *, holdout_fraction: float,
                     margin: float, recipe: str = "gradient-boosting", random_state: int = 0,
                     tails: Sequence[int] = (), z: float | None = None) -> Challenge:
    """The one trainer and promotion decision, shared by the retrain flow and the backtest.

    Trains on the older rows of the window, judges challenger and champion on the newest
    `holdout_fraction` of it (`compare`), and when the challenger wins refits it on the
    whole window so the newest rows are learned too. Raises `TooLittleData` on a window
    too small or with a single class.

    `tails` (`DriftSettings.candidate_windows`) names candidate windows, each the newest `k` rows
    of `frame`; the first is the window the policy chose and sets the holdout (`holdout_fraction`
    of it). Each candidate learns its rows older than that holdout, the most accurate on it
    (the first on a tie) is the challenger: a fit per candidate, still one retrain. `z`: the
    challenger must also win significantly (`compare`).
    """
    if not tails:
        tails = (len(frame),)
    first = min(tails[0], len(frame))
    (X_train, y_train), (X_holdout, y_holdout) = split_holdout(frame.iloc[len(frame) - first:],
                                                               target.iloc[len(frame) - first:], holdout_fraction)
    started = time.perf_counter()
    challenger = make_classifier(recipe, random_state=random_state).fit(X_train, y_train)
    rows = first
    if len(tails) > 1:
        best = float(accuracy_score(y_holdout, challenger.predict(X_holdout)))
        holdout = len(y_holdout)
        for tail in tails[1:]:
            tail = min(tail, len(frame))
            begin, end = len(frame) - tail, len(frame) - holdout
            if tail == first or end - begin < 50 or target.iloc[begin:end].nunique() < 2:
                continue
            candidate = make_classifier(recipe, random_state=random_state).fit(frame.iloc[begin:end],
                                                                              target.iloc[begin:end])
            accuracy = float(accuracy_score(y_holdout, candidate.predict(X_holdout)))
            if accuracy > best:
                best, challenger, rows = accuracy, candidate, tail
    seconds = time.perf_counter() - started
    evaluation = compare(challenger, champion, X_holdout, y_holdout, margin=margin, z=z)
    if rows != first:
        evaluation = replace(evaluation, reason=f"{evaluation.reason}; trained on the newest {rows} rows "
                                                f"(the best of {len(tails)} windows)")
    if evaluation.promote:
        challenger = make_classifier(recipe, random_state=random_state).fit(frame.iloc[len(frame) - rows:],
                                                                           target.iloc[len(frame) - rows:])
    return Challenge(challenger, evaluation, seconds, rows)
