"""`driftctl backtest`: read a CSV or Parquet file, replay it through `drift.backtest`."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import pandas as pd

from drift.backtest import Backtest, BacktestError, BacktestResult, PolicySpec, prepare
from driftctl.settings import Settings

PARQUET = (".parquet", ".pq")


def read_table(path: Path) -> pd.DataFrame:
    """A CSV (optionally compressed) or Parquet file as a frame; strings stay strings."""
    if not path.exists():
        raise BacktestError(f"no such file: {path}")
    if path.is_dir():
        raise BacktestError(f"{path} is a directory, not a CSV or Parquet file")
    try:
        if path.suffix.lower() in PARQUET:
            return pd.read_parquet(path)
        return pd.read_csv(path, low_memory=False, encoding="utf-8")
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        kind = "Parquet" if path.suffix.lower() in PARQUET else "CSV"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BacktestError(f"cannot read {path} as {kind}: {first}") from None


def plan_backtest(path: Path, *, target: str, settings: Settings, policy: PolicySpec, drop: Sequence[str] = (),
                  time_col: str | None = None, id_col: str | None = None, warmup: int | None = None,
                  label_delay: int = 0) -> Backtest:
    """Read and check everything before the replay starts, so bad input fails at once."""
    frame = read_table(path)
    features, labels, ids, dropped = prepare(frame, target, drop=drop, time_col=time_col, id_col=id_col)
    return Backtest(features, labels, policy=policy, settings=settings.drift, warmup=warmup,
                    label_delay=label_delay, ids=ids, seed=settings.stream.seed, dropped_rows=dropped,
                    serving=settings.serving)


def backtest_file(path: Path, *, progress: Callable[[int, int], None] | None = None,
                  **options: Any) -> BacktestResult:
    """`plan_backtest`, then run it."""
    return plan_backtest(path, **options).run(progress)


def write_json(result: BacktestResult, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str), encoding="utf-8")



def file_readings(path: Path, *, target: str, drop: Sequence[str] = (), time_col: str | None = None,
                  id_col: str | None = None) -> tuple[list, int]:
    """A CSV or Parquet file as the live stream's readings, prepared as `backtest` prepares
    it (time order, text categories in any Unicode, booleans as text, rows without a label
    dropped); a missing value travels as null. A record's `ts` is its time column (numbers
    as epoch seconds, or dates), else the time of replay. Returns (readings, dropped rows)."""
    import math
    import time

    from serving.synthetic import Reading

    frame = read_table(path)
    now = time.time()
    stamps = pd.Series([now + i * 1e-3 for i in range(len(frame))], index=frame.index)
    if time_col is not None and time_col in frame.columns:
        order = frame[time_col]
        if pd.api.types.is_numeric_dtype(order):
            stamps = order.astype(float)
        else:
            parsed = pd.to_datetime(order, errors="coerce", utc=True)
            if parsed.notna().all():
                order = parsed
                stamps = parsed.map(lambda t: t.timestamp())
        frame = frame.assign(_order=order.to_numpy()).sort_values("_order", kind="stable").drop(columns="_order")
        stamps = stamps.loc[frame.index]
    features, labels, ids, dropped = prepare(frame, target, drop=drop, time_col=time_col, id_col=id_col)
    times = stamps[frame[target].notna().to_numpy()].tolist() if target in frame.columns else []
    readings = []
    rows = cast(list[dict[str, Any]], features.to_dict("records"))  # CSV and Parquet name columns with text
    for i, row in enumerate(rows):
        record_id = str(ids.iloc[i]) if ids is not None else f"{path.stem}-{i:09d}"
        values = {k: None if v is None or (isinstance(v, float) and math.isnan(v)) else v for k, v in row.items()}
        label = labels.iloc[i]
        label = label.item() if hasattr(label, "item") else label
        ts = times[i] if not (isinstance(times[i], float) and math.isnan(times[i])) else now
        readings.append(Reading(seq=i, device=record_id, record={"id": record_id, "ts": float(ts), "features": values},
                                label=label))
    return readings, dropped
