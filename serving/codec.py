"""The per-record messages on the wire (`Telemetry`, `Label`, `Prediction`, `DeadLetter` in
driftctl/messages.py): decoded with a reason for every rejection, encoded compactly. This is
their one serialize/parse pair, kept lean: the scorer runs it once per record."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import orjson

from driftctl.messages import RECORD_VERSION, DeadLetter, InvalidMessage, Label, Prediction, Telemetry

if TYPE_CHECKING:
    from training.datasets import FeatureSchema


class InvalidRecord(InvalidMessage):
    """A message that cannot be scored; its text is the reason sent to the dead-letter topic."""


def encode(value: Any) -> bytes:
    """Any JSON value as bytes; messages go through the typed encoders below."""
    return orjson.dumps(value)


# orjson: the hot path encodes one message per record; it is several times faster than json.
def encode_telemetry(record: Telemetry) -> bytes:
    return orjson.dumps(record)


def encode_label(label: Label) -> bytes:
    return orjson.dumps(label)


def encode_prediction(prediction: Prediction) -> bytes:
    return orjson.dumps(prediction)


def _decode_object(raw: bytes | None) -> Any:
    if raw is None:
        raise InvalidRecord("empty message")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = _decode_slowly(raw)
    if not isinstance(value, dict):
        raise InvalidRecord(f"not a JSON object but {type(value).__name__}")
    record_id = value.get("id")
    if not isinstance(record_id, str) or not record_id:
        raise InvalidRecord("no id: 'id' must be a non-empty string")
    ts = value.get("ts")
    if not _finite_number(ts):
        raise InvalidRecord("'ts' must be a finite number (epoch seconds)")
    # Writers leave the version out while it is 1, so the bytes stay what consumers know.
    version = value.get("schema_version", RECORD_VERSION)
    if version != RECORD_VERSION:
        raise InvalidRecord(f"schema_version {repr(version)[:40]} is not readable here; this reader reads "
                            f"{RECORD_VERSION}")
    return value


def _decode_slowly(raw: bytes) -> Any:
    """The standard parser accepts NaN and Infinity, which orjson refuses: parse them here
    so that the reason given is the real one (a value that is not finite)."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRecord(f"not JSON: {exc}") from None


def decode_telemetry(raw: bytes | None, max_bytes: int | None = None) -> Telemetry:
    if raw is not None and max_bytes is not None and len(raw) > max_bytes:
        raise InvalidRecord(f"oversized message: {len(raw)} bytes, limit {max_bytes}")
    value = _decode_object(raw)
    features = value.get("features")
    if not isinstance(features, dict) or not features:
        raise InvalidRecord("'features' must be a non-empty object")
    for name, feature in features.items():
        if feature is None or isinstance(feature, str):
            continue
        if isinstance(feature, bool) or not isinstance(feature, (int, float)):
            raise InvalidRecord(f"feature {name!r} has type {type(feature).__name__}; want number, string or null")
        if not math.isfinite(feature):
            raise InvalidRecord(f"feature {name!r} is not finite")
    return value


def decode_label(raw: bytes | None) -> Label:
    value = _decode_object(raw)
    if "label" not in value or value["label"] is None:
        raise InvalidRecord("no label")
    return value


def decode_prediction(raw: bytes | None) -> Prediction:
    value = _decode_object(raw)
    if "prediction" not in value:
        raise InvalidRecord("no prediction")
    model = value.get("model")
    version = model.get("version") if isinstance(model, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidRecord("'model' must be an object with an integer 'version'")
    return value


def check_features(features: dict[str, Any], schema: FeatureSchema, missing: str = "reject") -> dict[str, Any]:
    """Check a record's features against the champion's schema; returns them ready to score.

    An unexpected feature, a number where a category belongs (or the reverse) and an
    unseen category are always rejected: they mean a producer changed, which deserves a
    dead letter, not a guess. A missing feature (absent or null) is rejected, or passed
    on as null for the model's imputer when `missing` is "impute".
    """
    extra = [name for name in features if name not in schema.numeric and name not in schema.categorical]
    if extra:
        raise InvalidRecord(f"unexpected features: {', '.join(sorted(extra))}")
    checked: dict[str, Any] = {}
    for name in schema.numeric:
        value = features.get(name)
        if value is None:
            checked[name] = _missing(name, features, missing)
        elif isinstance(value, str):
            raise InvalidRecord(f"feature {name!r} should be a number, got string {value[:40]!r}")
        else:
            checked[name] = value
    for name, categories in schema.categorical.items():
        value = features.get(name)
        if value is None:
            checked[name] = _missing(name, features, missing)
        elif str(value) not in categories:
            raise InvalidRecord(f"unseen category {str(value)[:40]!r} for feature {name!r}")
        else:
            checked[name] = str(value)
    return checked


def _missing(name: str, features: dict[str, Any], policy: str) -> object:  # the imputer's value: None
    if policy == "impute":
        return None
    state = "null" if name in features else "absent"
    raise InvalidRecord(f"missing feature {name!r} ({state}; policy is reject)")


def dead_letter(error: str, topic: str, partition: int, offset: int, raw: bytes | None) -> bytes:
    text = raw.decode("utf-8", errors="replace") if raw is not None else None
    return orjson.dumps(DeadLetter(error=error, topic=topic, partition=partition, offset=offset, raw=text))


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
