"""`driftctl report`: Evidently's data-drift report of the newest monitor window against the
champion's training reference, as one HTML file. Reads <home>/evidently (the monitor
keeps its newest window there) and MLflow (the reference); no broker needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from driftctl.settings import Settings
from serving.workspace import latest_window, render


class ReportError(Exception):
    """No report can be rendered."""


def latest_report(settings: Settings, out: Path | None = None) -> dict[str, Any]:
    from drift.report import drifted_share  # Evidently and MLflow take seconds to import
    from training.registry import Registry

    window = latest_window(settings.evidently_workspace)
    if window is None:
        raise ReportError(f"no monitor window in {settings.evidently_workspace} yet: the monitor keeps its newest "
                          f"every {settings.evidently.snapshot_interval:g} s (evidently.snapshot_interval) and when "
                          "it stops; run `driftctl demo` or a monitor first")
    champion = window["champion"]
    try:
        reference = Registry.from_settings(settings).reference(champion["run_id"])
    except Exception as exc:
        raise ReportError(f"cannot read the reference of {champion['name']} version {champion['version']} "
                          f"(run {champion['run_id']}) from MLflow: {exc}") from exc
    snapshot = render(reference, window["rows"])
    out = Path(out) if out else settings.home / "reports" / "latest-window.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out))
    return {"out": str(out), "window_rows": len(window["rows"]), "window_end_index": window["index"],
            "window_at": window["at"], "champion": champion, "reference_rows": len(reference),
            "drifted_columns": drifted_share(snapshot)}
