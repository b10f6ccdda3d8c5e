"""Champion against challenger on the same holdout: promote only on a clear win."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score
from threadpoolctl import threadpool_limits

from training.datasets import split_holdout
from training.recipes import make_classifier, recipe_of


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
    recipe: str = "gradient-boosting"  # the recipe of the candidate that won (`recipes`)


def train_challenger(frame: pd.DataFrame, target: pd.Series, champion: Predictor | None, *, holdout_fraction: float,
                     margin: float, recipe: str = "gradient-boosting", random_state: int = 0,
                     tails: Sequence[int] = (), judge_iterations: int = 0,
                     z: float | None = None, recipes: Sequence[str] = ()) -> Challenge:
    """The one trainer and promotion decision, shared by the retrain flow and the backtest.

    Trains on the older rows of the window, judges challenger and champion on the newest
    `holdout_fraction` of it (`compare`), and when the challenger wins refits it on the
    whole window so the newest rows are learned too. Raises `TooLittleData` on a window
    too small or with a single class.

    `tails` (`DriftSettings.candidate_windows`) names candidate windows, each the newest `k` rows
    of `frame`; the first is the window the policy chose and sets the holdout (`holdout_fraction`
    of it). Each candidate learns its rows older than that holdout, the most accurate on it
    (the first on a tie) is the challenger: a fit per candidate, still one retrain. `judge_iterations`
    (`DriftSettings.candidate_judge_iterations`): the candidates are judged by fits of that many boosting
    iterations (at a learning rate that keeps the same total step) and only the winner is fitted in full;
    0: each is fitted in full. `z`: the challenger must also win significantly (`compare`).
    `recipes` (`DriftSettings.candidate_recipes`; default: `recipe` alone): each window is fitted by
    each recipe, judged on the same holdout (the first recipe wins a tie).
    """
    if not tails:
        tails = (len(frame),)
    first = min(tails[0], len(frame))
    (X_train, y_train), (X_holdout, y_holdout) = split_holdout(frame.iloc[len(frame) - first:],
                                                               target.iloc[len(frame) - first:], holdout_fraction)
    holdout = len(y_holdout)
    windows = [first]
    for tail in tails[1:]:
        tail = min(tail, len(frame))
        begin, end = len(frame) - tail, len(frame) - holdout
        if tail not in windows and end - begin >= 50 and target.iloc[begin:end].nunique() >= 2:
            windows.append(tail)
    candidates = [(tail, name) for tail in windows for name in (recipes or (recipe,))]

    def fit(candidate: tuple[int, str], iterations: int = 0) -> Any:
        """A candidate trained on its rows older than the holdout."""
        tail, name = candidate
        model = make_classifier(name, random_state=random_state)
        if iterations and name == "gradient-boosting":
            full, rate = model.get_params()["model__max_iter"], model.get_params()["model__learning_rate"]
            model.set_params(model__max_iter=iterations, model__learning_rate=min(1.0, rate * full / iterations))
        if tail == first:
            return model.fit(X_train, y_train)
        begin, end = len(frame) - tail, len(frame) - holdout
        return model.fit(frame.iloc[begin:end], target.iloc[begin:end])

    def judged(candidate: tuple[int, str]) -> tuple[Any, float]:
        with threadpool_limits(limits=1, user_api="openmp"):  # a thread's own limit: one core per fit
            model = fit(candidate, judge_iterations)
            return model, float(accuracy_score(y_holdout, model.predict(X_holdout)))

    started = time.perf_counter()
    if len(candidates) == 1:
        challenger, (rows, name) = fit(candidates[0]), candidates[0]
    else:
        # The candidates are fitted side by side, a thread each (the fits release the GIL; beside busy
        # threads a fit mostly waits to take it back, and the waits overlap); the most accurate wins,
        # the first on a tie. With `judge_iterations`, cheap fits rank them, the winner is fitted in full.
        with ThreadPoolExecutor(len(candidates)) as pool:
            models, scores = zip(*pool.map(judged, candidates), strict=True)
        # A recipe switch must earn it: a candidate of another recipe than the incumbent's (the champion's, or
        # the first recipe's for the first champion) ranks by its holdout accuracy less `margin`. Picking the
        # best of twice the candidates on one holdout otherwise wins near ties by luck: a lucky linear fit that
        # extrapolates badly after a covariate shift, and on a noisy stream challengers that keep "winning".
        pipeline = champion is not None and hasattr(champion, "named_steps")  # a stand-in champion has no recipe
        incumbent = recipe_of(champion) if pipeline else (recipes or (recipe,))[0]
        scores = tuple(score - (margin if name != incumbent else 0.0)
                       for score, (_, name) in zip(scores, candidates, strict=True))
        best = scores.index(max(scores))
        rows, name = candidates[best]
        challenger = fit(candidates[best]) if judge_iterations else models[best]
    seconds = time.perf_counter() - started
    evaluation = compare(challenger, champion, X_holdout, y_holdout, margin=margin, z=z)
    if rows != first:
        evaluation = replace(evaluation, reason=f"{evaluation.reason}; trained on the newest {rows} rows "
                                                f"(the best of {len(tails)} windows)")
    if len(recipes) > 1:
        evaluation = replace(evaluation, reason=f"{evaluation.reason}; recipe {name} (the best of {len(recipes)})")
    if evaluation.promote:
        challenger = make_classifier(name, random_state=random_state).fit(frame.iloc[len(frame) - rows:],
                                                                         target.iloc[len(frame) - rows:])
    return Challenge(challenger, evaluation, seconds, rows, name)
