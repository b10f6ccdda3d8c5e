"""What `driftctl history` reports: the ledger's timeline and which version served when."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger


def ledger_history(settings: Settings, *, limit: int | None = None, include_windows: bool = False) -> dict[str, Any]:
    ledger = Ledger(settings.ledger_url)
    try:
        entries = ledger.timeline(include_windows=include_windows, limit=limit)
        aliases = ledger.alias_history(settings.mlflow.model_name)
    finally:
        ledger.close()
    return {"model": settings.mlflow.model_name, "ledger": settings.ledger_url.split("@")[-1],
            "champion_history": aliases, "entries": [asdict(e) for e in entries]}
