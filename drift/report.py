"""Evidently reports as evidence: rendered when a decision is made, not on the hot path."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

if TYPE_CHECKING:
    from evidently.core.report import Snapshot


def data_drift_snapshot(reference: pd.DataFrame, current: pd.DataFrame) -> Snapshot:
    """Evidently's DataDriftPreset of `current` against `reference` (shared columns only).
    Returns the Snapshot: it renders to HTML and round-trips to JSON."""
    columns = [c for c in reference.columns if c in current.columns]
    return Report([DataDriftPreset()]).run(current_data=current[columns], reference_data=reference[columns])


def drifted_share(snapshot: Snapshot) -> dict[str, float]:
    """Evidently's own verdict: how many columns drifted, at its default per-column tests."""
    for metric in snapshot.dict()["metrics"]:
        if metric["metric_name"].startswith("DriftedColumnsCount"):
            return {"count": float(metric["value"]["count"]), "share": float(metric["value"]["share"])}
    return {}
