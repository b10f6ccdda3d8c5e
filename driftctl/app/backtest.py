"""`driftctl backtest`: read a CSV or Parquet file, replay it through `drift.backtest`."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

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


def backtest_file(path: Path, *, progress: Callable[[int, int], None] | None = None, **options) -> BacktestResult:
    """`plan_backtest`, then run it."""
    return plan_backtest(path, **options).run(progress)


def write_json(result: BacktestResult, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str), encoding="utf-8")
