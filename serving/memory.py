"""The C heap of a stage that runs for days (glibc; elsewhere these do nothing)."""

from __future__ import annotations

import ctypes
import os
from typing import Any

TRIM_EVERY = 60.0  # seconds between giving the C heap's free pages back (release_freed_memory)


def release_freed_memory() -> None:
    """glibc keeps freed heap pages mapped: fetch buffers (a backlog's are full: megabytes a
    partition) and a join's turnover leave a stage's resident set at its high-water mark and
    creeping up with fragmentation. `malloc_trim(0)` returns the free pages of every arena (a few
    milliseconds). Elsewhere than glibc: nothing."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None
# glibc's mallopt parameters, and what the monitor and scorers set them to (`tune_allocator`).
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8
ARENAS, MMAP_THRESHOLD = 2, 256 * 1024


def tune_allocator() -> None:
    """Bound the C heap's fragmentation for a process that runs for days: at most ARENAS malloc
    arenas (glibc makes up to 8 per core, one per thread that allocates: the monitor has ~20
    threads, a scorer ~10), and blocks of MMAP_THRESHOLD bytes and more (fetch buffers, join tables, data
    frames, model arrays) mapped on their own and unmapped when freed, instead of glibc's
    threshold that rises with each such block freed and then carves them from the arenas.
    A variable the user set (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_) wins. Elsewhere than
    glibc: nothing."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    if "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(M_ARENA_MAX, ARENAS)
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
