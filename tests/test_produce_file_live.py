"""`driftctl produce FILE` on the live loop: a user's CSV (time order, Unicode categories,
booleans, missing values) bootstraps a champion in the monitor, and a scorer scores it.

Real processes on the real broker: the monitor, one scorer and the producer, as the README's
"Running the stages by hand" runs them.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
from driftctl.settings import Settings
from driftctl.stores.heartbeats import HealthStore
from driftctl.stores.ledger import Ledger
from tests.test_start_order import stage, stop_all, tail, wait_for

pytestmark = pytest.mark.integration
ROWS = 3_000


def user_file(path):
    """A loan-like table: shuffled times, a non-ASCII category, a boolean, missing values."""
    rng = np.random.default_rng(7)
    income = rng.normal(50, 15, ROWS)
    city = rng.choice(["Zürich", "東京", "São Paulo"], ROWS)
    insured = rng.random(ROWS) < 0.5
    default = ((income < 45) ^ (city == "東京")).astype(int)
    frame = pd.DataFrame({
        "applied": pd.date_range("2026-01-01", periods=ROWS, freq="min", tz="UTC").astype(str),
        "loan": [f"L-{i}" for i in range(ROWS)],
        "income": np.where(rng.random(ROWS) < 0.05, np.nan, income.round(2)),
        "city": city,
        "insured": insured,
        "branch": "main",
        "default": default,
    }).sample(frac=1.0, random_state=1)  # the file is out of order; --time-col puts it back
    frame.to_csv(path, index=False)


def test_a_users_file_bootstraps_a_champion_and_is_scored_on_the_live_loop(tmp_path):
    path = tmp_path / "loans.csv"
    user_file(path)
    home = tmp_path / "home"
    with EmbeddedBroker() as broker:
        env = {**os.environ, "DRIFTCTL_HOME": str(home), "DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
               "DRIFTCTL_DRIFT__WARMUP": "500", "DRIFTCTL_HEALTH__HEARTBEAT_INTERVAL": "0.5"}
        settings = Settings(home=home)
        ensure_topics(broker.bootstrap_servers, settings.kafka)
        procs = {
            "monitor": stage(["monitor"], env, tmp_path / "monitor.err"),
            "scorer": stage(["serve"], env, tmp_path / "scorer.err"),
            "producer": stage(["produce", str(path), "--target", "default", "--drop", "branch",
                               "--time-col", "applied", "--id-col", "loan", "--rate", "1000"],
                              env, tmp_path / "producer.err"),
        }

        def why() -> str:
            return "; ".join(f"{n} (exit {p.poll()}): {tail(p, 600)!r}" for n, p in procs.items())

        def promoted() -> bool:
            try:
                ledger = Ledger(settings.ledger_url)
                try:
                    return any(e.kind == "promotion" for e in ledger.entries(limit=100))
                finally:
                    ledger.close()
            except Exception:
                return False

        def scored_by_v1() -> bool:
            try:
                store = HealthStore(settings.ledger_url)
                try:
                    return any(b.stage == "scorer" and b.model_version == 1 and b.records > 0
                               for b in store.latest())
                finally:
                    store.close()
            except Exception:
                return False

        try:
            wait_for(lambda: procs["producer"].poll() is not None, 180, why)
            assert procs["producer"].returncode == 0, why()
            wait_for(promoted, 300, lambda: "a bootstrap promotion; " + why())
            wait_for(scored_by_v1, 120, lambda: "records scored by version 1; " + why())
            ledger = Ledger(settings.ledger_url)
            try:
                promotion = next(e for e in ledger.entries(limit=100) if e.kind == "promotion")
            finally:
                ledger.close()
            assert promotion.model_version == 1
        finally:
            stop_all(procs.values())
        for name in ("monitor", "scorer"):
            assert "Traceback" not in tail(procs[name], 100_000), f"{name}: {tail(procs[name])}"
