"""Joining late labels to the records they belong to, with bounded state."""

from __future__ import annotations

import time
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

    def __len__(self) -> int:
        return len(self._records) + len(self._labels)

    def add_record(self, record_id: str, features: Any, size: int = 0) -> tuple[Any, Any] | None:
        """Returns (features, label) when the label was already waiting."""
        early = self._labels.pop(record_id, None)
        if early is not None:
            self.bytes -= early[2]
            return features, early[1]
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
        self._labels[record_id] = (self.clock(), label, size)
        self.bytes += size
        self._evict(self._labels)
        return None

    def _evict(self, side: OrderedDict) -> None:
        max_bytes = self.max_bytes
        while side and (len(side) > self.max_records or (max_bytes is not None and self.bytes > max_bytes)):
            self.bytes -= side.popitem(last=False)[1][2]
            self.evicted_by_size += 1
        horizon = self.clock() - self.max_age
        while side and next(iter(side.values()))[0] < horizon:
            self.bytes -= side.popitem(last=False)[1][2]
            self.evicted_by_age += 1
