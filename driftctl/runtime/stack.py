"""The running stack: Kafka (embedded or configured), MLflow and Prefect environment."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from driftctl.runtime.broker import EmbeddedBroker, ensure_topics, wait_until_reachable
from driftctl.settings import Settings


def configure_environment(settings: Settings) -> None:
    """Point MLflow and Prefect at their stores. Call before Prefect is imported."""
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    # Flows build their settings from the environment: they must see this home.
    os.environ["DRIFTCTL_HOME"] = str(settings.home)
    os.environ["PREFECT_HOME"] = str(settings.prefect_home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    if settings.prefect.api_url:
        os.environ["PREFECT_API_URL"] = settings.prefect.api_url
    os.environ["MLFLOW_TRACKING_URI"] = settings.mlflow_uri
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # its INFO lines would cut through the progress bar


@contextlib.contextmanager
def kafka_stack(settings: Settings) -> Iterator[str]:
    """Yield bootstrap servers with the topics in place; an embedded broker, if one is
    started here, is stopped on every way out (normal end, Ctrl-C, exception)."""
    if settings.kafka.bootstrap_servers:
        wait_until_reachable(settings.kafka.bootstrap_servers, timeout=10)
        ensure_topics(settings.kafka.bootstrap_servers, settings.kafka)
        yield settings.kafka.bootstrap_servers
        return
    with EmbeddedBroker(log_path=settings.home / "broker.log") as broker:
        ensure_topics(broker.bootstrap_servers, settings.kafka)
        yield broker.bootstrap_servers
