"""What the operator's view costs: one heartbeat write (on a stage's own thread), and one
`collect_status` (what `status` and each console poll do) over a day of heartbeats.

    PYTHONPATH=. python benchmarks/health.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from driftctl.app.status import collect_status
from driftctl.runtime.machine import describe as describe_machine
from driftctl.settings import Settings
from driftctl.stores.heartbeats import HealthStore, Heartbeat


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    parser.add_argument("--day-rows", type=int, default=130_000, help="3 stages x 1 day at one beat per 2 s")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="driftctl-bench-health-"))
    settings = Settings(home=home)
    home.mkdir(parents=True, exist_ok=True)
    store = HealthStore.from_settings(settings)

    writes = []
    heart = Heartbeat(store, "scorer", interval=0.0, instance="bench")
    for i in range(300):
        started = time.perf_counter()
        heart.beat(records=i * 1000, dead_letters=0, model_version=1, extra={"index": i})
        writes.append(1000 * (time.perf_counter() - started))

    now = time.time()
    rows = [dict(at=now - 86_400 + 2 * (i // 3), stage=("producer", "scorer", "monitor")[i % 3], instance="day",
                 state="running", records=i, rps=1000.0, lag=5, lag_detail={"t[0]": 5}, group_id="g",
                 dead_letters=0, model_version=1, bootstrap="127.0.0.1:1", extra={}) for i in range(args.day_rows)]
    from driftctl.stores.heartbeats import heartbeats

    with store.engine.begin() as conn:
        conn.execute(heartbeats.insert(), rows)
    collect_status(settings)  # warm: imports, MLflow tables
    reads = []
    for _ in range(20):
        started = time.perf_counter()
        collect_status(settings)
        reads.append(1000 * (time.perf_counter() - started))
    result = {
        "heartbeat_write_p50_ms": round(statistics.median(writes), 2),
        "heartbeat_write_p99_ms": round(percentile(writes, 0.99), 2),
        "status_p50_ms": round(statistics.median(reads), 1),
        "status_p99_ms": round(percentile(reads, 0.99), 1),
        "heartbeat_rows": args.day_rows + len(writes),
        "machine": describe_machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": "SQLite ledger database in WAL mode; status includes the MLflow registry query",
    }
    print(f"{'measure':<26}{'value':>12}")
    for key, value in result.items():
        print(f"{key:<26}{value!s:>12}" if not isinstance(value, str) else f"{key:<26}{value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
