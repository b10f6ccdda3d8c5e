"""Round 8 (decgap): the bootstrap under late labels and the gated first try, checked on River streams that
are not in benchmarks/streams.py (none of them chose a constant). 10,000 records each, warmup 2,000, label
delays 0 and 500; the drift policy under each variant and static under each bootstrap.

    PYTHONPATH=. python benchmarks/heldout_decgap.py [--workers 2]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os

from river.datasets import synth

from benchmarks.streams import switch, take
from drift.backtest import Backtest
from driftctl.settings import DriftSettings

N, WARMUP = 10_000, 2_000
OLD: dict[str, object] = {"early_champion_rows": None}  # the bootstrap before this round


def _sine():
    return take(switch([(synth.Sine(classification_function=0, seed=21), 5_000),
                        (synth.Sine(classification_function=2, seed=22), 10 ** 9)]), N)


def _mixed():
    return take(switch([(synth.Mixed(classification_function=0, seed=23), 4_000),
                        (synth.Mixed(classification_function=1, seed=24), 10 ** 9)]), N)


def _led():
    return take(switch([(synth.LEDDrift(seed=25, noise_percentage=0.1, n_drift_features=0), 6_000),
                        (synth.LEDDrift(seed=26, noise_percentage=0.1, n_drift_features=7), 10 ** 9)]), N)


def _waveform():
    return take(synth.Waveform(seed=27), N)


def _agrawal():
    return take(switch([(synth.Agrawal(classification_function=3, seed=28, perturbation=0.05), 3_500),
                        (synth.Agrawal(classification_function=7, seed=29, perturbation=0.05), 10 ** 9)]), N)


def _sea():
    return take(synth.ConceptDriftStream(synth.SEA(variant=2, noise=0.1, seed=30),
                                         synth.SEA(variant=1, noise=0.1, seed=31),
                                         position=6_000, width=1_000, seed=32), N)


def _stagger():
    return take(switch([(synth.STAGGER(classification_function=1, seed=33), 3_000),
                        (synth.STAGGER(classification_function=0, seed=34), 10 ** 9)]), N)


def _friedman():  # a regression generator made a classification: y above its median
    rows = list(itertools.islice(synth.FriedmanDrift(drift_type="gra", position=(4_000, 7_000), seed=35), N))
    cut = sorted(y for _, y in rows)[N // 2]
    return take(((x, int(y > cut)) for x, y in rows), N)


STREAMS = {"Sine 0→2 @5k": _sine, "Mixed 0→1 @4k": _mixed, "LED 0→7 drifting features @6k": _led,
           "Waveform (stationary)": _waveform, "Agrawal 3→7 @3.5k": _agrawal, "SEA 2→1 gradual @6k": _sea,
           "STAGGER 1→0 @3k": _stagger, "Friedman gradual @4k-7k (y > median)": _friedman}
VARIANTS: dict[str, dict[str, object]] = {"old bootstrap": OLD, "new bootstrap (default)": {},
            "+first-gap": {"first_train_rows": 500, "first_train_gap": 0.10, "first_then_full": True}}


def run(job):
    name, delay, policy, variant = job
    if os.getpriority(os.PRIO_PROCESS, 0) < 10:
        os.nice(10 - os.getpriority(os.PRIO_PROCESS, 0))
    X, y = STREAMS[name]()
    X = X.astype({c: float for c in X.columns if X[c].dtype == bool})  # Mixed's booleans: numbers
    result = Backtest(X, y, policy=policy, settings=DriftSettings(**VARIANTS[variant]), warmup=WARMUP,
                      label_delay=delay).run()
    return job, result.accuracy, result.retrains


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--baselines", action="store_true", help="static, periodic at 500/1,250/2,500 labelled "
                        "records (the decision benchmark's periods at this length) and ARF, under the new bootstrap")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if args.baselines:
        return baselines(args.workers)
    jobs = [(s, d, "drift", v) for s in STREAMS for d in (0, 500) for v in variants]
    jobs += [(s, 500, "static", v) for s in STREAMS for v in variants[:2]]
    results = {}
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        for job, accuracy, retrains in pool.imap_unordered(run, jobs):
            results[job] = (accuracy, retrains)
            print(job, f"{accuracy:.4f} ({retrains})", flush=True)
    print()
    print("| stream | delay | policy | " + " | ".join(variants) + " |")
    print("| --- | ---: | --- |" + " ---: |" * len(variants))
    for s in STREAMS:
        for d, policy in ((0, "drift"), (500, "drift"), (500, "static")):
            cells = [results.get((s, d, policy, v)) for v in variants]
            print(f"| {s} | {d} | {policy} | " + " | ".join(f"{a:.4f} ({r})" if a is not None else "-"
                                                           for a, r in (c or (None, None) for c in cells)) + " |")


BASELINES = ("static", "periodic:500", "periodic:1250", "periodic:2500", "online:adaptive-random-forest-5")


def baselines(workers: int) -> None:
    jobs = [(s, d, policy, "new bootstrap (default)") for s in STREAMS for d in (0, 500) for policy in BASELINES]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for job, accuracy, retrains in pool.imap_unordered(run, jobs):
            print(job, f"{accuracy:.4f} ({retrains})", flush=True)


if __name__ == "__main__":
    main()
