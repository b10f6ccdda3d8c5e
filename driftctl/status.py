"""What `driftctl status` reports, read from MLflow and the ledger: no broker needed."""

from __future__ import annotations

from typing import Any

from driftctl.ledger import Ledger
from driftctl.settings import Settings


def champion_status(settings: Settings) -> dict[str, Any]:
    from training.registry import Registry

    status: dict[str, Any] = {"home": str(settings.home), "champion": None, "health": "unknown", "errors": []}
    try:
        ref = Registry.from_settings(settings).champion()
    except Exception as exc:  # an unreachable store is reported, not raised
        status["errors"].append(f"mlflow: {exc}")
        return status
    if ref is None:
        status["health"] = "unknown"
        return status
    champion = {"name": ref.name, "version": ref.version, "run_id": ref.run_id,
                "promoted_at": None, "reason": None, "event_id": None, "decision_id": None}
    try:
        ledger = Ledger(settings.ledger_url)
        promotion = ledger.last_promotion(ref.name, ref.version)
        ledger.close()
    except Exception as exc:
        status["errors"].append(f"ledger: {exc}")
        promotion = None
    if promotion is not None:
        trigger = promotion.payload.get("trigger", {})
        champion.update(promoted_at=promotion.at, reason=promotion.reason, event_id=promotion.event_id,
                        decision_id=trigger.get("decision_id"))
    status["champion"] = champion
    return status
