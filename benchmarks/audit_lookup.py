"""How fast `driftctl audit` answers, and how big the audit log is, after 1,000,000 records.

Run: PYTHONPATH=. python benchmarks/audit_lookup.py [RECORDS]
Writes benchmarks/results/audit_lookup.md.
"""

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from driftctl.messages import ModelLineage
from driftctl.runtime.machine import describe as describe_machine
from serving.audit import AuditLog

ROOT = Path(__file__).resolve().parents[1]


def main(records: int = 1_000_000, batch: int = 500) -> str:
    home = Path(tempfile.mkdtemp(prefix="driftctl-audit-"))
    log = AuditLog(home / "audit.db")
    model: ModelLineage = {"name": "m", "version": 1, "run_id": "r" * 32}
    started = time.perf_counter()
    for start in range(0, records, batch):
        ids = [f"rec-{i:09d}" for i in range(start, start + batch)]
        log.record(scorer="bench", topic="t", partition=start // batch % 3, offsets=list(range(start, start + batch)),
                   ids=ids, model={**model, "version": 1 + start * 3 // records}, n_learned=start)
    write_seconds = time.perf_counter() - started
    probes = [f"rec-{random.randrange(records):09d}" for _ in range(1000)]
    started = time.perf_counter()
    for record_id in probes:
        assert log.lookup(record_id) is not None
    lookup_ms = (time.perf_counter() - started) * 1000 / len(probes)
    log.close()
    size_mb = sum(f.stat().st_size for f in home.glob("audit.db*")) / 2**20
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "driftctl", "audit", probes[0], "--json", "--home", str(home)],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    cli_seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    return (f"# Audit lookup after {records:,} records\n\n"
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {describe_machine()}\n\n"
            f"| measure | value |\n| --- | --- |\n"
            f"| records written | {records:,} in batches of {batch} |\n"
            f"| write cost | {write_seconds * 1e6 / records:.1f} us per record ({write_seconds:.1f} s) |\n"
            f"| audit log size | {size_mb:.1f} MB ({size_mb * 2**20 / records:.0f} bytes per record) |\n"
            f"| lookup (library, mean of 1,000) | {lookup_ms:.3f} ms |\n"
            f"| `driftctl audit ID --json` (whole process) | {cli_seconds:.2f} s |\n")


if __name__ == "__main__":
    report = main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
    out = ROOT / "benchmarks" / "results" / "audit_lookup.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)
