"""The per-record messages on the wire (`Telemetry`, `Label`, `Prediction`, `DeadLetter` in
driftctl/messages.py): decoded with a reason for every rejection, encoded compactly. This is
their one serialize/parse pair, kept lean: the scorer runs it once per record."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import orjson

from driftctl.messages import RECORD_VERSION, InvalidMessage, Label, Prediction, Telemetry
from serving.deadletter import dead_letter as _bounded_dead_letter

MAX_LABEL_CHARS = 1000


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
        value = json.loads(raw)
    except RecursionError:
        raise InvalidRecord("not JSON: nested too deeply") from None
    except Exception as exc:  # any parser failure is a reason, never a crash
        raise InvalidRecord(f"not JSON: {type(exc).__name__}: {exc}") from None
    try:  # orjson refused it: a lone surrogate would break every encoder downstream
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRecord("text is not valid Unicode (a lone surrogate escape)") from None
    except Exception as exc:
        raise InvalidRecord(f"not JSON: {type(exc).__name__}") from None
    return value


def decode_telemetry(raw: bytes | None, max_bytes: int | None = None) -> Telemetry:
    if raw is not None and max_bytes is not None and len(raw) > max_bytes:
        raise InvalidRecord(f"oversized message: {len(raw)} bytes, limit {max_bytes}")
    value = _decode_object(raw)
    features = value.get("features")
    if not isinstance(features, dict) or not features:
        raise InvalidRecord("'features' must be a non-empty object")
    for name, feature in features.items():
        kind = type(feature)
        if kind is float:  # the common case first, with no further calls
            if not math.isfinite(feature):
                raise InvalidRecord(f"feature {name!r} is not finite (or too large for a float)")
            continue
        if feature is None or kind is str or isinstance(feature, str):
            continue
        if isinstance(feature, bool):  # a JSON boolean is a feature: 1 or 0, like a flag column
            features[name] = int(feature)
            continue
        if not isinstance(feature, (int, float)):
            raise InvalidRecord(f"feature {name!r} has type {type(feature).__name__}; "
                                "want number, string, boolean or null")
        if not _finite_number(feature):
            raise InvalidRecord(f"feature {name!r} is not finite (or too large for a float)")
    return value


def decode_label(raw: bytes | None) -> Label:
    try:  # the common label (as `_decode_object` and the checks below see it) in one pass
        value = _loads(raw)  # type: ignore[arg-type]
    except Exception:
        value = None
    if type(value) is dict:
        record_id, ts = value.get("id"), value.get("ts")
        label: Any = value.get("label")
        kind: type = type(label)
        if (type(record_id) is str and record_id
                and ((type(ts) is float and -_INF < ts < _INF) or (type(ts) is int and -_EXACT <= ts <= _EXACT))
                and value.get("schema_version", RECORD_VERSION) == RECORD_VERSION
                and ((kind is int and -_EXACT <= label <= _EXACT) or kind is bool
                     or (kind is str and len(label) <= MAX_LABEL_CHARS) or (kind is float and -_INF < label < _INF))):
            return value  # type: ignore[return-value]
    value = _decode_object(raw)
    label = value.get("label")
    if label is None:
        raise InvalidRecord("no label")
    if isinstance(label, bool):
        return value
    if not isinstance(label, (str, int, float)):
        raise InvalidRecord(f"label has type {type(label).__name__}; want string, number or boolean")
    if isinstance(label, str) and len(label) > MAX_LABEL_CHARS:
        raise InvalidRecord(f"label is {len(label)} characters long (limit {MAX_LABEL_CHARS})")
    if not isinstance(label, str) and not _finite_number(label):
        raise InvalidRecord("label is not finite (or too large for a float)")
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


def check_features(features: dict[str, Any], schema: FeatureSchema, missing: str = "reject", *,
                   unseen: str = "reject") -> dict[str, Any]:
    """Check a record's features against the champion's schema; returns them ready to score.

    An unexpected feature, a number where a category belongs (or the reverse) and an
    unseen category are always rejected: they mean a producer changed, which deserves a
    dead letter, not a guess. A missing feature (absent or null) is rejected, or passed
    on as null for the model's imputer when `missing` is "impute". With `unseen` "accept"
    only the shape is checked (the monitor and the training window: a new category is
    drift to detect and learn, not a malformed record).
    """
    numeric, names, categories_of = _compiled(schema)
    if not names.issuperset(features):
        extra = [name for name in features if name not in names]
        raise InvalidRecord(f"unexpected features: {', '.join(sorted(extra))}")
    checked: dict[str, Any] = {}
    for name in numeric:
        value = features.get(name)
        if value is None:
            checked[name] = _missing(name, features, missing)
        elif isinstance(value, str):
            raise InvalidRecord(f"feature {name!r} should be a number, got string {value[:40]!r}")
        else:
            checked[name] = value
    for name, categories in categories_of:
        value = features.get(name)
        if value is None:
            checked[name] = _missing(name, features, missing)
        elif unseen == "reject" and str(value) not in categories:
            raise InvalidRecord(f"unseen category {str(value)[:40]!r} for feature {name!r}")
        else:
            checked[name] = str(value)
    return checked


def decode_checked(raw: bytes | None, schema: FeatureSchema, missing: str = "reject", *, unseen: str = "reject",
                   max_bytes: int | None = None) -> tuple[Telemetry, dict[str, Any]]:
    """`decode_telemetry` then `check_features`, in one pass over the features when the record is
    the common kind (every feature of the schema there, numbers finite, categories known): the
    same record and checked features. Anything else takes the two steps, for the same reason."""
    if raw is not None and max_bytes is not None and len(raw) > max_bytes:
        raise InvalidRecord(f"oversized message: {len(raw)} bytes, limit {max_bytes}")
    # `_decode_object`'s checks inline for the common record (an id, a float or exact int ts, no other
    # version); anything else is decoded again there, for its reason.
    try:
        value = _loads(raw)  # type: ignore[arg-type]
    except Exception:
        value = None
    if type(value) is dict:
        record_id, ts = value.get("id"), value.get("ts")
        if not (type(record_id) is str and record_id
                and ((type(ts) is float and -_INF < ts < _INF) or (type(ts) is int and -_EXACT <= ts <= _EXACT))
                and value.get("schema_version", RECORD_VERSION) == RECORD_VERSION):
            value = _decode_object(raw)
    else:
        value = _decode_object(raw)
    features = value.get("features")
    numeric, names, categories_of = _compiled(schema)
    if type(features) is dict and features and len(features) == len(names):
        checked: dict[str, Any] | None = {}
        for name in numeric:
            number: Any = features.get(name)
            kind = type(number)
            # (an int beyond 2**53 takes the two steps: one past a float's range is refused there)
            if (kind is float and -_INF < number < _INF) or (kind is int and -_EXACT <= number <= _EXACT):
                checked[name] = number  # type: ignore[index]
            else:
                checked = None
                break
        if checked is not None:
            for name, categories in categories_of:
                category = features.get(name)
                if type(category) is str and (unseen != "reject" or category in categories):
                    checked[name] = category
                else:
                    checked = None
                    break
        if checked is not None and len(checked) == len(features):
            return value, checked
    # The uncommon record: both steps, each with its own reason.
    record = decode_telemetry(raw, max_bytes)
    return record, check_features(record["features"], schema, missing, unseen=unseen)


_INF, _EXACT = math.inf, 1 << 53
_loads = orjson.loads
_schemas: dict[int, tuple[FeatureSchema, tuple[str, ...], frozenset[str], tuple[tuple[str, frozenset[str]], ...]]] = {}


def _compiled(schema: FeatureSchema) -> tuple[tuple[str, ...], frozenset[str], tuple[tuple[str, frozenset[str]], ...]]:
    """The schema as sets, made once per schema object (a scorer checks every record against one; held
    here, so its id is not reused while cached)."""
    entry = _schemas.get(id(schema))
    if entry is None or entry[0] is not schema:
        if len(_schemas) > 32:
            _schemas.clear()
        entry = (schema, tuple(schema.numeric), frozenset(schema.numeric) | frozenset(schema.categorical),
                 tuple((name, frozenset(values)) for name, values in schema.categorical.items()))
        _schemas[id(schema)] = entry
    return entry[1:]


def _missing(name: str, features: dict[str, Any], policy: str) -> object:  # the imputer's value: None
    if policy == "impute":
        return None
    state = "null" if name in features else "absent"
    raise InvalidRecord(f"missing feature {name!r} ({state}; policy is reject)")


def dead_letter(error: str, topic: str, partition: int, offset: int, raw: bytes | None) -> bytes:
    """A bounded dead letter (excerpt, size, sha256): see `serving.deadletter`."""
    return _bounded_dead_letter(error, topic, partition, offset, raw)


def _finite_number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer of hundreds of digits
        return False
