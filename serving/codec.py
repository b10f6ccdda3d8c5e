"""Message schemas on the topics: decode with a reason for every rejection, encode compactly."""

from __future__ import annotations

import json
import math
from typing import Any


class InvalidRecord(Exception):
    """A message that cannot be scored; its text is the reason sent to the dead-letter topic."""


def encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _decode_object(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise InvalidRecord("empty message")
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRecord(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRecord(f"not a JSON object but {type(value).__name__}")
    record_id = value.get("id")
    if not isinstance(record_id, str) or not record_id:
        raise InvalidRecord("no id: 'id' must be a non-empty string")
    ts = value.get("ts")
    if not _finite_number(ts):
        raise InvalidRecord("'ts' must be a finite number (epoch seconds)")
    return value


def decode_telemetry(raw: bytes | None) -> dict[str, Any]:
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


def decode_label(raw: bytes | None) -> dict[str, Any]:
    value = _decode_object(raw)
    if "label" not in value or value["label"] is None:
        raise InvalidRecord("no label")
    return value


def check_schema(features: dict[str, Any], expected: list[str]) -> None:
    """The champion's feature names must match exactly: a missing or unexpected feature
    means a producer changed its schema, which is worth a dead letter, not a guess."""
    missing = [name for name in expected if name not in features]
    extra = [name for name in features if name not in expected]
    if missing:
        raise InvalidRecord(f"missing features: {', '.join(missing)}")
    if extra:
        raise InvalidRecord(f"unexpected features: {', '.join(extra)}")


def dead_letter(error: str, topic: str, partition: int, offset: int, raw: bytes | None) -> bytes:
    text = raw.decode("utf-8", errors="replace") if raw is not None else None
    return encode({"error": error, "topic": topic, "partition": partition, "offset": offset, "raw": text})


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
