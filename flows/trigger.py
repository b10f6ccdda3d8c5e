"""How the monitor starts a retrain: a flow call in-process, or a Prefect event that the
`retrain-on-drift` deployment's trigger turns into a flow run on a work pool.

The event is `driftctl.drift.detected` (a setting) on the resource
`driftctl.model.<model name>`; its payload carries the training window and the trigger
(decision id, drift event ids, the evidence). The deployment's trigger debounces per
model, its concurrency limit cancels a second run, and the flow's ledger lease skips
anything that still gets through: at most one retrain in flight per model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from driftctl.messages import RetrainTrigger, TrainingWindow
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger

if TYPE_CHECKING:
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
    """In-process flow calls by default; the event path when `prefect.api_url` is set."""
    if settings.prefect.api_url:
        return DeploymentRetrain(settings)
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
