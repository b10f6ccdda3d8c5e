"""Joining late labels to the records they belong to, with bounded state."""

from __future__ import annotations

import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class LabelJoiner:
    """Keeps scored records until their label arrives, and labels that arrive before their
    record. Both sides are bounded by count and by age, and together by `max_bytes` (the sizes
    the caller gives: the messages as received); what is evicted is counted.

    >>> joiner = LabelJoiner(max_records=2, max_age=60, clock=lambda: 0.0)
    >>> joiner.add_record("a", {"x": 1})
    >>> joiner.add_label("a", 1)
    ({'x': 1}, 1)
    >>> joiner.add_label("b", 0) is None   # early: kept until its record comes
    True
    >>> joiner.add_record("b", {"x": 2})
    ({'x': 2}, 0)
    >>> for rid in "cde": joiner.add_record(rid, {})
    >>> joiner.evicted_by_size
    1
    >>> small = LabelJoiner(max_records=100, max_age=60, clock=lambda: 0.0, max_bytes=1000)
    >>> for rid in "abc": small.add_record(rid, {}, size=400)
    >>> len(small), small.bytes, small.evicted_by_size
    (2, 800, 1)
    """

    def __init__(self, max_records: int = 200_000, max_age: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic, max_bytes: int | None = None):
        if max_records < 1:
            raise ValueError(f"max_records must be at least 1, got {max_records!r}")
        if max_age <= 0:
            raise ValueError(f"max_age must be positive, got {max_age!r}")
        self.max_records = max_records
        self.max_age = max_age
        self.max_bytes = max_bytes
        self.clock = clock
        # id -> (when, what, size): what was scored (features, ...) and labels that came first.
        self._records: OrderedDict[str, tuple[float, Any, int]] = OrderedDict()
        self._labels: OrderedDict[str, tuple[float, Any, int]] = OrderedDict()
        self.bytes = 0
        self.evicted_by_size = 0
        self.evicted_by_age = 0
        # Ids evicted lately -> which side was kept ("record" or "label"): a partner that comes for
        # one is a near miss, and is not kept either (it can join nothing). Bounded like each side.
        self._evicted: OrderedDict[str, str] = OrderedDict()
        self.admission = Admission()
        self.orphans = 0  # partners that came after their entry was evicted

    def __len__(self) -> int:
        return len(self._records) + len(self._labels)

    def add_record(self, record_id: str, features: Any, size: int = 0) -> tuple[Any, Any] | None:
        """Returns (features, label) when the label was already waiting."""
        early = self._labels.pop(record_id, None)
        if early is not None:
            self.bytes -= early[2]
            return features, early[1]
        if self._missed(record_id, "label") or not self.admission.admits(record_id, len(self)):
            return None
        self._records[record_id] = (self.clock(), features, size)
        self.bytes += size
        self._evict(self._records)
        return None

    def add_label(self, record_id: str, label: Any, size: int = 0) -> tuple[Any, Any] | None:
        """Returns (features, label) when the record was waiting for it."""
        waiting = self._records.pop(record_id, None)
        if waiting is not None:
            self.bytes -= waiting[2]
            return waiting[1], label
        if self._evicted.get(record_id) == "never":  # its record was dead-lettered
            del self._evicted[record_id]
            return None
        if self._missed(record_id, "record") or not self.admission.admits(record_id, len(self)):
            return None
        self._labels[record_id] = (self.clock(), label, size)
        self.bytes += size
        self._evict(self._labels)
        return None

    def never(self, record_id: str) -> None:
        """`record_id` will not be added (its record was dead-lettered): its label is dropped."""
        early = self._labels.pop(record_id, None)
        if early is not None:
            self.bytes -= early[2]
        else:
            self._remember(record_id, "never")

    def _missed(self, record_id: str, partner: str) -> bool:
        """Whether `record_id`'s `partner` side was evicted lately (then this side is a near miss)."""
        if self._evicted.get(record_id) != partner:
            return False
        del self._evicted[record_id]
        self.orphans += 1
        self.admission.near_miss()
        return True

    def _evict(self, side: OrderedDict) -> None:
        max_bytes = self.max_bytes
        kept = "record" if side is self._records else "label"
        while side and (len(side) > self.max_records or (max_bytes is not None and self.bytes > max_bytes)):
            record_id, (_, _, size) = side.popitem(last=False)
            self.bytes -= size
            self.evicted_by_size += 1
            if kept == "label":
                # An early label pushed out: its record comes later than the join holds (the labels
                # of dead-lettered records are dropped at once, see `never`), even when the ids
                # evicted are no longer remembered.
                self.admission.near_miss()
            self._remember(record_id, kept)
        horizon = self.clock() - self.max_age
        while side and next(iter(side.values()))[0] < horizon:
            record_id, (_, _, size) = side.popitem(last=False)
            self.bytes -= size
            self.evicted_by_age += 1
            self._remember(record_id, kept)

    def _remember(self, record_id: str, kept: str) -> None:
        self._evicted[record_id] = kept
        if len(self._evicted) > self.max_records:
            self._evicted.popitem(last=False)


def share_of(record_id: str) -> float:
    """Where an id falls in [0, 1): the same on every side of a join, in every process."""
    return zlib.crc32(record_id.encode("utf-8", "surrogatepass")) / 4_294_967_296.0


class Admission:
    """Which new ids a bounded join keeps, so that it goes on joining when it overflows.

    Evicting the oldest entry is right while a partner comes within what the join holds. Once
    one side lags by more (a scorer far behind, labels later than the cap, one partition read far
    ahead of another), every partner arrives for an entry just evicted and nothing joins again.
    The join reports such a partner as a `near_miss`; at the end of a turnover of the join
    (about `held` entries admitted) with near misses, the share of ids kept halves: the same
    ids on every side (a hash of the id), so a kept record still meets its partner, and the join
    holds a stretch of the stream twice as long. A turnover without one raises the share by a
    quarter, back to every id. What is skipped is counted.

    >>> gate = Admission(min_turn=4)
    >>> all(gate.admits(f"r{i}", held=100) for i in range(10))
    True
    >>> gate.near_miss()
    >>> [gate.admits(f"r{i}", held=2) for i in range(8)].count(True) < 8, gate.share
    (True, 0.5)
    """

    def __init__(self, floor: float = 1 / 128, min_turn: int = 1_000):
        self.floor = floor
        self.min_turn = min_turn
        self.share = 1.0
        self.near_misses = 0  # partners that came for an entry already evicted
        self.skipped = 0  # new ids not kept (outside the share)
        self.lowered = 0  # times the share was halved
        self._seen = 0
        self._misses = 0

    def near_miss(self) -> None:
        self.near_misses += 1
        self._misses += 1

    def admits(self, record_id: str, held: int) -> bool:
        """Whether to keep a new id; `held`: the entries the join holds now."""
        self._seen += 1
        if self._seen * self.share >= max(held, self.min_turn):
            if self._misses:
                self.share = max(self.floor, self.share / 2)
                self.lowered += 1
            elif self.share < 1.0:
                self.share = min(1.0, self.share * 1.25)
            self._seen = self._misses = 0
        if self.share >= 1.0 or share_of(record_id) < self.share:
            return True
        self.skipped += 1
        return False

    def vitals(self) -> dict[str, float | int]:
        return {"share": round(self.share, 4), "near_misses": self.near_misses, "skipped": self.skipped}
