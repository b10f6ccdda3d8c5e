"""Dead letters that can always be written: a bounded excerpt of the raw bytes with their
size and sha256, and a reason that is always valid UTF-8.

A dead letter must never fail where the message it reports failed: it never carries the
whole of an oversized message (the producer refuses anything over `max_request_size`), and
a lone surrogate in a reason (a feature name, an id) is escaped, not passed to the encoder.

>>> import json
>>> letter = json.loads(dead_letter("bad \\ud800 name", "t", 0, 7, b"x" * 5000, excerpt_bytes=8))
>>> letter["raw"], letter["size"], letter["truncated"], letter["error"]
('xxxxxxxx', 5000, True, 'bad \\\\ud800 name')
>>> json.loads(dead_letter("empty", "t", 1, 2, None))["raw"] is None
True
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

EXCERPT_BYTES = 1024
REASON_CHARS = 1000


def safe_text(text: Any, limit: int = REASON_CHARS) -> str:
    """`text` as a string that any UTF-8 encoder accepts (lone surrogates escaped), at most `limit` chars."""
    text = text if isinstance(text, str) else repr(text)
    if len(text) > limit:
        text = text[:limit] + f"... ({len(text) - limit} more chars)"
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8")


def reason_of(exc: BaseException) -> str:
    """A one-line reason for any exception: expected rejections keep their text, anything
    else is named by its type, so an unforeseen failure is still a readable dead letter."""
    from serving.codec import InvalidRecord

    if isinstance(exc, InvalidRecord):
        return safe_text(str(exc))
    return safe_text(f"unexpected {type(exc).__name__}: {exc}")


def dead_letter(error: str, topic: str, partition: int, offset: int, raw: bytes | None, *,
                stage: str | None = None, excerpt_bytes: int = EXCERPT_BYTES) -> bytes:
    """The dead-letter value: reason, where the message was, and a bounded excerpt of it."""
    value: dict[str, Any] = {"error": safe_text(error), "topic": safe_text(topic), "partition": partition,
                             "offset": offset, "raw": None, "size": None, "sha256": None, "truncated": False}
    if stage is not None:
        value["stage"] = safe_text(stage)
    if raw is not None:
        raw = bytes(raw)
        value.update(raw=raw[:excerpt_bytes].decode("utf-8", errors="replace"), size=len(raw),
                     sha256=hashlib.sha256(raw).hexdigest(), truncated=len(raw) > excerpt_bytes)
    return orjson.dumps(value)
