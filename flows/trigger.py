"""How the monitor starts a retrain: a flow call in-process, or a Prefect event that the
`retrain-on-drift` deployment's trigger turns into a flow run on a work pool.

The event is `driftctl.drift.detected` (a setting) on the resource
`driftctl.model.<model name>`; its payload carries the training window and the trigger
(decision id, drift event ids, the evidence). The deployment's trigger debounces per
model, its concurrency limit cancels a second run, and the flow's ledger lease skips
anything that still gets through: at most one retrain in flight per model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from driftctl.messages import RetrainTrigger, TrainingWindow
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from prefect.events.schemas.events import Event

Retrain = Callable[[TrainingWindow, RetrainTrigger], dict]


class RetrainTimeout(Exception):
    """The deployment did not record an outcome for a decision in time."""


def model_resource(model_name: str) -> dict[str, str]:
    return {"prefect.resource.id": f"driftctl.model.{model_name}", "prefect.resource.name": model_name,
            "driftctl.model": model_name}


def drift_detected_event(settings: Settings, window: TrainingWindow, trigger: RetrainTrigger) -> Event:
    """The retrain request as a Prefect event: the deployment trigger maps its payload to
    the `retrain` flow's parameters."""
    from prefect.events.schemas.events import Event, Resource

    return Event(event=settings.prefect.drift_event, resource=Resource(model_resource(settings.mlflow.model_name)),
                 payload={"window": window.model_dump(mode="json"), "trigger": trigger.model_dump(mode="json")})


def emit_events(settings: Settings, events: list) -> None:
    """Send events to the Prefect server at `prefect.api_url` over one connection.

    `prefect.events.emit_event` queues events on a process-wide background worker bound
    to whichever API the process saw first (often the ephemeral one); the events client
    it uses underneath is called directly here, so the events have reached the server
    when this returns.
    """
    import asyncio

    from prefect.events.clients import PrefectEventsClient

    async def send() -> None:
        async with PrefectEventsClient(api_url=settings.prefect.api_url) as client:
            for event in events:
                await client.emit(event)

    asyncio.run(send())


def emit_drift_detected(settings: Settings, window: TrainingWindow, trigger: RetrainTrigger) -> str:
    """Ask the `retrain-on-drift` deployment for a retrain; returns the event id."""
    event = drift_detected_event(settings, window, trigger)
    emit_events(settings, [event])
    return str(event.id)


class DeploymentRetrain:
    """The monitor's retrain callable when a Prefect server runs the deployments: emit the
    event, then wait (in the monitor's retrain thread) until the ledger holds the outcome
    of this decision, so the policy keeps the retrain in flight until it has ended."""

    def __init__(self, settings: Settings, poll_seconds: float = 0.5):
        self.settings = settings
        self.poll_seconds = poll_seconds
        self._last_emit: float | None = None

    def __call__(self, window: TrainingWindow, trigger: RetrainTrigger) -> dict:
        decision_id = trigger.decision_id
        # prefect.yaml's trigger runs one request per model per `within` seconds and absorbs the
        # rest (a storm runs once). A new decision just after the previous one (a drift found
        # seconds after the bootstrap) would be absorbed and never run: wait for the next window.
        if self._last_emit is not None:
            time.sleep(max(0.0, self._last_emit + self.settings.prefect.trigger_within + 1 - time.monotonic()))
        emit_drift_detected(self.settings, window, trigger)
        self._last_emit = time.monotonic()
        deadline = time.monotonic() + self.settings.prefect.outcome_timeout
        ledger = Ledger.from_settings(self.settings)
        try:
            while time.monotonic() < deadline:
                entry = ledger.outcome(decision_id)
                if entry is not None:
                    if entry.kind == "failure":
                        raise RuntimeError(entry.reason)
                    evaluation = entry.payload.get("evaluation") or {}
                    return {**evaluation, "promoted": entry.kind == "promotion", "ledger_entry": entry.id,
                            "skipped": entry.kind == "skipped"}
                time.sleep(self.poll_seconds)
        finally:
            ledger.close()
        raise RetrainTimeout(f"no outcome for {decision_id} within {self.settings.prefect.outcome_timeout:.0f} s: "
                             f"is a worker serving the retrain-on-drift deployment?")


def make_retrain(settings: Settings) -> Retrain:
    """Without `prefect.api_url`, flow calls against a local API: in a warm child process
    (`retrain.child_process`, the default) or on the monitor's own retrain thread; with it,
    the event path."""
    if settings.prefect.api_url:
        return DeploymentRetrain(settings)
    if settings.retrain.child_process:
        return ChildProcessRetrain(settings)
    return InProcessRetrain(settings)


class InProcessRetrain:
    """Flow calls in this process, against a local Prefect API server that dies with it
    (Prefect's own ephemeral server outlives a stage killed with SIGKILL). The server is
    started at once, so the first retrain does not wait for its start-up."""

    def __init__(self, settings: Settings):
        from driftctl.runtime.prefect_api import LocalPrefectApi

        self.api = LocalPrefectApi(settings.home / "prefect-api.log").start()

    def __call__(self, window: TrainingWindow, trigger: RetrainTrigger) -> dict:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.retrain import retrain  # Prefect reads PREFECT_HOME at import: after configure_environment

        with temporary_settings({PREFECT_API_URL: self.api.api_url()}):
            return retrain(window=window, trigger=trigger)

    def close(self) -> None:
        self.api.stop()


class RetrainProcessDied(Exception):
    """The retrain's child process ended before the flow did."""


class ChildProcessRetrain(InProcessRetrain):
    """The same flow calls, run in a warm child process. In the monitor's process the flow shared
    the GIL with the monitor's busy threads (the stream's readers, the producer in the demo): every
    part of it (the window's decode, the fits, MLflow's registration) ran several times slower than
    alone. The child imports the flow once, when the monitor starts, so a retrain does not pay the
    imports; it dies with the monitor (kill -9 included: an in-flight retrain ends there, as on a
    thread, and the next one reconciles what it left), and is started again if it died."""

    def __init__(self, settings: Settings, flow: str = "flows.retrain:retrain"):
        super().__init__(settings)
        self.settings, self.flow = settings, flow  # `flow`: module:name, imported in the child
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._first_rss: int | None = None  # the child's resident set after its first retrain
        self._start()

    def _start(self) -> None:
        import multiprocessing
        import os

        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        # daemon: ended at the monitor's normal exit; PR_SET_PDEATHSIG (set in the child) covers a kill.
        process = context.Process(target=serve_retrains, args=(theirs, os.getpid(), self.flow), name="retrain",
                                  daemon=True)
        process.start()
        theirs.close()
        self._process, self._conn = process, ours

    def __call__(self, window: TrainingWindow, trigger: RetrainTrigger) -> dict:
        if self._process is None or self._conn is None or not self._process.is_alive():
            self._start()
        assert self._process is not None and self._conn is not None
        try:
            self._conn.send((self.api.api_url(), window, trigger))
            ok, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            process, self._process = self._process, None
            process.join(timeout=5)
            raise RetrainProcessDied(self._died(trigger, process.exitcode)) from exc
        self._recycle_if_grown()
        if ok:
            return value
        raise value

    def _recycle_if_grown(self) -> None:
        """Replace a child that has grown past `retrain.child_max_growth_mb` since its first retrain,
        between runs (the next retrain finds the new one warm, or waits only for its imports): what
        each flow leaves behind (MLflow's and sklearn's caches, arenas) would otherwise stay for the
        monitor's life (round 9's 100k soak: 459 MB warm, 528 MB after two retrains). The bound is below
        a tenth of the warm process: round 10's 2M soak saw a drift retrain (20,000 rows) leave it 52 MB
        above its bootstrap (2,000 rows), 1.11x, kept to the end at the former 256 MB bound."""
        limit = self.settings.retrain.child_max_growth_mb
        rss = _resident_bytes(self._process.pid if self._process is not None else None)
        if limit is None or rss is None:
            return
        if self._first_rss is None:
            self._first_rss = rss
        elif rss - self._first_rss > limit * 2**20:
            self._stop()
            self._first_rss = None
            self._start()

    def _died(self, trigger: RetrainTrigger, code: int | None) -> str:
        """Recorded as the decision's failure; its lease is released (the flow's holder names the
        decision), so the next retrain need not wait for it to expire. A change the child left half
        done is ended by the next retrain's reconcile, under the lease."""
        from serving.promotion import lease_name

        name = self.settings.mlflow.model_name
        reason = (f"retrain failed: its process exited with code {code} before the flow ended; an interrupted "
                  f"champion change is ended by the next retrain")
        ledger = Ledger.from_settings(self.settings)
        try:
            holder = ledger.holder(lease_name(name))
            if holder is not None and holder.startswith(f"{trigger.decision_id}/"):
                ledger.release(lease_name(name), holder)
            ledger.append("failure", reason=reason, model_name=name, event_id=trigger.first_event,
                          payload={"trigger": trigger.model_dump(mode="json")})
        except Exception as exc:  # the monitor logs the failure either way
            reason += f" (not recorded in the ledger: {exc})"
        finally:
            ledger.close()
        return reason

    def _stop(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the child reads the end of its pipe and exits
        if self._process is not None:
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
        self._process = self._conn = None

    def close(self) -> None:
        self._stop()
        super().close()


def _resident_bytes(pid: int | None) -> int | None:
    """A process's resident set (Linux /proc); None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, TypeError):
        return None


def serve_retrains(conn: Connection, parent: int, flow: str = "flows.retrain:retrain") -> None:
    """The child's loop: one (API URL, window, trigger) at a time, answered with (True, outcome)
    or (False, the exception), until the monitor closes the pipe or dies."""
    import contextlib
    import os
    import signal

    from driftctl.runtime.broker import die_with_parent

    die_with_parent(signal.SIGKILL)  # die with the monitor
    if os.getppid() != parent:  # it died before the line above
        return
    from driftctl.runtime.logs import quiet_libraries

    quiet_libraries()
    import importlib

    from prefect.settings import PREFECT_API_URL, temporary_settings

    module, name = flow.split(":")
    retrain = getattr(importlib.import_module(module), name)  # the imports a retrain would otherwise wait for
    # Evidently too (seconds of CPU), for the report after a promotion: imported then, it competed with the scorers
    # loading the new champion; imported mid-stream after the first retrain, tests/test_loop.py twice saw a drift
    # event named before the drift at load 20 (main passed). Here, before the first retrain: the bootstrap waits.
    with contextlib.suppress(Exception):
        import drift.report  # noqa: F401

    while True:
        try:
            api_url, window, trigger = conn.recv()
        except EOFError:
            return
        try:
            with temporary_settings({PREFECT_API_URL: api_url}):
                answer: tuple[bool, Any] = (True, retrain(window=window, trigger=trigger))
        except Exception as exc:  # handed to the monitor, as a flow call in its process would raise it
            answer = (False, exc)
        try:
            conn.send(answer)
        except Exception as exc:  # not picklable: its text
            conn.send((False, RuntimeError(f"{type(answer[1]).__name__}: {answer[1]}" if not answer[0]
                                           else f"retrain outcome not sent: {exc}")))
