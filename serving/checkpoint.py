"""Online-learner checkpoints: the learner, its n_learned and the offsets it had seen."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Checkpoint:
    learner: Any
    n_learned: int
    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> next offset


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Atomic: a crash mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    # pickle: River learners are plain Python objects; the file is our own, written here.
    with open(tmp, "wb") as out:
        pickle.dump(checkpoint, out, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def load(path: Path) -> Checkpoint | None:
    if not path.exists():
        return None
    with open(path, "rb") as source:
        return pickle.load(source)
