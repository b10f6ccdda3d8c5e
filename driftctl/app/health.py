"""The health rules `status` and `console` judge stages by, from their heartbeats and the ledger."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from driftctl.stores.heartbeats import Beat

if TYPE_CHECKING:
    from driftctl.settings import HealthSettings
    from driftctl.stores.ledger import Entry

HEALTHY, WARNING, CRITICAL, UNKNOWN = "healthy", "warning", "critical", "unknown"
_SEVERITY = {HEALTHY: 0, UNKNOWN: 1, WARNING: 2, CRITICAL: 3}


@dataclass
class StageHealth:
    stage: str
    instance: str
    health: str
    reason: str
    records: int | None = None
    rps: float | None = None
    lag: int | None = None
    lag_detail: dict[str, int] = field(default_factory=dict)
    group_id: str | None = None
    dead_letters: int | None = None
    model_version: int | None = None
    last_heartbeat: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def worst(healths: Iterable[str]) -> str:
    """The overall health: critical > warning > unknown > healthy; nothing known: unknown.

    >>> worst(["healthy", "warning"]), worst(["healthy", "unknown"]), worst([])
    ('warning', 'unknown', 'unknown')
    """
    healths = list(healths)
    return max(healths, key=_SEVERITY.__getitem__) if healths else UNKNOWN


def assess_stage(latest: Beat, recent: list[Beat], *, now: float, rules: HealthSettings,
                 broker_reachable: bool | None) -> StageHealth:
    """One stage instance's health from its newest heartbeat and those of the last `rules.lag_window` s."""
    result = StageHealth(stage=latest.stage, instance=latest.instance, health=HEALTHY, reason="",
                         records=latest.records, rps=latest.rps, lag=latest.lag, lag_detail=latest.lag_detail or {},
                         group_id=latest.group_id, dead_letters=latest.dead_letters,
                         model_version=latest.model_version, last_heartbeat=latest.at)
    age = max(0.0, now - latest.at)
    if latest.state == "stopped":
        result.health, result.reason = UNKNOWN, f"stopped {age:.0f} s ago"
        result.rps = 0.0
        return result
    if broker_reachable is False:
        result.health = UNKNOWN
        result.reason = f"broker {latest.bootstrap} unreachable; last heartbeat {age:.0f} s ago"
        return result
    if age > rules.stale_after:
        result.health, result.reason = CRITICAL, f"no heartbeat for {age:.0f} s (limit {rules.stale_after:g} s)"
        return result
    window = [b for b in recent if b.instance == latest.instance and b.at >= now - rules.lag_window] or [latest]
    first, last = window[0], window[-1]
    lags = [b.lag for b in window if b.lag is not None]
    if (len(lags) >= 3 and lags[-1] >= rules.lag_warning and lags[-1] > lags[0]
            and all(b >= a for a, b in pairwise(lags))):
        result.health = WARNING
        result.reason = f"lag growing: {lags[0]:,} -> {lags[-1]:,} records in {last.at - first.at:.0f} s"
        return result
    dead = last.dead_letters - first.dead_letters if len(window) > 1 else last.dead_letters
    seen = (last.records - first.records if len(window) > 1 else last.records) + dead
    every_invalid = _every_record_invalid(first, last, len(window) > 1)
    if every_invalid:
        result.health, result.reason = CRITICAL, every_invalid
        return result
    if seen > 0 and dead / seen > rules.dead_letter_rate:
        result.health = WARNING
        result.reason = f"dead letters: {dead / seen:.1%} of records (limit {rules.dead_letter_rate:.1%})"
        return result
    faults = _store_faults(first, last, len(window) > 1)
    if faults:
        result.health, result.reason = WARNING, faults
        return result
    lag_text = f", lag {latest.lag:,}" if latest.lag is not None else ""
    result.reason = f"{latest.rps:,.0f} records/s{lag_text}"
    return result


def _store_faults(first: Beat, last: Beat, windowed: bool) -> str | None:
    """A stage whose own stores failed within the window (ledger's database locked or full, MLflow
    away, audit or checkpoint not written): it goes on scoring, and says so with the last fault.

    >>> def beat(faults): return Beat(0, "scorer", "s", "running", 0, 0, None, {}, None, 0, 1, None,
    ...                               {"faults": faults, "last_fault": "audit not written: disk full"})
    >>> _store_faults(beat(2), beat(5), True)
    'store faults: 3 in the window; last: audit not written: disk full'
    >>> _store_faults(beat(5), beat(5), True) is None
    True
    """
    extra = last.extra or {}
    now_faults = int(extra.get("faults") or 0)
    then = int((first.extra or {}).get("faults") or 0) if windowed else 0
    if now_faults <= then:
        return None
    return f"store faults: {now_faults - then} in the window; last: {extra.get('last_fault')}"


def _every_record_invalid(first: Beat, last: Beat, windowed: bool) -> str | None:
    """When a stage rejects every record it reads, say so with the last reason: nothing is
    being scored or learned, and a dead-letter *rate* alone does not tell why."""
    extra = last.extra or {}
    rejected_now = max(last.dead_letters, int(extra.get("rejected") or 0))
    rejected_then = max(first.dead_letters, int((first.extra or {}).get("rejected") or 0)) if windowed else 0
    accepted = last.records - first.records if windowed else last.records
    rejected = rejected_now - rejected_then
    if rejected <= 0 or accepted > 0:
        return None
    why = extra.get("last_rejection") or "see the dead-letter topic"
    return f"every record invalid: {rejected:,} rejected, none accepted; last reason: {why}"


def assess_retrains(entries: Sequence[Entry], *, now: float, rules: HealthSettings) -> StageHealth | None:
    """The retrain flows' health from the ledger: a recent failure not followed by a success warns.

    `entries` are ledger entries newest first (any kinds)."""
    flows = [e for e in entries if e.kind in ("failure", "promotion", "rejection")]
    if not flows:
        return None
    last = flows[0]
    result = StageHealth(stage="retrain", instance="prefect", health=HEALTHY, reason="", last_heartbeat=last.at)
    if last.kind == "failure" and now - last.at <= rules.failure_window:
        result.health = WARNING
        result.reason = f"last retrain failed {now - last.at:.0f} s ago: {last.reason}"
    elif last.kind == "failure":
        result.health, result.reason = UNKNOWN, f"last retrain failed {now - last.at:.0f} s ago"
    elif last.kind == "promotion":
        result.reason = f"promoted version {last.model_version} {now - last.at:.0f} s ago"
        result.model_version = last.model_version
    else:
        result.reason = f"challenger rejected {now - last.at:.0f} s ago: {last.reason}"
    return result


def broker_reachable(bootstrap: str | None, timeout: float = 0.5) -> bool | None:
    """Whether any bootstrap server accepts a TCP connection; None when none is known."""
    if not bootstrap:
        return None
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host or "localhost", int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False


def broker_answers(bootstrap: str | None, timeout: float = 1.0, tls: bool = False) -> tuple[bool | None, str | None]:
    """Whether any bootstrap server answers a Kafka request (ApiVersions v0, allowed before any
    authentication) within `timeout` s in all, and if not, why. A server that accepts the
    connection and never answers (a hung broker, or not a broker) is not reachable. Over TLS
    only the TCP connection is tried. (None, reason) when no bootstrap server is known."""
    if not bootstrap:
        return None, "no bootstrap servers configured and no stage heartbeat names one"
    deadline = time.monotonic() + timeout
    reasons = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        left = deadline - time.monotonic()
        if left <= 0:
            reasons.append(f"{server.strip()}: not tried within {timeout:g} s")
            continue
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=left) as sock:
                if tls:
                    return True, None
                client = b"driftctl-status"
                body = struct.pack(">hhih", 18, 0, 0x0D71F7, len(client)) + client
                sock.settimeout(max(deadline - time.monotonic(), 0.05))
                sock.sendall(struct.pack(">i", len(body)) + body)
                head = _read(sock, 8)
                if struct.unpack(">ii", head)[1] == 0x0D71F7:
                    return True, None
                reasons.append(f"{server.strip()}: answered, but not as a Kafka broker")
        except TimeoutError:
            reasons.append(f"{server.strip()}: no answer to a Kafka request within {timeout:g} s")
        except ConnectionRefusedError:
            reasons.append(f"{server.strip()}: connection refused")
        except (OSError, ValueError, struct.error) as exc:
            reasons.append(f"{server.strip()}: {exc or type(exc).__name__}")
    return False, "; ".join(reasons)


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed the connection without answering")
        data += chunk
    return data
