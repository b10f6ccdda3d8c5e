"""The deployments on a real Prefect server: `prefect deploy --all` from prefect.yaml, a
process worker, and a storm of 100 `driftctl.drift.detected` events that yields exactly
one flow run, which promotes a version and announces it on the model-updates topic.

Real everything: `prefect server start` (SQLite, a temp PREFECT_HOME), the Tansu broker,
MLflow on SQLite, the ledger."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from driftctl.runtime.broker import EmbeddedBroker, die_with_parent, ensure_topics, free_loopback_port, stop_process
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from flows.trigger import DeploymentRetrain, drift_detected_event, emit_events
from serving.kafka_io import read_topic
from tests.streams import produce, readings, trigger, window
from training.registry import Registry

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


def _start(args, env, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "prefect", *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)


def _stop(process: subprocess.Popen) -> None:
    stop_process(process, timeout=10)


def _post(api: str, path: str, body: dict):
    response = httpx.post(f"{api}{path}", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


@pytest.fixture
def prefect_env(tmp_path):
    """A Prefect server on a free loopback port; the environment its clients use."""
    port = free_loopback_port()
    api = f"http://127.0.0.1:{port}/api"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DRIFTCTL_"))}
    server_env = {**base, "PREFECT_HOME": str(tmp_path / "prefect-server"),
                  "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
                  "PREFECT_LOGGING_LEVEL": "WARNING"}
    server = _start(["server", "start", "--host", "127.0.0.1", "--port", str(port)], server_env,
                    tmp_path / "server.log")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the Prefect server did not answer within 60 s"
            time.sleep(0.3)
        client_env = {**base, "PREFECT_HOME": str(tmp_path / "prefect-client"), "PREFECT_API_URL": api,
                      "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
                      "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5",
                      "PYTHONPATH": str(ROOT)}
        yield api, client_env
    finally:
        _stop(server)


def test_a_storm_of_drift_events_runs_the_deployment_once_and_promotes(prefect_env, home, tmp_path):
    api, env = prefect_env
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        settings = Settings(prefect={"api_url": api})
        ensure_topics(bootstrap, settings.kafka)
        rows = produce(bootstrap, settings, readings(0, 1_500, drift_at=10_000))
        env = {**env, "DRIFTCTL_HOME": str(home), "DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS": bootstrap}

        pool = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", "driftctl-process",
                               "--type", "process"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert pool.returncode == 0, pool.stdout + pool.stderr
        worker = _start(["worker", "start", "--pool", "driftctl-process", "--type", "process"], env,
                        tmp_path / "worker.log")
        try:
            deploy = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=ROOT,
                                    env=env, capture_output=True, text=True, timeout=120)
            assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
            deployments = {d["name"]: d for d in _post(api, "/deployments/filter", {})}
            assert set(deployments) == {"retrain-on-drift", "retrain-nightly"}
            assert deployments["retrain-nightly"]["schedules"][0]["schedule"]["cron"] == "0 2 * * *"
            assert deployments["retrain-on-drift"]["global_concurrency_limit"]["limit"] == 1
            automations = _post(api, "/automations/filter", {})
            assert [a["trigger"]["expect"] for a in automations] == [["driftctl.drift.detected"]]

            # The monitor's path: emit, then wait for the ledger to hold the decision's outcome.
            drift_window = window(bootstrap, settings, rows)
            first = trigger("decision-storm-0", reason="drift confirmed (storm test)", kind="drift")
            result: dict = {}

            def wait_for_outcome() -> None:
                try:
                    result.update(DeploymentRetrain(settings)(drift_window, first))
                except Exception as exc:  # surfaced below
                    result["error"] = repr(exc)

            waiter = threading.Thread(target=wait_for_outcome)
            waiter.start()
            deadline = time.monotonic() + 20
            while _count_events(api) < 1:
                assert time.monotonic() < deadline, "the first event never reached the server"
                time.sleep(0.2)
            # 99 more monitors (or one monitor retrying) ask for the same model at once.
            emit_events(settings, [drift_detected_event(settings, drift_window, trigger(f"decision-storm-{i}"))
                                   for i in range(1, 100)])
            waiter.join(timeout=120)
            assert not waiter.is_alive(), "no outcome recorded within 120 s:\n" + \
                (tmp_path / "worker.log").read_text()[-3000:]
            assert result.get("promoted") and result.get("version") == 1, \
                (result, (tmp_path / "worker.log").read_text()[-3000:])

            assert _count_events(api) == 100
            # The flow records its outcome before the worker reports the run's final state.
            deadline = time.monotonic() + 30
            while True:
                runs = _post(api, "/flow_runs/filter", {"deployments": {
                    "id": {"any_": [deployments["retrain-on-drift"]["id"]]}}})
                if all(r["state_type"] not in ("RUNNING", "PENDING", "SCHEDULED") for r in runs) \
                        or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert [r["state_type"] for r in runs] == ["COMPLETED"], [(r["name"], r["state_type"]) for r in runs]
            assert runs[0]["parameters"]["trigger"]["decision_id"] == "decision-storm-0"
        finally:
            _stop(worker)

        registry = Registry.from_settings(settings)
        assert registry.champion().version == 1
        ledger = Ledger(settings.ledger_url)
        assert [e.payload["trigger"]["decision_id"] for e in ledger.entries("promotion")] == ["decision-storm-0"]
        assert ledger.entries("skipped") == [] and ledger.entries("failure") == []
        updates = read_topic(bootstrap, settings.kafka, settings.kafka.topics.model_updates,
                             until=lambda got: len(got) >= 1, timeout=15)
        update = json.loads(updates[0].value)
        assert update["version"] == 1 and update["decision_id"] == "decision-storm-0"


def _count_events(api: str) -> int:
    found = _post(api, "/events/filter", {"filter": {"event": {"name": ["driftctl.drift.detected"]},
                                                     "occurred": {"since": "2000-01-01T00:00:00Z"}},
                                          "limit": 1})
    return found["total"]
