"""How fast `driftctl audit` answers, and how big the audit log is, after 10,000,000 records.

Run: PYTHONPATH=. python benchmarks/audit_lookup.py [RECORDS]
Writes benchmarks/results/audit_lookup.md.
"""

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from driftctl.messages import ModelLineage
from driftctl.runtime.machine import describe as describe_machine
from serving.audit import AuditLog

ROOT = Path(__file__).resolve().parents[1]


def main(records: int = 10_000_000, batch: int = 500) -> str:
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
    files = [*home.glob("audit.db*"), *home.glob("audit.idx/*")]
    size_mb = sum(f.stat().st_size for f in files if f.is_file()) / 2**20
    index_mb = sum(f.stat().st_size for f in home.glob("audit.idx/*")) / 2**20
    cli = []
    for probe in probes[:5]:  # the first reads the index from disk, the rest from the page cache
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "driftctl", "audit", probe, "--json", "--home", str(home)],
                              capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        cli.append(time.perf_counter() - started)
        assert done.returncode == 0, done.stderr
    started = time.perf_counter()
    version = subprocess.run([sys.executable, "-m", "driftctl", "--help"], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    help_seconds = time.perf_counter() - started
    assert version.returncode == 0, version.stderr
    shutil.rmtree(home)
    return (f"# Audit lookup after {records:,} records\n\n"
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {describe_machine()}\n\n"
            f"| measure | value |\n| --- | --- |\n"
            f"| records written | {records:,} in batches of {batch} |\n"
            f"| write cost | {write_seconds * 1e6 / records:.1f} us per record ({write_seconds:.1f} s) |\n"
            f"| audit log size, all of it | {size_mb:.1f} MB ({size_mb * 2**20 / records:.2f} bytes per record) |\n"
            f"| of which the id index (`audit.idx/`) | {index_mb:.1f} MB ({index_mb * 2**20 / records:.2f} bytes "
            f"per record) |\n"
            f"| lookup (library, mean of 1,000) | {lookup_ms:.3f} ms |\n"
            f"| `driftctl audit ID --json` (whole process; first, then max of next 4) | {cli[0]:.2f} s, "
            f"{max(cli[1:]):.2f} s |\n"
            f"| `driftctl --help` (the same process start, no lookup) | {help_seconds:.2f} s |\n")


if __name__ == "__main__":
    report = main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000)
    out = ROOT / "benchmarks" / "results" / "audit_lookup.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)
