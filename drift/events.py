"""Drift events and decisions: frozen, typed, versioned, serialized here and only here."""

from __future__ import annotations

import time
import uuid
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class DriftEvent(BaseModel):
    """One detector firing, with the evidence needed to judge it later."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    id: str = Field(default_factory=lambda: new_id("drift"))
    detector: str
    kind: str  # "concept" (labels needed) or "data" (label-free)
    index: int  # stream position (record sequence number) at which it fired
    statistic: float
    threshold: float
    window: dict[str, Any] = {}
    evidence: dict[str, Any] = {}
    model: dict[str, Any] = {}
    at: float = Field(default_factory=time.time)
    incident: str | None = None  # the drift this event belongs to (DriftPolicy.incident_at)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> DriftEvent:
        return cls.model_validate_json(raw)


class Action(str, Enum):
    RETRAIN = "retrain"
    ALERT = "alert"
    HOLD = "hold"


class Decision(BaseModel):
    """What the policy decided about a signal, and why."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    id: str = Field(default_factory=lambda: new_id("decision"))
    action: Action
    reason: str
    event_ids: tuple[str, ...] = ()
    # Labelled-record positions [start, end) the retrain should learn from.
    window: tuple[int, int] | None = None
    at: float = Field(default_factory=time.time)
    incident: str | None = None  # the drift this decision acts on; None for a bootstrap or a schedule

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()
