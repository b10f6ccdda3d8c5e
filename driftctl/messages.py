"""Every message driftctl sends: the payloads of its topics, drift events and decisions, the
retrain trigger and the training window. Typed, versioned, each serialized in one place.

Two kinds, for speed:

- The per-record messages (`Telemetry`, `Label`, `Prediction` and `DeadLetter`) are
  TypedDicts: plain dicts at run time. The scorer decodes and encodes one per record
  (~3 µs each); pydantic models there, even built with `model_construct`, added 3 to 7 µs.
  `serving/codec.py` is their one serialize/parse pair: it validates each with a reason
  fit for the dead-letter topic. Their version is implicit: no `schema_version` key
  means `RECORD_VERSION`, so the bytes on those topics stay what every consumer reads.
- The control messages (`ModelUpdate`, `DriftEvent`, `Decision`, `RetrainTrigger`,
  `TrainingWindow`) are frozen pydantic models with a `schema_version`, written by
  `to_json` and read by `from_json`, here.
"""

import time
import uuid
from collections.abc import Sequence
from enum import Enum
from typing import Any, ClassVar, NotRequired, Self, TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

RECORD_VERSION = 1  # of Telemetry, Label and Prediction


class InvalidMessage(ValueError):
    """A message that cannot be read; the text names the field and the reason."""


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# -- per-record messages (encoded and decoded in serving/codec.py) ----------------------------
class Telemetry(TypedDict):
    """On `driftctl.telemetry`, keyed by entity id."""

    id: str
    ts: float  # event time, epoch seconds
    features: dict[str, float | int | str | None]
    schema_version: NotRequired[int]


class Label(TypedDict):
    """On `driftctl.labels`, keyed by entity id; arrives after its telemetry."""

    id: str
    ts: float
    label: Any
    schema_version: NotRequired[int]


class ModelLineage(TypedDict):
    name: str
    version: int
    run_id: str


class OnlineLineage(TypedDict):
    prediction: Any  # the online learner's own prediction (None before it learned anything)
    n_learned: int  # labels it had learned from: the state that scored the record
    renewals: NotRequired[int]  # times it had renewed itself (training.online.Renewing): a change is a new learner


class SourcePosition(TypedDict):
    partition: int
    offset: int


class ChampionLineage(TypedDict):
    """The champion's own answer for a record (what it is judged on, whichever source served)."""

    prediction: Any


class Prediction(TypedDict):
    """On `driftctl.predictions`, keyed by entity id: what was served and which model state
    served it. Readers may rely on `id`, `ts`, `prediction` and `model` only."""

    id: str
    ts: float
    prediction: Any
    model: ModelLineage
    proba: NotRequired[dict[str, float] | None]
    online: NotRequired[OnlineLineage]
    served: NotRequired[str]  # "champion", "online" or "blend" (as served_by)
    served_by: NotRequired[str]  # which prediction was served: "champion", "online" or "blend"
    confidence: NotRequired[float]  # the served class's probability (the label-free estimate reads it)
    champion: NotRequired[ChampionLineage]  # the champion's own prediction, served or not
    scorer: NotRequired[str]  # the scorer instance
    scored_at: NotRequired[float]
    source: NotRequired[SourcePosition]  # the telemetry record's position
    schema_version: NotRequired[int]


class DeadLetter(TypedDict):
    """On `driftctl.dead-letter`, keyed by source topic: a message that could not be used, and why."""

    error: str
    topic: str
    partition: int
    offset: int
    raw: str | None  # an excerpt of the input as text (serving.deadletter bounds it)
    size: NotRequired[int | None]  # bytes of the whole input
    sha256: NotRequired[str | None]  # of the whole input
    truncated: NotRequired[bool]
    stage: NotRequired[str]


# -- control messages -------------------------------------------------------------------------
class Message(BaseModel):
    """A frozen, versioned message: `to_json` and `from_json` are its serialize/parse pair."""

    model_config = ConfigDict(frozen=True)

    VERSION: ClassVar[int] = 1
    schema_version: int = 1

    @field_validator("schema_version")
    @classmethod
    def _readable(cls, value: int) -> int:
        if value != cls.VERSION:
            raise ValueError(f"version {value} is not readable here; this reader reads version {cls.VERSION}")
        return value

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> Self:
        if raw is None:
            raise InvalidMessage(f"bad {cls.__name__}: empty message")
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors())
            raise InvalidMessage(f"bad {cls.__name__}: {reasons}") from None


class ModelUpdate(Message):
    """A champion change on `driftctl.model-updates`, keyed by model name. Every scorer and
    monitor reads all of them and swaps to the newest."""

    name: str
    version: int
    run_id: str
    reason: str = ""
    event_ids: tuple[str, ...] = ()
    decision_id: str | None = None
    previous_version: int | None = None
    promoted_at: float = Field(default_factory=time.time)
    rollback: bool = False
    # Labelled positions (the monitor's count) the new champion learned from: the retrain window's
    # newest rows (DriftSettings.candidate_windows may pick fewer than the window); None: unknown.
    trained_on: tuple[int, int] | None = None

    def to_json(self) -> bytes:
        # A promotion never carried the `rollback` key: it is written only when true, as before;
        # `trained_on` only when known.
        exclude = {k for k, absent in (("rollback", not self.rollback), ("trained_on", self.trained_on is None))
                   if absent}
        return self.model_dump_json(exclude=exclude or None).encode()


class DriftEvent(Message):
    """One detector firing, with the evidence needed to judge it later."""

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


class Action(str, Enum):
    RETRAIN = "retrain"
    ALERT = "alert"
    HOLD = "hold"


class Decision(Message):
    """What the policy decided about a signal, and why."""

    id: str = Field(default_factory=lambda: new_id("decision"))
    action: Action
    reason: str
    event_ids: tuple[str, ...] = ()
    # Labelled-record positions [start, end) the retrain should learn from.
    window: tuple[int, int] | None = None
    at: float = Field(default_factory=time.time)
    incident: str | None = None  # the drift this decision acts on; None for a bootstrap or a schedule
    # Candidate training windows, each the newest k rows of `window` (the first sets the holdout;
    # `training.evaluate.train_challenger`); empty: the whole window.
    candidates: tuple[int, ...] = ()
    # The challenger must beat the champion significantly on its holdout (McNemar at this z; a first
    # try on few rows, `DriftSettings.first_train_z`); None: the accuracy margin alone.
    promote_z: float | None = None


class RetrainTrigger(Message):
    """Why a retrain runs: the decision, its drift events and their evidence. The monitor and
    the scheduled flow build it; the retrain flow takes it as a parameter, also from the
    payload of a Prefect event."""

    decision_id: str = Field(default_factory=lambda: new_id("decision"))
    kind: str = "drift"  # "drift", "bootstrap" or "schedule"
    reason: str = ""
    event_ids: tuple[str, ...] = ()
    evidence: tuple[DriftEvent, ...] = ()
    incident: str | None = None  # the drift it acts on; None for a bootstrap or a schedule
    candidates: tuple[int, ...] = ()  # the decision's candidate windows (newest rows of the window)
    promote_z: float | None = None  # the decision's significance for promotion (McNemar z), if any
    provisional: bool = False  # a bootstrap's stand-in while the warmup's labels are late (drift.policy.Bootstrap)

    @property
    def first_event(self) -> str | None:
        return self.event_ids[0] if self.event_ids else None


class TrainingWindow(Message):
    """Where a retrain's labelled records live: offset ranges [start, end) per partition."""

    bootstrap_servers: str
    telemetry_topic: str
    labels_topic: str
    telemetry: dict[int, tuple[int, int]]
    labels: dict[int, tuple[int, int]]
    positions: tuple[int, int]  # labelled-record positions in the monitor's count
    first_ts: float | None = None
    last_ts: float | None = None

    @classmethod
    def from_positions(cls, rows: list[tuple], *, bootstrap_servers: str, telemetry_topic: str, labels_topic: str,
                       positions: tuple[int, int]) -> "TrainingWindow":
        """`rows`: one (telemetry partition, offset, label partition, offset, ts) per labelled
        record; the window covers each partition's smallest to largest offset."""
        if not rows:
            raise ValueError(f"no labelled records in positions {positions}")
        t_parts, t_offs, l_parts, l_offs, stamps = zip(*rows, strict=True)
        return cls.from_columns(t_parts, t_offs, l_parts, l_offs, stamps, bootstrap_servers=bootstrap_servers,
                                telemetry_topic=telemetry_topic, labels_topic=labels_topic, positions=positions)

    @classmethod
    def from_columns(cls, t_parts: Sequence[int], t_offs: Sequence[int], l_parts: Sequence[int],
                     l_offs: Sequence[int], stamps: Sequence[float], *, bootstrap_servers: str,
                     telemetry_topic: str, labels_topic: str, positions: tuple[int, int]) -> "TrainingWindow":
        """As `from_positions`, from its five columns: min and max in C, no tuple a record (the
        monitor makes one every `checkpoint_every` labelled records over `scheduled_rows` of them)."""
        if not len(stamps):
            raise ValueError(f"no labelled records in positions {positions}")
        return cls(bootstrap_servers=bootstrap_servers, telemetry_topic=telemetry_topic, labels_topic=labels_topic,
                   telemetry=_spans(t_parts, t_offs), labels=_spans(l_parts, l_offs), positions=positions,
                   first_ts=float(np.min(stamps)), last_ts=float(np.max(stamps)))

    def describe(self) -> str:
        def spans(ranges: dict[int, tuple[int, int]]) -> str:
            return ",".join(f"{p}:{s}-{e}" for p, (s, e) in sorted(ranges.items()))
        return f"{self.telemetry_topic}[{spans(self.telemetry)}]+{self.labels_topic}[{spans(self.labels)}]"


def _spans(partitions: Sequence[int], offsets: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Each partition's [smallest offset, largest + 1), in order of first appearance; by numpy's
    columns (a Python loop over 2,000 offsets a checkpoint was most of its cost)."""
    parts, offs = np.asarray(partitions, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
    found, first = np.unique(parts, return_index=True)
    spans = {}
    for partition in found[np.argsort(first)]:
        mine = offs[parts == partition]
        spans[int(partition)] = (int(mine.min()), int(mine.max()) + 1)
    return spans
