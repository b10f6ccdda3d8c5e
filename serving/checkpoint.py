"""Online-learner checkpoints: the learner, its n_learned and the offsets it had seen."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
MAGIC = b"driftctl-checkpoint 1 sha256="


@dataclass
class Checkpoint:
    learner: Any
    n_learned: int
    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> next offset


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Atomic: a crash mid-write leaves the previous checkpoint intact. The payload's sha256
    heads the file: a torn or altered file is refused before it is unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    # pickle: River learners are plain Python objects; the file is our own, written here.
    payload = pickle.dumps(checkpoint, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        with open(tmp, "wb") as out:
            out.write(MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
        os.replace(tmp, path)
    except BaseException:  # disk full, say: no half-written file left taking the space
        tmp.unlink(missing_ok=True)
        raise


def load(path: Path) -> Checkpoint | None:
    """The checkpoint at `path`; None when there is none, or when it is corrupt (logged:
    the learner starts fresh, the scorer does not stop)."""
    if not path.exists():
        return None
    try:
        data = path.read_bytes()
        if not data.startswith(MAGIC):
            raise ValueError("no checkpoint header (an older or foreign file)")
        digest, payload = data[len(MAGIC):len(MAGIC) + 64], data[len(MAGIC) + 65:]
        if hashlib.sha256(payload).hexdigest().encode() != digest:
            raise ValueError("sha256 mismatch")
        checkpoint = pickle.loads(payload)
        if not isinstance(checkpoint, Checkpoint):
            raise ValueError(f"holds a {type(checkpoint).__name__}, not a checkpoint")
        return checkpoint
    except Exception as exc:
        log.error("checkpoint %s ignored, the online learner starts fresh: %s", path, exc)
        return None
