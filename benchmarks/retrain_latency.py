"""Retrain latency: from the retrain decision to the promoted model serving in a scorer.

Two paths, on the real embedded stack (Tansu broker, MLflow on SQLite, a real scorer):
- in-process: the monitor's default, the `retrain` flow called in this process;
- served: the decision emitted as `driftctl.drift.detected` to a Prefect server, the
  `retrain-on-drift` deployment (from prefect.yaml) run by a process worker; `warm`: the
  run in a fork of `python -m flows.warm serve`, `cold`: a fresh `python -m prefect.engine`
  (the warm engine's socket hidden for that run). The two alternate, in the same stack.

The clock starts when the decision is handed over (flow call or event emitted) and stops
when the scorer has loaded the new version and swapped to it. The stream is the demo's: a
champion trained on the first `warmup` labelled records of 10,000, then blocks of
`min_train_rows` whose labels are inverted every other block, so each challenger beats the
champion trained on the block before. Each decision carries the candidate windows the
monitor's would (`DriftSettings.candidate_windows`: since the change, its newest half, the
champion's rows plus the new ones): the first one's wide candidate is the demo's 11,500 rows.

    PYTHONPATH=. python benchmarks/retrain_latency.py [--repeats 3] [--no-served] [--no-cold]

Writes benchmarks/results/retrain_latency.md (machine and date included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from driftctl.runtime.broker import die_with_parent, free_loopback_port, stop_process
from driftctl.runtime.machine import describe as machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEBOUNCE = 31.0  # the deployment trigger absorbs a model's events for 30 s after one fires


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-served", action="store_true", help="skip the Prefect server path")
    parser.add_argument("--no-cold", action="store_true", help="served: only the warm engine's runs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "retrain_latency.md")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="driftctl-bench-"))
    os.environ["DRIFTCTL_HOME"] = str(home)
    os.environ["PREFECT_HOME"] = str(home / "prefect")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
    from driftctl.runtime.stack import configure_environment
    from driftctl.settings import Settings

    settings = Settings()
    configure_environment(settings)
    results: dict[str, list[dict]] = {"in-process": [], "served cold": [], "served warm": []}
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        ensure_topics(bootstrap, settings.kafka)
        modes = ("warm",) if args.no_cold else ("cold", "warm")
        stream = Stream(bootstrap, settings, args.repeats * (1 + len(modes) * (not args.no_served)))
        scorer, stop = start_scorer(settings, bootstrap)
        try:
            for i in range(args.repeats):
                results["in-process"].append(in_process(stream, scorer, f"bench-local-{i}"))
                print(f"in-process {i}: {results['in-process'][-1]}", flush=True)
            if not args.no_served:
                with served_stack(settings, bootstrap, home) as api:
                    served_settings = settings.model_copy(update={"prefect": settings.prefect.model_copy(
                        update={"api_url": api})})
                    last = 0.0
                    for i in range(args.repeats):
                        for mode in modes:
                            time.sleep(max(0.0, last + DEBOUNCE - time.monotonic()))
                            wait_until_idle(api)  # a run still rendering its report would cancel the next
                            last = time.monotonic()
                            with warm_engine(home, on=mode == "warm"):
                                results[f"served {mode}"].append(
                                    served(served_settings, stream, scorer, f"bench-served-{mode}-{i}"))
                            print(f"served {mode} {i}: {results[f'served {mode}'][-1]}", flush=True)
        finally:
            stop.set()
    write(args.out, results, f"--repeats {args.repeats}{' --no-cold' * args.no_cold}",
          f"the monitor's candidate windows ({'on' if settings.drift.candidate_windows else 'off'}), judged by "
          f"fits of {settings.drift.candidate_judge_iterations or 'all'} boosting iterations")


class Stream:
    """The labelled stream on the broker and the decisions the monitor would take on it: the
    first 10,000 records (the demo's drift point) with a champion on the first `warmup`, then
    `blocks` blocks of `min_train_rows`, the labels inverted in every other one (a drift each)."""

    HISTORY = 10_000

    def __init__(self, bootstrap, settings, blocks: int):
        from flows.retrain import retrain
        from tests.streams import produce, readings, trigger, window

        self.bootstrap, self.settings, self.block = bootstrap, settings, settings.drift.min_train_rows
        stream = readings(0, self.HISTORY + blocks * self.block, drift_at=10 ** 9)  # one concept
        self.rows = produce(bootstrap, settings, stream[:self.HISTORY])
        for k in range(blocks):
            batch = stream[len(self.rows):len(self.rows) + self.block]
            self.rows += produce(bootstrap, settings, batch, flip_labels=k % 2 == 0)
        warmup = settings.drift.warmup
        retrain(window=window(bootstrap, settings, self.rows[:warmup]),  # also warms Prefect up
                trigger=trigger("bench-bootstrap", kind="bootstrap"))
        self.trained_on, self.end = (0, warmup), self.HISTORY

    def next_decision(self, decision_id: str):
        """The window and trigger of the next block's retrain decision, as the monitor builds them."""
        from drift.watch import DriftWatch
        from driftctl.messages import Action, Decision
        from tests.streams import trigger, window

        self.end += self.block
        decision = Decision(action=Action.RETRAIN, reason="bench", window=(self.end - self.block, self.end))
        if self.settings.drift.candidate_windows:
            watch = DriftWatch(self.settings.drift)
            watch.trained_on = self.trained_on
            decision = watch._candidates(decision)  # the monitor's own rule, not a copy of it
        assert decision.window is not None
        start, end = decision.window
        return (window(self.bootstrap, self.settings, self.rows[start:end], start=start),
                trigger(decision_id, kind="drift", candidates=decision.candidates))

    def promoted(self, rows: int) -> None:
        """The new champion learned from the newest `rows` of the decision's window."""
        self.trained_on = (self.end - rows, self.end)


def start_scorer(settings, bootstrap):
    from serving.scorer import Scorer
    from training.registry import Registry

    stop = threading.Event()
    scorer = Scorer(settings, bootstrap, Registry.from_settings(settings), stop)
    threading.Thread(target=scorer.run, daemon=True, name="scorer").start()
    deadline = time.monotonic() + 60
    while scorer.current is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the scorer did not load the bootstrap champion in 60 s")
        time.sleep(0.05)
    return scorer, stop


def wait_for_swap(scorer, version: int, started: float, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while True:
        for swapped, at in scorer.swaps:
            if swapped == version:
                return at - started
        if time.monotonic() > deadline:
            raise RuntimeError(f"the scorer never served version {version}")
        time.sleep(0.02)


def in_process(stream, scorer, decision_id):
    from flows.retrain import retrain

    window, trigger = stream.next_decision(decision_id)
    started = time.time()
    outcome = retrain(window=window, trigger=trigger)
    flow_done = time.time() - started
    if not outcome["promoted"]:
        raise RuntimeError(f"no promotion: {outcome['reason']}")
    stream.promoted(outcome["rows"])
    return {"version": outcome["version"], "flow_s": round(flow_done, 2), "rows": outcome["rows"],
            "training_s": round(outcome["training_seconds"], 2),
            "serving_s": round(wait_for_swap(scorer, outcome["version"], started), 2)}


def served(settings, stream, scorer, decision_id):
    from flows.trigger import DeploymentRetrain

    window, trigger = stream.next_decision(decision_id)
    started = time.time()
    outcome = DeploymentRetrain(settings, poll_seconds=0.05)(window, trigger)
    recorded = time.time() - started
    if not outcome["promoted"]:
        raise RuntimeError(f"no promotion: {outcome}")
    stream.promoted(outcome["rows"])
    return {"version": outcome["version"], "flow_s": round(recorded, 2), "rows": outcome["rows"],
            "training_s": round(outcome["training_seconds"], 2),
            "serving_s": round(wait_for_swap(scorer, outcome["version"], started), 2),
            "to_running_s": to_running(settings.prefect.api_url, decision_id)}


def to_running(api: str, decision_id: str) -> float | None:
    """The flow run's time from created (by the trigger) to running, on the server's clock."""
    import httpx

    for run in httpx.post(f"{api}/flow_runs/filter", json={}, timeout=10).json():
        trigger = run["parameters"].get("trigger")
        if isinstance(trigger, dict) and trigger.get("decision_id") == decision_id and run.get("start_time"):
            created, running = (datetime.fromisoformat(run[k]) for k in ("created", "start_time"))
            return round((running - created).total_seconds(), 2)
    return None


def wait_until_idle(api: str, timeout: float = 600) -> None:
    """No flow run pending or running on the server."""
    import httpx

    deadline = time.monotonic() + timeout
    busy = {"flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING"]}}}}
    while httpx.post(f"{api}/flow_runs/filter", json=busy, timeout=10).json():
        if time.monotonic() > deadline:
            raise RuntimeError("a flow run did not finish")
        time.sleep(0.5)


class warm_engine:
    """The warm engine's socket visible for a warm run, hidden (renamed) for a cold one:
    the deployments' command then falls back to `python -m prefect.engine`."""

    def __init__(self, home: Path, on: bool):
        from flows.warm import SOCKET

        self.path, self.on = home / SOCKET, on

    def __enter__(self) -> None:
        if not self.on:
            self.path.rename(self.path.with_suffix(".off"))

    def __exit__(self, *exc) -> None:
        if not self.on:
            self.path.with_suffix(".off").rename(self.path)


class served_stack:
    """A Prefect server, the work pool, `prefect deploy --all`, a process worker."""

    def __init__(self, settings, bootstrap, home: Path):
        self.settings, self.bootstrap, self.home = settings, bootstrap, home
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> str:
        import httpx

        port = free_loopback_port()
        api = f"http://127.0.0.1:{port}/api"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DRIFTCTL_"))}
        common = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
        self._start(["server", "start", "--host", "127.0.0.1", "--port", str(port)],
                    {**base, **common, "PREFECT_HOME": str(self.home / "prefect-server"),
                     "PREFECT_UI_ENABLED": "false"})
        deadline = time.monotonic() + 300  # minutes on a loaded machine
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the Prefect server did not start")
            time.sleep(0.3)
        env = {**base, **common, "PREFECT_HOME": str(self.home / "prefect-client"), "PREFECT_API_URL": api,
               "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5",
               "PYTHONPATH": str(ROOT), "DRIFTCTL_HOME": str(self.settings.home),
               "DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
               **{k: v for k, v in os.environ.items() if k.startswith("DRIFTCTL_DRIFT__")}}  # the policy measured
        prefect = [sys.executable, "-m", "prefect"]
        from flows.warm import pool_template

        template = self.home / "pool.json"
        template.write_text(json.dumps(pool_template()))
        subprocess.run([*prefect, "work-pool", "create", "driftctl-process", "--type", "process",
                        "--base-job-template", str(template)], cwd=ROOT, env=env, check=True, capture_output=True)
        self._start(["worker", "start", "--pool", "driftctl-process", "--type", "process"], env)
        with open(self.home / "warm.log", "ab") as log:
            self.processes.append(subprocess.Popen([sys.executable, "-m", "flows.warm", "serve"], cwd=ROOT, env=env,
                                                   stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent))
        subprocess.run([*prefect, "--no-prompt", "deploy", "--all"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        from flows.warm import SOCKET

        deadline = time.monotonic() + 180
        while not (self.home / SOCKET).exists():
            if time.monotonic() > deadline or self.processes[-1].poll() is not None:
                raise RuntimeError(f"the warm engine did not listen (log: {self.home / 'warm.log'})")
            time.sleep(0.3)
        return api

    def _start(self, args, env) -> None:
        with open(self.home / f"{args[0]}.log", "ab") as log:  # the child holds its own copy
            self.processes.append(subprocess.Popen([sys.executable, "-m", "prefect", *args], cwd=ROOT, env=env,
                                                   stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent))

    def __exit__(self, *exc) -> None:
        for process in reversed(self.processes):
            stop_process(process, timeout=10)




def _median_of(runs: list[dict], key: str) -> str:
    found = [r[key] for r in runs if r.get(key) is not None]
    return f"{statistics.median(found):.2f}" if found else "-"


def write(out: Path, results: dict[str, list[dict]], flags: str, decisions: str) -> None:
    lines = ["# Retrain latency: decision to promoted model serving", "",
             f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
             f"- machine: {machine()} (when the results were written)",
             f"- command: `PYTHONPATH=. python benchmarks/retrain_latency.py {flags}`",
             "- clock: from the decision handed over (flow call / event emitted) to the scorer serving the "
             "new version; `flow` is until the flow's outcome is known (in-process: the call returns; "
             "served: the ledger holds the outcome); `train` is the flow's training time (candidates "
             "judged, the challenger fitted; `train_challenger`), `rows` the winning window's",
             f"- decisions: {decisions}",
             "- goals (issue 12): median under 5 s in-process, under 10 s with a Prefect server and a served "
             "deployment", "",
             "| path | runs | train median s | flow median s | serving median s | serving max s "
             "| each run (serving s) | rows | created to running, median s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for path, runs in results.items():
        if not runs:
            continue
        serving = [r["serving_s"] for r in runs]
        lines.append(f"| {path} | {len(runs)} | {_median_of(runs, 'training_s')} | "
                     f"{statistics.median(r['flow_s'] for r in runs):.2f} | "
                     f"{statistics.median(serving):.2f} | {max(serving):.2f} | "
                     f"{', '.join(f'{s:.2f}' for s in serving)} | {', '.join(str(r['rows']) for r in runs)} | "
                     f"{_median_of(runs, 'to_running_s')} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
