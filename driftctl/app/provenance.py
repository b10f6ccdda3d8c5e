"""What `driftctl provenance [VERSION]` reports: every audit item of one model version,
read back from MLflow (run and model version) and from the ledger."""

from __future__ import annotations

import json
from typing import Any

from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger


class ProvenanceError(Exception):
    """No such version, or no champion to default to."""


def version_provenance(settings: Settings, version: int | None = None) -> dict[str, Any]:
    from training.registry import Registry, run_id_of  # MLflow takes seconds to import

    registry = Registry.from_settings(settings)
    if version is None:
        champion = registry.champion()
        if champion is None:
            raise ProvenanceError(f"{registry.model_name} has no champion; pass a VERSION")
        version = champion.version
    if not registry.exists(version):
        raise ProvenanceError(f"{registry.model_name} has no version {version}")
    details = registry.client.get_model_version(registry.model_name, str(version))
    run = registry.client.get_run(run_id_of(details))
    tags = {k: v for k, v in run.data.tags.items() if k.startswith("driftctl.")}
    inputs = [{"name": d.dataset.name, "digest": d.dataset.digest, "source_type": d.dataset.source_type,
               "profile": json.loads(d.dataset.profile or "{}"),
               "context": {t.key: t.value for t in d.tags}.get("mlflow.data.context")}
              for d in (run.inputs.dataset_inputs if run.inputs else [])]
    artifacts = [a.path for a in registry.client.list_artifacts(run.info.run_id, "evidence")]
    ledger = Ledger.from_settings(settings)
    try:
        promotion = ledger.last_promotion(registry.model_name, version)
        served = [h for h in ledger.alias_history(registry.model_name) if h["version"] == version]
    finally:
        ledger.close()
    trigger = (promotion.payload.get("trigger") if promotion else None) or {}
    return {
        "model": {"name": registry.model_name, "version": version, "run_id": run.info.run_id,
                  "kind": tags.get("driftctl.model_kind"), "params": dict(run.data.params),
                  "trained_at": _when(tags.get("driftctl.trained_at")),
                  "training_seconds": run.data.metrics.get("training_seconds")},
        "drift_evidence": {"summary": tags.get("driftctl.drift_evidence"), "events": trigger.get("evidence", []),
                           "event_ids": trigger.get("event_ids", [])},
        "training_data": {"window": tags.get("driftctl.window"), "positions": tags.get("driftctl.window_positions"),
                          "time_span": tags.get("driftctl.data_span"),
                          "rows": run.data.metrics.get("training_rows"),
                          "content_hash": tags.get("driftctl.training_data_hash"), "mlflow_inputs": inputs},
        "metrics": {"challenger_accuracy": run.data.metrics.get("challenger_accuracy"),
                    "champion_accuracy": run.data.metrics.get("champion_accuracy"),
                    "holdout_rows": run.data.metrics.get("holdout_rows")},
        "decision": {"id": tags.get("driftctl.decision_id"), "trigger_kind": tags.get("driftctl.trigger_kind"),
                     "outcome": tags.get("driftctl.decision"), "reason": tags.get("driftctl.decision_reason"),
                     "why_retrained": tags.get("driftctl.reason"),
                     "ledger_entry": promotion.id if promotion else None},
        "deployment": {"version_tags": {k: v for k, v in details.tags.items() if k.endswith(("deployed_at",
                                                                                            "deployed_reason"))},
                       "served": served},
        "evidence_artifacts": artifacts,
    }


def _when(value: str | None) -> str | None:
    """An ISO 8601 time; tags written before times were ISO hold epoch seconds."""
    if not value:
        return None
    try:
        from training.registry import iso_time

        return iso_time(float(value))
    except ValueError:
        return value
