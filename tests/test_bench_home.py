"""Deliverable 6: `driftctl bench` runs in a temporary home: it never touches the user's
registry (MLflow store), ledger, heartbeats or audit log, even when they are configured."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])


def test_bench_settings_are_a_scratch_home(home, monkeypatch):
    from driftctl.app.bench import bench_home
    from driftctl.settings import Settings

    user_store = home.parent / "user-mlflow.db"
    monkeypatch.setenv("DRIFTCTL_MLFLOW__TRACKING_URI", f"sqlite:///{user_store}")
    monkeypatch.setenv("DRIFTCTL_LEDGER__URL", f"sqlite:///{home.parent / 'user-ledger.db'}")
    user = Settings()
    with bench_home(user) as scratch:
        assert scratch.home != user.home and scratch.home.exists()
        assert str(user_store) not in scratch.mlflow_uri and "user-ledger" not in scratch.ledger_url
        assert scratch.mlflow_uri.startswith(f"sqlite:///{scratch.home}")
        assert scratch.ledger_url.startswith(f"sqlite:///{scratch.home}")
        assert scratch.kafka == user.kafka and scratch.mlflow.model_name == user.mlflow.model_name
        with bench_home(scratch) as again:  # run_bench inside the CLI's scratch home: the same one
            assert again.home == scratch.home
        gone = scratch.home
    assert not gone.exists()


def test_bench_cli_leaves_the_user_home_untouched(home, tmp_path):
    user_store = tmp_path / "user-mlflow.db"
    env = {**os.environ, "PYTHONPATH": ROOT, "DRIFTCTL_MLFLOW__TRACKING_URI": f"sqlite:///{user_store}",
           "DRIFTCTL_LEDGER__URL": f"sqlite:///{tmp_path / 'user-ledger.db'}"}
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "driftctl", "bench", "--records", "1000", "--rate", "100",
                           "--sustained-seconds", "5", "--sustained-rate", "200",
                           "--json", str(out)], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["records"] == 1000 and result["pipeline_rps"] > 0
    whole = result["sustained"]  # producer, scorer, learner, monitor and audit together, briefly
    assert {"rate", "seconds", "max_lag", "lag_growth_per_s"} <= set(whole) and whole["rate"] == 200
    assert result["cpu_us_per_record"]["pipeline"] > 0 and result["cpu_ratio"] > 0
    assert whole["produced"] == 1000 and whole["scored"] > 0 and result["peak_rss_mb"] > 0
    assert not user_store.exists() and not (tmp_path / "user-ledger.db").exists()
    written = [p for p in home.rglob("*") if p.is_file()] if home.exists() else []
    assert not any(p.name in ("mlflow.db", "ledger.db", "audit.db") for p in written), written
