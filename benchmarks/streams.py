"""The public streams the decision and learner benchmarks replay: River's generators with
abrupt, gradual, incremental and recurring drifts at varied positions and seeds, covariate-only
shifts, stationary controls, River's bundled real data (Shuttle, Bananas) and Elec2 read from
`/work/shared/data/elec.csv` (never copied into the repository).

Each `Stream` builds its table on demand: `stream.load(scale)` -> (features, labels).
Drift positions are given for reading the results; the policies never see them.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from river import datasets
from river.datasets import synth

ELEC2 = Path("/work/shared/data/elec.csv")


def take(gen: Iterable[Any], n: int) -> tuple[pd.DataFrame, pd.Series]:
    xs, ys = [], []
    for x, y in itertools.islice(gen, n):
        xs.append(x)
        ys.append(int(y) if isinstance(y, (bool, np.bool_)) else y)
    frame = pd.DataFrame(xs)
    frame.columns = [str(c) for c in frame.columns]
    return frame, pd.Series(ys)


def switch(parts: list[tuple[Iterable[Any], int]]) -> Iterator[Any]:
    """Concept i for its count of records, then the next: abrupt (River's ConceptDriftStream
    overflows at width 1 far from the switch, so chain instead)."""
    return itertools.chain.from_iterable(itertools.islice(gen, count) for gen, count in parts)


def where(gen: Iterable[Any], keep: Callable[[dict[Any, Any]], bool]) -> Iterator[Any]:
    """Rejection sampling: P(x) changes, the labelling function (P(y|x)) does not."""
    return ((x, y) for x, y in gen if keep(x))


@dataclass
class Stream:
    name: str
    kind: str  # abrupt | gradual | incremental | recurring | covariate | stationary | real
    build: Callable[[float], tuple[pd.DataFrame, pd.Series]]
    drifts: list[int] = field(default_factory=list)  # known change points at scale 1 (empty: none known)
    note: str = ""

    @property
    def drifting(self) -> bool:
        return self.kind not in ("stationary",)

    def load(self, scale: float = 1.0) -> tuple[pd.DataFrame, pd.Series]:
        """The table at `scale`, cached under the temp dir (River's Agrawal takes ~10 s for 40,000)."""
        key = hashlib.sha1(f"{self.name}|{scale}".encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / "driftctl-streams" / f"{key}.pkl"
        if path.exists():
            return pd.read_pickle(path)
        table = self.build(scale)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        pd.to_pickle(table, partial)  # type: ignore[attr-defined]  # pandas-stubs lack the top-level function
        partial.replace(path)
        return table


def _n(k: int, scale: float) -> int:
    return int(k * scale)


def _sea_abrupt(s):
    return take(switch([(synth.SEA(variant=0, noise=0.1, seed=1), _n(15_000, s)),
                        (synth.SEA(variant=3, noise=0.1, seed=2), 10 ** 9)]), _n(40_000, s))


def _stagger_abrupt(s):
    return take(switch([(synth.STAGGER(classification_function=0, seed=3), _n(25_000, s)),
                        (synth.STAGGER(classification_function=2, seed=4), 10 ** 9)]), _n(40_000, s))


def _agrawal_abrupt(s):
    return take(switch([(synth.Agrawal(classification_function=1, seed=5, perturbation=0.05), _n(10_000, s)),
                        (synth.Agrawal(classification_function=4, seed=6, perturbation=0.05), 10 ** 9)]),
                _n(40_000, s))


def _sea_gradual(s):
    return take(synth.ConceptDriftStream(synth.SEA(variant=1, noise=0.1, seed=7),
                                         synth.SEA(variant=2, noise=0.1, seed=8),
                                         position=_n(20_000, s), width=_n(5_000, s), seed=9), _n(40_000, s))


def _agrawal_gradual(s):
    return take(synth.ConceptDriftStream(synth.Agrawal(classification_function=0, seed=10),
                                         synth.Agrawal(classification_function=2, seed=11),
                                         position=_n(20_000, s), width=_n(5_000, s), seed=12), _n(40_000, s))


def _hyperplane(s):
    return take(synth.Hyperplane(seed=13, n_features=10, n_drift_features=5, mag_change=0.001,
                                 noise_percentage=0.05), _n(40_000, s))


def _rbf_drift(s):
    return take(switch([(synth.RandomRBF(seed_model=14, seed_sample=15, n_features=10, n_centroids=20), _n(15_000, s)),
                        (synth.RandomRBFDrift(seed_model=14, seed_sample=16, n_features=10, n_centroids=20,
                                              change_speed=0.001, n_drift_centroids=20), 10 ** 9)]), _n(40_000, s))


def _sea_recurring(s):
    gens = {0: synth.SEA(variant=0, noise=0.1, seed=17), 3: synth.SEA(variant=3, noise=0.1, seed=18)}
    return take(switch([(gens[v], _n(10_000, s)) for v in (0, 3, 0, 3, 0)]), _n(50_000, s))


def _agrawal_recurring(s):
    gens = {f: synth.Agrawal(classification_function=f, seed=19 + f) for f in (0, 2, 5)}
    return take(switch([(gens[f], _n(10_000, s)) for f in (0, 2, 0, 5, 2)]), _n(50_000, s))


def _agrawal_covariate(s):
    # Age drawn from 20-50 first, then from 45-80: the labelling function is the same.
    g = synth.Agrawal(classification_function=2, seed=25)
    return take(switch([(where(g, lambda x: x["age"] < 50), _n(20_000, s)),
                        (where(g, lambda x: x["age"] >= 45), 10 ** 9)]), _n(40_000, s))


def _sea_covariate(s):
    g = synth.SEA(variant=1, noise=0.1, seed=26)
    return take(switch([(where(g, lambda x: x[0] < 6), _n(20_000, s)),
                        (where(g, lambda x: x[0] >= 4), 10 ** 9)]), _n(40_000, s))


def _sea_stationary(s):
    return take(synth.SEA(variant=0, noise=0.1, seed=31), _n(60_000, s))


def _agrawal_stationary(s):
    return take(synth.Agrawal(classification_function=0, perturbation=0.05, seed=32), _n(60_000, s))


def _rbf_stationary(s):
    return take(synth.RandomRBF(seed_model=33, seed_sample=34, n_features=10, n_centroids=20), _n(60_000, s))


def _elec2(s):
    frame = pd.read_csv(ELEC2)
    frame = frame.iloc[: max(_n(len(frame), s), 6_000)]
    return frame.drop(columns="class").reset_index(drop=True), frame["class"].astype(int).reset_index(drop=True)


def _bundled(dataset):
    def build(s):
        X, y = take(iter(dataset()), 10 ** 9)
        n = max(_n(len(X), s), min(len(X), 6_000))
        return X.iloc[:n].reset_index(drop=True), y.iloc[:n].reset_index(drop=True)
    return build


STREAMS = [
    Stream("SEA 0→3 abrupt @15k", "abrupt", _sea_abrupt, [15_000], "P(y|x) changes"),
    Stream("STAGGER 0→2 abrupt @25k", "abrupt", _stagger_abrupt, [25_000], "categorical features"),
    Stream("Agrawal 1→4 abrupt @10k", "abrupt", _agrawal_abrupt, [10_000], "perturbation 5%"),
    Stream("SEA 1→2 gradual @17.5k-22.5k", "gradual", _sea_gradual, [17_500], "ConceptDriftStream, width 5,000"),
    Stream("Agrawal 0→2 gradual @17.5k-22.5k", "gradual", _agrawal_gradual, [17_500],
           "ConceptDriftStream, width 5,000"),
    Stream("Hyperplane incremental", "incremental", _hyperplane, [0], "5 of 10 weights rotate all the time"),
    Stream("RandomRBF → RBFDrift @15k", "incremental", _rbf_drift, [15_000], "centroids start to move"),
    Stream("SEA 0/3 recurring every 10k", "recurring", _sea_recurring, [10_000, 20_000, 30_000, 40_000]),
    Stream("Agrawal 0/2/0/5/2 recurring every 10k", "recurring", _agrawal_recurring, [10_000, 20_000, 30_000, 40_000]),
    Stream("Agrawal age shift (covariate only) @20k", "covariate", _agrawal_covariate, [20_000],
           "P(x) moves, P(y|x) fixed"),
    Stream("SEA x0 shift (covariate only) @20k", "covariate", _sea_covariate, [20_000], "P(x) moves, P(y|x) fixed"),
    Stream("Elec2 (/work/shared/data)", "real", _elec2, [], "45,312 half-hours, NSW electricity"),
    Stream("Shuttle (River bundled)", "real", _bundled(datasets.Shuttle), [], "49,097 records, 2 classes"),
    Stream("Bananas (River bundled)", "real", _bundled(datasets.Bananas), [], "5,300 records"),
    Stream("SEA 0 stationary", "stationary", _sea_stationary),
    Stream("Agrawal 0 stationary", "stationary", _agrawal_stationary),
    Stream("RandomRBF stationary", "stationary", _rbf_stationary),
]
