"""Bad inputs every stage must survive: each becomes a dead letter with a reason, and the
stage goes on. One entry per kind; `reason` is a fragment of the dead letter's `error`.

The good records beside them (`good_features`) carry the features of the synthetic IoT
stream plus a JSON boolean (`alarm`), so a boolean feature is exercised on the happy path.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass

TELEMETRY, LABELS = "telemetry", "labels"


@dataclass(frozen=True)
class BadInput:
    kind: str
    topic: str  # TELEMETRY or LABELS
    raw: bytes | None
    reason: str  # expected in the dead letter's error


def good_features(seq: int = 0) -> dict:
    return {"vibration": 1.5, "pressure": 97.0, "temperature": 20.0, "humidity": 45.0,
            "firmware": "4.2.0", "alarm": seq % 7 == 0}


def _telemetry(record_id: str, features: dict | None = None, **fields) -> bytes:
    value = {"id": record_id, "ts": 1.0, "features": good_features() if features is None else features, **fields}
    return json.dumps(value).encode()


def _with(record_id: str, **changes) -> bytes:
    return _telemetry(record_id, {**good_features(), **changes})


def _label(record_id: str, label_json: bytes) -> bytes:
    return b'{"id": "' + record_id.encode() + b'", "ts": 1.0, "label": ' + label_json + b"}"


def _features_json(record_id: str, features_json: bytes) -> bytes:
    return b'{"id": "' + record_id.encode() + b'", "ts": 1.0, "features": ' + features_json + b"}"


DEEP = b"[" * 5000 + b"]" * 5000
HUGE_INT = b"9" * 400


def bad_inputs(oversized_bytes: int = 2 * 1024 * 1024) -> list[BadInput]:
    base = json.dumps(good_features())[1:-1].encode()  # the good features, without braces
    bad = [
        BadInput("not JSON", TELEMETRY, b"{definitely not json", "not JSON"),
        BadInput("truncated JSON", TELEMETRY, _telemetry("bad-trunc")[:-7], "not JSON"),
        BadInput("invalid UTF-8 bytes", TELEMETRY, b"\xff\xfe\xfd{}", "not JSON"),
        BadInput("empty bytes", TELEMETRY, b"", "not JSON"),
        BadInput("null value (tombstone)", TELEMETRY, None, "empty message"),
        BadInput("JSON array", TELEMETRY, b"[1, 2, 3]", "not a JSON object"),
        BadInput("JSON string", TELEMETRY, b'"hello"', "not a JSON object"),
        BadInput("JSON number", TELEMETRY, b"42", "not a JSON object"),
        BadInput("no id", TELEMETRY, json.dumps({"ts": 1.0, "features": good_features()}).encode(), "no id"),
        BadInput("empty id", TELEMETRY, _telemetry(""), "no id"),
        BadInput("numeric id", TELEMETRY, json.dumps({"id": 7, "ts": 1.0, "features": good_features()}).encode(),
                 "no id"),
        BadInput("ts a string", TELEMETRY, _telemetry("bad-ts", ts="yesterday"), "'ts'"),
        BadInput("ts NaN", TELEMETRY, b'{"id": "bad-tsnan", "ts": NaN, "features": {' + base + b"}}", "'ts'"),
        BadInput("ts a 400-digit integer", TELEMETRY,
                 b'{"id": "bad-tsbig", "ts": ' + HUGE_INT + b', "features": {' + base + b"}}", "'ts'"),
        BadInput("no features", TELEMETRY, json.dumps({"id": "bad-nofeat", "ts": 1.0}).encode(), "'features'"),
        BadInput("empty features", TELEMETRY, _telemetry("bad-emptyfeat", {}), "'features'"),
        BadInput("features a list", TELEMETRY, _features_json("bad-featlist", b"[1, 2]"), "'features'"),
        BadInput("feature a list", TELEMETRY, _with("bad-list", humidity=[1, 2]), "has type list"),
        BadInput("feature an object", TELEMETRY, _with("bad-obj", humidity={"v": 1}), "has type dict"),
        BadInput("feature NaN", TELEMETRY, _features_json("bad-nan", b'{"vibration": NaN}'), "not finite"),
        BadInput("feature Infinity", TELEMETRY, _features_json("bad-inf", b'{"vibration": -Infinity}'), "not finite"),
        BadInput("feature a 400-digit integer", TELEMETRY,
                 _features_json("bad-bigint", b'{' + base + b', "vibration": ' + HUGE_INT + b"}"), "not finite"),
        BadInput("deeply nested arrays", TELEMETRY, _features_json("bad-deep", b'{"vibration": ' + DEEP + b"}"),
                 "nested too deeply"),
        BadInput("lone surrogate in the id", TELEMETRY,
                 b'{"id": "bad-\\ud800", "ts": 1.0, "features": {' + base + b"}}", "lone surrogate"),
        BadInput("lone surrogate in a feature name", TELEMETRY,
                 _features_json("bad-surname", b'{' + base + b', "x\\udc00y": 1}'), "lone surrogate"),
        BadInput("unexpected feature", TELEMETRY, _with("bad-extra", voltage=3.3), "unexpected features: voltage"),
        BadInput("missing feature", TELEMETRY,
                 _telemetry("bad-missing", {k: v for k, v in good_features().items() if k != "pressure"}),
                 "missing feature 'pressure'"),
        BadInput("string where a number belongs", TELEMETRY, _with("bad-str", vibration="high"),
                 "should be a number"),
        BadInput("unseen category", TELEMETRY, _with("bad-cat", firmware="9.9.9"), "unseen category"),
        BadInput("non-ASCII unseen category", TELEMETRY, _with("bad-cat2", firmware="ファームウェア"),
                 "unseen category"),
        BadInput("oversized record (2 MiB)", TELEMETRY, _with("bad-big", firmware="x" * oversized_bytes),
                 "oversized message"),
        # Random text compresses little: even in a compressed batch it is over the consumers'
        # fetch size (4 MiB), which must not block the partition behind it.
        BadInput("record over the fetch size (6 MiB)", TELEMETRY,
                 _with("bad-huge", firmware=base64.b64encode(random.Random(11).randbytes(4_718_592)).decode()),
                 "oversized message"),
        BadInput("label an object", LABELS, _label("bad-lobj", b'{"class": 1}'), "label has type dict"),
        BadInput("label a list", LABELS, _label("bad-llist", b"[0, 1]"), "label has type list"),
        BadInput("label null", LABELS, _label("bad-lnull", b"null"), "no label"),
        BadInput("label a 400-digit integer", LABELS, _label("bad-lbig", HUGE_INT), "label is not finite"),
        BadInput("label deeply nested", LABELS, _label("bad-ldeep", DEEP), "nested too deeply"),
        BadInput("label not JSON", LABELS, b"label: 1", "not JSON"),
    ]
    assert len({b.raw for b in bad}) == len(bad), "every raw input is distinct (dead letters are matched by hash)"
    return bad
