"""Online learners: prequential accuracy against cost, on the decision benchmark's streams.

    PYTHONPATH=. python benchmarks/learners.py            # writes benchmarks/results/learners.md
    PYTHONPATH=. python benchmarks/learners.py --quick    # fewer records

Each learner scores every record (`predict_proba_one`, as the scorer does to serve or blend),
then learns it (label delay 0). Accuracy is over all records after the first 2,000; cost is
microseconds per record, prediction and learning together, one thread. The streams are those
of `benchmarks/streams.py` at 0.3 of their length (at least 6,000 records).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.streams import STREAMS
from driftctl.runtime.machine import describe as machine
from training.recipes import ONLINE_LEARNERS, make_online_learner

WARMUP = 2_000


def run_one(job):
    learner, stream_name, scale = job
    os.nice(10) if hasattr(os, "nice") and os.getpriority(os.PRIO_PROCESS, 0) < 10 else None
    stream = next(s for s in STREAMS if s.name == stream_name)
    X, y = stream.load(scale)
    records, labels = X.to_dict("records"), y.tolist()
    model = make_online_learner(0, learner)
    right = tested = 0
    started = time.perf_counter()
    for i, (x, label) in enumerate(zip(records, labels, strict=True)):
        proba = model.predict_proba_one(x)
        if i >= WARMUP:
            tested += 1
            right += bool(proba) and max(proba, key=proba.__getitem__) == label
        model.learn_one(x, label)
    seconds = time.perf_counter() - started
    return {"learner": learner, "stream": stream_name, "accuracy": right / tested,
            "us": seconds / len(records) * 1e6}


def render(rows, streams, learners, args, seconds) -> str:
    by = {(r["learner"], r["stream"]): r for r in rows}
    lines = ["# Online learners: accuracy against cost", "",
             f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
             f"- machine: {machine()} (when it started); 2 worker processes at nice 10",
             f"- command: `PYTHONPATH=. python benchmarks/learners.py{' --quick' if args.quick else ''}"
             f"{f' --learners {args.learners}' if args.learners else ''}`"
             f" - total {seconds / 60:.1f} min", "",
             __doc__.split("\n\n", 2)[2].strip(), "",
             "| learner | mean accuracy | mean rank | µs per record (median over streams) | records/s |"
             + "".join(f" {s} |" for s in streams),
             "| --- | ---: | ---: | ---: | ---: |" + " ---: |" * len(streams)]
    ranks: dict[str, list[float]] = {lr: [] for lr in learners}
    for s in streams:
        ordered = sorted(learners, key=lambda lr: -by[(lr, s)]["accuracy"])
        for k, lr in enumerate(ordered, 1):
            ranks[lr].append(k)
    for lr in learners:
        accs = [by[(lr, s)]["accuracy"] for s in streams]
        us = statistics.median(by[(lr, s)]["us"] for s in streams)
        lines.append(f"| {lr} | {statistics.mean(accs):.4f} | {statistics.mean(ranks[lr]):.1f} | {us:,.0f} | "
                     f"{1e6 / us:,.0f} |" + "".join(f" {a:.3f} |" for a in accs))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--learners", default="", help="comma-separated learners to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "learners.md")
    args = parser.parse_args()
    scale = 0.15 if args.quick else 0.3
    streams = [s.name for s in STREAMS if s.kind != "stationary"]
    learners = args.learners.split(",") if args.learners else list(ONLINE_LEARNERS)
    jobs = [(lr, s, scale) for s in streams for lr in learners]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        rows = []
        for row in pool.imap_unordered(run_one, jobs):
            rows.append(row)
            print(f"{row['learner']:>28} {row['stream']:<44} {row['accuracy']:.4f} {row['us']:7.0f} us", flush=True)
    text = render(rows, streams, learners, args, time.perf_counter() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
