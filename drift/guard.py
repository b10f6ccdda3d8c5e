"""Probation after a promotion: the new champion against the one it replaced, on the
same first labelled records after the swap. Pure: outcomes in, a verdict out.

A holdout win can still be a loss in production (a leak, a holdout too small, a change
that kept going). The guard keeps both models' hits on the first `rows` labelled records
the new champion scored; if the previous champion leads by more than `margin`, it says
roll back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Verdict(str, Enum):
    PENDING = "pending"  # not enough labelled records yet
    KEEP = "keep"
    ROLL_BACK = "roll_back"


@dataclass(frozen=True)
class ProbationResult:
    verdict: Verdict
    rows: int
    champion_accuracy: float
    previous_accuracy: float
    reason: str


class ProbationWatch:
    """Judges `version` against `previous` on the first `rows` labelled records.

    >>> watch = ProbationWatch(version=2, previous=1, rows=4, margin=0.1)
    >>> for new_hit, old_hit in [(True, True), (False, True), (False, True)]:
    ...     watch.update(new_hit, old_hit).verdict.value
    'pending'
    'pending'
    'pending'
    >>> result = watch.update(False, True)
    >>> result.verdict.value, result.champion_accuracy, result.previous_accuracy
    ('roll_back', 0.25, 1.0)
    >>> watch.update(True, True).verdict.value  # decided once; later records change nothing
    'roll_back'
    """

    def __init__(self, *, version: int, previous: int, rows: int = 500, margin: float = 0.02):
        if rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows!r}")
        if margin < 0:
            raise ValueError(f"margin must be at least 0, got {margin!r}")
        self.version = version
        self.previous = previous
        self.rows = rows
        self.margin = margin
        self._reset()

    def _reset(self) -> None:
        self.seen = 0
        self.champion_hits = 0
        self.previous_hits = 0
        self.result: ProbationResult | None = None

    @property
    def decided(self) -> bool:
        return self.result is not None

    def update(self, champion_correct: bool, previous_correct: bool) -> ProbationResult:
        if self.result is not None:
            return self.result
        self.seen += 1
        self.champion_hits += bool(champion_correct)
        self.previous_hits += bool(previous_correct)
        champion, previous = self.champion_hits / self.seen, self.previous_hits / self.seen
        if self.seen < self.rows:
            return ProbationResult(Verdict.PENDING, self.seen, champion, previous,
                                   f"{self.seen} of {self.rows} labelled records judged")
        lead = previous - champion
        if lead > self.margin:
            verdict = Verdict.ROLL_BACK
            reason = (f"automatic rollback: version {self.version} scored {champion:.4f} on the first {self.seen} "
                      f"labelled records after its promotion, version {self.previous} {previous:.4f} on the same "
                      f"records (lead {lead:.4f} > margin {self.margin:.4f})")
        else:
            verdict = Verdict.KEEP
            reason = (f"version {self.version} kept: {champion:.4f} against version {self.previous} {previous:.4f} "
                      f"on the first {self.seen} labelled records (margin {self.margin:.4f})")
        self.result = ProbationResult(verdict, self.seen, champion, previous, reason)
        return self.result
