"""Champion against challenger on the same holdout: promote only on a clear win."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score


@dataclass(frozen=True)
class Evaluation:
    challenger_accuracy: float
    champion_accuracy: float | None
    margin: float
    holdout_rows: int
    promote: bool
    reason: str


def compare(challenger, champion, X_holdout, y_holdout, *, margin: float) -> Evaluation:
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
