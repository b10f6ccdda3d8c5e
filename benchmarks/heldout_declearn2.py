"""Round 9 (declearn2): online learners beside the champion, checked on River streams that are not in
benchmarks/streams.py (none of them chose a constant). 10,000 records each, warmup 2,000, label delays 0
and 500; the drift policy with each online learner, and each learner alone (`online:NAME`).

    PYTHONPATH=. python benchmarks/heldout_declearn2.py [--workers 2] [--learners a,b]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os

from river.datasets import synth

from benchmarks.heldout_decgap import STREAMS as DECGAP
from benchmarks.streams import switch, take
from drift.backtest import Backtest
from driftctl.settings import ServingSettings

N, WARMUP = 10_000, 2_000


def _hyperplane_fast():
    return take(synth.Hyperplane(seed=40, n_features=8, n_drift_features=4, mag_change=0.01,
                                 noise_percentage=0.05), N)


def _hyperplane_slow():
    return take(synth.Hyperplane(seed=41, n_features=6, n_drift_features=2, mag_change=0.0001,
                                 noise_percentage=0.1), N)


def _rbf_drift():
    return take(switch([(synth.RandomRBF(seed_model=42, seed_sample=43, n_features=6, n_centroids=30), 4_000),
                        (synth.RandomRBFDrift(seed_model=42, seed_sample=44, n_features=6, n_centroids=30,
                                              change_speed=0.003, n_drift_centroids=15), 10 ** 9)]), N)


def _rbf_drift_3():
    return take(synth.RandomRBFDrift(seed_model=45, seed_sample=46, n_classes=3, n_features=8, n_centroids=15,
                                     change_speed=0.0005, n_drift_centroids=15), N)


def _random_tree():
    return take(switch([(synth.RandomTree(seed_tree=47, seed_sample=48, n_num_features=6, n_cat_features=0,
                                          max_tree_depth=5), 5_000),
                        (synth.RandomTree(seed_tree=49, seed_sample=50, n_num_features=6, n_cat_features=0,
                                          max_tree_depth=5), 10 ** 9)]), N)


STREAMS = {**DECGAP, "Hyperplane mag 0.01": _hyperplane_fast, "Hyperplane mag 0.0001": _hyperplane_slow,
           "RandomRBF → RBFDrift (other seeds, 6 features) @4k": _rbf_drift,
           "RBFDrift 3 classes (slow)": _rbf_drift_3, "RandomTree 47→49 @5k": _random_tree}
LEARNERS = ("renewing-hoeffding-tree", "renewing-tree-linear", "renewing-quick-tree-linear",
            "renewing-quick-hoeffding-tree")


def run(job):
    name, delay, policy, learner = job
    if os.getpriority(os.PRIO_PROCESS, 0) < 10:
        os.nice(10 - os.getpriority(os.PRIO_PROCESS, 0))
    X, y = STREAMS[name]()
    X = X.astype({c: float for c in X.columns if X[c].dtype == bool})  # Mixed's booleans: numbers
    spec = policy if policy == "drift" else f"online:{learner}"
    result = Backtest(X, y, policy=spec, serving=ServingSettings(online_learner=learner), warmup=WARMUP,
                      label_delay=delay).run()
    return job, result.accuracy, result.retrains


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--learners", default=",".join(LEARNERS))
    parser.add_argument("--policies", default="drift,alone")
    args = parser.parse_args()
    learners, policies = args.learners.split(","), args.policies.split(",")
    jobs = [(s, d, p, lr) for d in (0, 500) for s in STREAMS for p in policies for lr in learners]
    results = {}
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        for job, accuracy, retrains in pool.imap_unordered(run, jobs):
            results[job] = (accuracy, retrains)
            print(job, f"{accuracy:.4f} ({retrains})", flush=True)
    print()
    print("| stream | delay | policy | " + " | ".join(learners) + " |")
    print("| --- | ---: | --- |" + " ---: |" * len(learners))
    for s in STREAMS:
        for d in (0, 500):
            for p in policies:
                cells = [results[(s, d, p, lr)] for lr in learners]
                print(f"| {s} | {d} | {p} | " + " | ".join(f"{a:.4f} ({r})" for a, r in cells) + " |")


if __name__ == "__main__":
    main()
