"""Evidently reports as evidence: rendered when a decision is made, not on the hot path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

if TYPE_CHECKING:
    from evidently.core.container import MetricOrContainer
    from evidently.core.report import Snapshot

# The champion's vitals, as one-value columns beside a window's features, so that one snapshot per
# window carries both (drift is measured on the features only).
CHAMPION_COLUMNS = {"realised_accuracy": "driftctl_realised_accuracy",
                    "estimated_accuracy": "driftctl_estimated_accuracy", "model_version": "driftctl_model_version"}


def data_drift_snapshot(reference: pd.DataFrame, current: pd.DataFrame,
                        champion: dict[str, Any] | None = None) -> Snapshot:
    """Evidently's DataDriftPreset of `current` against `reference` (shared columns only).
    `champion` ({"realised_accuracy", "estimated_accuracy", "model_version"}, a value may be None)
    adds the champion's vitals as MeanValue metrics on `CHAMPION_COLUMNS`.
    Returns the Snapshot: it renders to HTML and round-trips to JSON."""
    columns = [c for c in reference.columns if c in current.columns]
    metrics: list[MetricOrContainer] = [DataDriftPreset(columns=columns) if champion else DataDriftPreset()]
    current, reference = current[columns], reference[columns]
    if champion:
        from evidently.metrics import MeanValue

        vitals = {CHAMPION_COLUMNS[k]: float(v) for k, v in champion.items() if k in CHAMPION_COLUMNS and v is not None}
        current, reference = current.assign(**vitals), reference.assign(**vitals)
        metrics += [MeanValue(column=column) for column in vitals]
    return Report(metrics).run(current_data=current, reference_data=reference)


def drifted_share(snapshot: Snapshot) -> dict[str, float]:
    """Evidently's own verdict: how many columns drifted, at its default per-column tests."""
    for metric in snapshot.dict()["metrics"]:
        if metric["metric_name"].startswith("DriftedColumnsCount"):
            return {"count": float(metric["value"]["count"]), "share": float(metric["value"]["share"])}
    return {}
