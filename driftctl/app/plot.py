"""`driftctl plot`: a PNG timeline over records of prequential accuracy, the drift statistics
against their thresholds, and markers where drift fired and models were promoted.

Two sources, one picture: a `driftctl backtest --json` file, or the live state (the
monitor's heartbeats and the ledger). Whatever a source lacks is left out and said so
on the plot (a backtest without `accuracy_curve` shows its overall accuracy as a line).

Backtest JSON read here: `rows`, `warmup`, `policy`, `accuracy`, `drift_events`
[{index, detector, statistic?, threshold?}], `promotions` (a list of {index, version?}
or of indices, or a count), and optionally `accuracy_curve`: {"every": N, "values": [...]}
(accuracy per block of N records) or [[index, accuracy], ...].
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftctl.stores.heartbeats import Beat, HealthStore
from driftctl.stores.ledger import ALIAS_MOVES, Ledger

if TYPE_CHECKING:
    from driftctl.settings import Settings


class PlotError(Exception):
    """The input cannot be plotted."""


@dataclass
class Timeline:
    title: str
    rows: int | None = None
    warmup: int | None = None
    accuracy: float | None = None  # overall, when there is no curve
    accuracy_curve: list[tuple[int, float]] = field(default_factory=list)
    statistics: dict[str, list[tuple[int, float, float | None]]] = field(default_factory=dict)  # detector -> points
    events: list[tuple[int, str]] = field(default_factory=list)  # (index, detector)
    promotions: list[tuple[int, int | None]] = field(default_factory=list)  # (index, version)
    notes: list[str] = field(default_factory=list)


def from_backtest(data: Any, name: str = "backtest") -> Timeline:
    if not isinstance(data, dict) or "drift_events" not in data:
        raise PlotError(f"{name}: not a `driftctl backtest --json` output (no drift_events)")
    timeline = Timeline(title=f"{name}: policy {data.get('policy', '?')}", rows=data.get("rows"),
                        warmup=data.get("warmup"), accuracy=data.get("accuracy"))
    timeline.accuracy_curve = _curve(data.get("accuracy_curve"))
    for event in data.get("drift_events") or []:
        index, detector = event.get("index"), event.get("detector", "drift")
        if index is None:
            continue
        timeline.events.append((int(index), detector))
        if event.get("statistic") is not None:
            timeline.statistics.setdefault(detector, []).append(
                (int(index), float(event["statistic"]), _float(event.get("threshold"))))
    promotions = data.get("promotions")
    if isinstance(promotions, list):
        for item in promotions:
            if isinstance(item, dict) and item.get("index") is not None:
                timeline.promotions.append((int(item["index"]), item.get("version")))
            elif isinstance(item, (int, float)):
                timeline.promotions.append((int(item), None))
    elif isinstance(promotions, int) and promotions:
        timeline.notes.append(f"{promotions} promotion(s), positions not in the input")
    if not timeline.accuracy_curve:
        timeline.notes.append("no accuracy_curve in the input: overall accuracy after warmup shown")
    return timeline


def _curve(curve: Any) -> list[tuple[int, float]]:
    """`accuracy_curve` as (record, accuracy) points: either [[index, accuracy], ...] or
    {"every": N, "values": [...]} (one accuracy per block of N records, drawn at each block's middle).

    >>> _curve({"every": 100, "values": [0.9, 0.5]}), _curve([[10, 0.8]]), _curve(None)
    ([(50, 0.9), (150, 0.5)], [(10, 0.8)], [])
    """
    if isinstance(curve, dict):
        every = int(curve.get("every") or 1)
        return [(i * every + every // 2, float(v)) for i, v in enumerate(curve.get("values") or []) if v is not None]
    return [(int(p[0]), float(p[1])) for p in curve or [] if p[1] is not None]


def from_live(settings: Settings) -> Timeline:
    """The monitor's heartbeats (accuracy, detector statistics by record) and the ledger."""
    if not settings.ledger.url and not (settings.home / "ledger.db").exists():
        raise PlotError(f"nothing to plot in {settings.home}: no ledger there "
                        "(run `driftctl demo` first, or pass a backtest JSON)")
    store = HealthStore.from_settings(settings)
    try:
        beats = [b for b in store.since(0, stage="monitor") if (b.extra or {}).get("index") is not None]
    finally:
        store.close()
    ledger = Ledger.from_settings(settings)
    try:
        entries = list(reversed(ledger.entries(limit=10_000)))
    finally:
        ledger.close()
    if not beats and not entries:
        raise PlotError(f"nothing to plot in {settings.home}: no monitor heartbeats and an empty ledger "
                        "(run `driftctl demo` first, or pass a backtest JSON)")
    timeline = Timeline(title=f"live state in {settings.home}", warmup=settings.drift.warmup)
    for b in beats:
        extra = b.extra
        if extra.get("accuracy") is not None:
            timeline.accuracy_curve.append((extra["index"], extra["accuracy"]))
        for name, live in (extra.get("detectors") or {}).items():
            if live.get("statistic") is not None:
                timeline.statistics.setdefault(name, []).append(
                    (extra["index"], float(live["statistic"]), _float(live.get("threshold"))))
    timeline.rows = max((b.extra["index"] for b in beats), default=None)
    for e in entries:
        if e.kind == "drift_event" and e.payload.get("index") is not None:
            detector = e.payload.get("detector", "drift")
            timeline.events.append((int(e.payload["index"]), detector))
            if e.payload.get("statistic") is not None and detector != "error-adwin":  # ADWIN's is not a level
                timeline.statistics.setdefault(detector, []).append(
                    (int(e.payload["index"]), float(e.payload["statistic"]), _float(e.payload.get("threshold"))))
        elif e.kind in ALIAS_MOVES:
            index = _index_at(beats, e.at)
            if index is not None:
                timeline.promotions.append((index, e.model_version))
    if timeline.accuracy_curve:
        timeline.notes.append("accuracy: 1 - ADWIN's error estimate of the champion, per monitor heartbeat")
    return timeline


def _index_at(beats: list[Beat], at: float) -> int | None:
    """The record index the monitor had reached at time `at` (first heartbeat at or after it)."""
    later = [b for b in beats if b.at >= at]
    if later:
        return int(later[0].extra["index"])
    return int(beats[-1].extra["index"]) if beats else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def load(source: Path | None, settings: Settings) -> Timeline:
    if source is None:
        return from_live(settings)
    try:
        data = json.loads(Path(source).read_text())
    except FileNotFoundError:
        raise PlotError(f"{source}: no such file") from None
    except ValueError as exc:
        raise PlotError(f"{source}: not JSON ({exc})") from None
    return from_backtest(data, Path(source).name)


_COLOURS = ["tab:red", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive"]


def draw(timeline: Timeline, out: Path) -> dict[str, Any]:
    """Write the PNG; returns what it shows."""
    import matplotlib  # a second to import: only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    detectors = list(dict.fromkeys([*timeline.statistics, *(d for _, d in timeline.events)]))
    colour = {d: _COLOURS[i % len(_COLOURS)] for i, d in enumerate(detectors)}
    panels = 1 + max(1, len(timeline.statistics))
    fig, axes = plt.subplots(panels, 1, figsize=(11, 2.6 + 2.2 * panels), sharex=True, squeeze=False)
    axes = axes[:, 0]
    ax = axes[0]
    right = timeline.rows or max([i for i, _ in timeline.accuracy_curve] + [i for i, _ in timeline.events]
                                 + [i for i, _ in timeline.promotions] + [1])
    if timeline.accuracy_curve:
        xs, ys = zip(*sorted(timeline.accuracy_curve), strict=True)
        ax.plot(xs, ys, color="tab:blue", lw=1.5, label="prequential accuracy")
    elif timeline.accuracy is not None:
        ax.hlines(timeline.accuracy, timeline.warmup or 0, right, colors="tab:blue", linestyles="--",
                  label=f"accuracy after warmup {timeline.accuracy:.1%}")
    if timeline.warmup and timeline.warmup < right:
        ax.axvspan(0, timeline.warmup, color="0.9", label="warmup")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    for panel in axes:
        for index, detector in timeline.events:
            panel.axvline(index, color=colour[detector], ls=":", lw=1)
        for index, _ in timeline.promotions:
            panel.axvline(index, color="tab:green", lw=2, alpha=0.8)
    for detector in detectors:  # legend entries for the markers
        ax.plot([], [], color=colour[detector], ls=":", label=f"drift fired: {detector}")
    for index, version in timeline.promotions:
        ax.annotate(f"v{version}" if version else "promoted", (index, 1.0), xytext=(3, -12),
                    textcoords="offset points", color="tab:green", fontsize=9)
    if timeline.promotions:
        ax.plot([], [], color="tab:green", lw=2, label="model promoted")
    ax.legend(loc="lower left", fontsize=8, ncol=3)
    ax.set_title(timeline.title + ("\n" + "; ".join(timeline.notes) if timeline.notes else ""), fontsize=10)

    if timeline.statistics:
        for panel, (detector, series) in zip(axes[1:], timeline.statistics.items(), strict=True):
            points = sorted(series)
            panel.plot([p[0] for p in points], [p[1] for p in points], marker=".", color=colour[detector], lw=1,
                       label=f"{detector} statistic")
            thresholds = [(p[0], p[2]) for p in points if p[2] is not None]
            if thresholds:
                panel.step([t[0] for t in thresholds], [t[1] for t in thresholds], where="post", color="black",
                           ls="--", lw=1, marker="_", ms=12, label="threshold")
            values = [p[1] for p in points if p[1] > 0] + [t[1] for t in thresholds if t[1] > 0]
            if values and min(values) > 0 and max(values) / min(values) > 1e3:
                panel.set_yscale("log")
            panel.set_ylabel(detector)
            panel.legend(loc="upper left", fontsize=8)
    else:
        panel = axes[1]
        for index, detector in timeline.events:
            panel.plot([index], [detectors.index(detector)], marker="v", color=colour[detector], ms=8)
        panel.set_yticks(range(len(detectors)), detectors or ["-"])
        panel.set_ylabel("drift fired")
        if not timeline.events:
            panel.text(0.5, 0.5, "no drift events", transform=panel.transAxes, ha="center")
    axes[-1].set_xlabel("record")
    axes[-1].set_xlim(0, right)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return {"out": str(out), "records": right, "accuracy_points": len(timeline.accuracy_curve),
            "detectors": {d: len(p) for d, p in timeline.statistics.items()},
            "drift_events": len(timeline.events), "promotions": [v for _, v in timeline.promotions],
            "notes": timeline.notes}
