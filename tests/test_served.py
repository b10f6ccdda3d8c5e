"""The served stack end to end: `driftctl up`, a drifting stream from `driftctl produce`, one
retrain run of the `retrain-on-drift` deployment started by the `driftctl.drift.detected`
event, the scorer serving the new version, the nightly deployment run at once, `driftctl
down` leaving nothing running. Screenshots of the Prefect flow-run page and the MLflow
version page from headless Chromium, each checked for the run name or the version's tags.

One stack for the module (it takes a minute or two to answer on a busy machine).
Set SAVE_SCREENS=DIR to copy the screenshots there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.browser import screenshots

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
MODEL = "driftctl-classifier"
# Small windows so that the loop turns in minutes, not the demo's 30,000 records.
TUNING = {"DRIFTCTL_DRIFT__WARMUP": "1000", "DRIFTCTL_DRIFT__MIN_TRAIN_ROWS": "1000",
          "DRIFTCTL_RETRAIN__SCHEDULED_ROWS": "1000", "DRIFTCTL_RETRAIN__CHECKPOINT_EVERY": "500",
          "DRIFTCTL_EVIDENTLY__SNAPSHOT_INTERVAL": "5",
          # This test is about the served path: one bootstrap fit and one drift retrain, each a deployment run
          # (the provisional champion and the first try, on by default, would make two of each).
          "DRIFTCTL_DRIFT__EARLY_CHAMPION_ROWS": "null", "DRIFTCTL_DRIFT__FIRST_TRAIN_ROWS": "null"}


# The nightly schedule half a day away, so that it never fires during the test (prefect.yaml's
# 02:00 UTC once replaced a drift retrain in CI), and the override is checked below.
NIGHTLY_HOUR = (datetime.now(UTC).hour + 12) % 24


def _env(home: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTCTL_", "PREFECT_", "MLFLOW_"))}
    return {**base, **TUNING, "PYTHONPATH": str(ROOT), "DRIFTCTL_HOME": str(home),
            "DRIFTCTL_RETRAIN__NIGHTLY_CRON": f"0 {NIGHTLY_HOUR} * * *"}


def _cli(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "driftctl", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=timeout)


def _alive(pid: int, started: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] not in ("Z", "X") and int(fields[19]) == started  # a zombie has exited


class Served:
    def __init__(self, home: Path, env: dict, addresses: dict, up_seconds: float, shots: Path):
        self.home, self.env, self.addresses, self.up_seconds, self.shots = home, env, addresses, up_seconds, shots
        self.api = addresses["prefect_api_url"]

    def post(self, path: str, body: dict) -> list | dict:
        response = httpx.post(f"{self.api}{path}", json=body, timeout=20)
        response.raise_for_status()
        return response.json()

    def deployment_id(self, name: str) -> str:
        return next(d["id"] for d in self.post("/deployments/filter", {}) if d["name"] == name)

    def runs(self, deployment: str) -> list[dict]:
        wanted = {"deployment_id": {"any_": [self.deployment_id(deployment)]}}
        return self.post("/flow_runs/filter", {"flow_runs": wanted})

    def ledger(self):
        from driftctl.stores.ledger import Ledger

        return Ledger(f"sqlite:///{self.home / 'ledger.db'}")


def _down_if_pytest_dies(env: dict) -> subprocess.Popen:
    """`driftctl up` detaches its stack (it outlives the CLI by design), so a pytest killed outright would
    leave it running: a watchdog in its own session runs `driftctl down` when pytest's end of its pipe closes."""
    script = ("import subprocess, sys; sys.stdin.read(); "
              "subprocess.run([sys.executable, '-m', 'driftctl', 'down'], timeout=120)")
    return subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("served")
    home = tmp / "home"
    env = _env(home)
    watchdog = _down_if_pytest_dies(env)
    started = time.monotonic()
    up = _cli(env, "up", "--any-port", "--json", timeout=600)
    up_seconds = time.monotonic() - started
    state = home / "stack.json"
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        addresses = json.loads(up.stdout)
        assert set(addresses) == {"bootstrap_servers", "prefect_api_url", "prefect_ui", "mlflow_ui", "evidently_ui",
                                  "console"}
        yield Served(home, {**env, "DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS": addresses["bootstrap_servers"]}, addresses,
                     up_seconds, tmp)
    finally:
        parts = json.loads(state.read_text())["parts"] if state.exists() else []
        watchdog.kill()
        watchdog.wait()
        down = _cli(env, "down", "--json", timeout=120)
        assert down.returncode == 0, down.stderr[-2000:]
        left = [p["name"] for p in parts if _alive(p["pid"], p["started"])]
        assert not left, f"still running after down: {left}"
        assert not state.exists()


def _wait(what: str, ready, timeout: float, served: Served, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        found = ready()
        if found:
            return found
        if time.monotonic() > deadline:
            logs = served.home / "logs"
            tails = {name: (logs / f"{name}.log").read_text(errors="replace")[-1500:]
                     for name in ("monitor", "worker", "scorer") if (logs / f"{name}.log").exists()}
            pytest.fail(f"{what} not within {timeout:.0f} s; logs: {json.dumps(tails, indent=1)}")
        time.sleep(every)


def test_every_part_answers_at_its_address(served):
    a = served.addresses
    for url in (f"{served.api}/health", f"{a['mlflow_ui']}/health", f"{a['evidently_ui']}/api/version", a["console"],
                a["prefect_ui"]):
        assert httpx.get(url, timeout=10).status_code == 200, url
    names = {d["name"] for d in served.post("/deployments/filter", {})}
    assert names == {"retrain-on-drift", "retrain-nightly"}
    pool = httpx.get(f"{served.api}/work_pools/driftctl-process", timeout=10).json()
    assert pool["status"] == "READY"
    # One upcoming nightly run in the list, not three, at the hour the setting gave.
    scheduled = [r for r in served.runs("retrain-nightly") if r["state_type"] == "SCHEDULED"]
    assert len(scheduled) <= 1, [r["expected_start_time"] for r in scheduled]
    for run in scheduled:
        assert datetime.fromisoformat(run["expected_start_time"]).hour == NIGHTLY_HOUR, run["expected_start_time"]
    print(f"up answered in {served.up_seconds:.1f} s")


def test_a_drifting_stream_retrains_once_through_the_deployment_and_serves_the_new_version(served):
    producer = subprocess.Popen([sys.executable, "-m", "driftctl", "produce", "iot", "--records", "400000",
                                 "--drift-at", "3000", "--rate", "300"], env=served.env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    try:
        def promoted_two():
            ledger = served.ledger()
            try:
                return [e for e in ledger.entries("promotion") if e.model_version == 2]
            finally:
                ledger.close()

        promotion = _wait("a promotion of version 2", promoted_two, 900, served)[0]
        assert promotion.payload["trigger"]["kind"] == "drift", promotion.payload["trigger"]

        def serving_two():
            from driftctl.stores.heartbeats import HealthStore

            store = HealthStore(f"sqlite:///{served.home / 'ledger.db'}")
            try:
                beats = [b for b in store.latest() if b.stage == "scorer" and b.state == "running"]
            finally:
                store.close()
            return beats if beats and all(b.model_version == 2 for b in beats) else None

        scorer = _wait("the scorer serving version 2", serving_two, 120, served)[0]
        records = scorer.records
        _wait("records scored by version 2", lambda: (serving_two() or [scorer])[0].records > records, 60, served)
        loop_seconds = time.monotonic() - started
    finally:
        producer.send_signal(signal.SIGTERM)
        producer.wait(timeout=60)

    def settled():  # the run goes on after the promotion: the Evidently report, the artifact
        runs = served.runs("retrain-on-drift")
        return runs if all(r["state_type"] not in ("SCHEDULED", "PENDING", "RUNNING") for r in runs) else None

    runs = _wait("the retrain runs to end", settled, 300, served)
    # Exactly one run per decision completes. A later drift event that reaches the deployment
    # while its run still works (a loaded machine) is cancelled by the concurrency limit, by design.
    completed = sorted(r["parameters"]["trigger"]["kind"] for r in runs if r["state_type"] == "COMPLETED")
    others = {r["state_type"] for r in runs if r["state_type"] != "COMPLETED"}
    assert completed == ["bootstrap", "drift"] and others <= {"CANCELLED"}, \
        [(r["name"], r["state_type"]) for r in runs]
    runs = [r for r in runs if r["state_type"] == "COMPLETED"]
    run = next(r for r in runs if r["parameters"]["trigger"]["kind"] == "drift")
    trigger = run["parameters"]["trigger"]
    assert trigger["decision_id"] == promotion.payload["trigger"]["decision_id"]
    incident = trigger.get("incident") or trigger["event_ids"][0]
    assert run["name"] == f"{MODEL} drift retrain {incident}"
    assert trigger["evidence"] and run["parameters"]["window"]["telemetry"]
    assert run["created_by"]["type"] == "AUTOMATION", run["created_by"]  # the drift event's trigger started it

    logs = served.post("/logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}, "limit": 200})
    messages = "\n".join(entry["message"] for entry in logs)
    assert "challenger trained" in messages and "window loaded" in messages, messages[-2000:]
    artifacts = served.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
    markdown = next(a for a in artifacts if a["type"] == "markdown")
    body = markdown["data"]
    assert "**promoted** as version 2" in body and incident in body and "Champion against challenger" in body
    assert f"{served.addresses['mlflow_ui']}/#/models/{MODEL}/versions/2" in body
    assert promotion.payload["run_id"] in body

    import mlflow
    from mlflow.tracking import MlflowClient

    # The registry too: MLflow takes it from MLFLOW_TRACKING_URI, which an earlier in-process test leaves set
    # (this test read another home's version 2, with no description, twice in full runs).
    client = MlflowClient(tracking_uri=served.addresses["mlflow_ui"], registry_uri=served.addresses["mlflow_ui"])

    def described():  # written at registration
        found = client.get_model_version(MODEL, "2")
        return found if found.description else None

    try:
        version = _wait("version 2's description", described, 30, served, every=2)
    except pytest.fail.Exception as exc:
        store = f"sqlite:///{served.home / 'mlflow.db'}"
        direct = MlflowClient(tracking_uri=store, registry_uri=store).get_model_version(MODEL, "2")
        raise AssertionError(f"{exc}; through the server: {client.get_model_version(MODEL, '2')}; "
                             f"in the store itself: {direct}") from exc
    assert version.description.startswith("Drift retrain, decision ") and "Challenger" in version.description
    assert version.tags["driftctl.deployed_at"].endswith("+00:00")
    assert version.tags["driftctl.trained_at"].endswith("+00:00") and "/" in version.tags["driftctl.data_span"]
    mlflow.set_registry_uri(served.addresses["mlflow_ui"])
    mlflow.set_tracking_uri(served.addresses["mlflow_ui"])
    signature = mlflow.models.get_model_info(f"models:/{MODEL}/2").signature
    assert signature is not None and len(signature.inputs.input_names()) >= 4

    shots = _screenshots(served, run, version.tags)
    print(f"loop (produce to version 2 serving): {loop_seconds:.0f} s; screenshots: {shots}")


def _screenshots(served: Served, run: dict, tags: dict) -> list[Path]:
    return screenshots([("prefect-flow-run.png", f"{served.addresses['prefect_ui']}/runs/flow-run/{run['id']}",
                         [run["name"]]),
                        ("mlflow-version.png", f"{served.addresses['mlflow_ui']}/#/models/{MODEL}/versions/2",
                         ["driftctl.decision_id", tags["driftctl.decision_id"]])], served.shots)


def test_the_nightly_deployment_runs_at_once_and_its_outcome_is_in_history(served):
    run = subprocess.run([sys.executable, "-m", "prefect", "deployment", "run", "scheduled_retrain/retrain-nightly"],
                         env={**served.env, "PREFECT_API_URL": served.api,
                              "PREFECT_HOME": str(served.home / "prefect")},
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]

    def finished():
        done = [r for r in served.runs("retrain-nightly") if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]
        return done

    done = _wait("the nightly run", finished, 600, served, every=3)
    assert [r["state_type"] for r in done] == ["COMPLETED"], [(r["name"], r["state_type"]) for r in done]
    assert done[0]["name"].startswith(f"{MODEL} scheduled retrain ")
    history = _cli(served.env, "history", "--json", timeout=120)
    assert history.returncode == 0, history.stderr
    entries = json.loads(history.stdout)["entries"]
    scheduled = [e for e in entries if e["kind"] in ("promotion", "rejection")
                 and "scheduled retrain" in (e["reason"] or "") + json.dumps(e.get("payload") or {})]
    assert scheduled, [(e["kind"], e["reason"]) for e in entries[-10:]]
