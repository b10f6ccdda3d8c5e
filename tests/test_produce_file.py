"""`driftctl produce FILE --target COL`: a user's file becomes the live stream's readings,
prepared as `backtest` prepares it (order, Unicode categories, booleans, missing values)."""

import pandas as pd
import pytest

from drift.backtest import BacktestError
from driftctl.app.backtest import file_readings


def test_a_file_becomes_readings_in_time_order_with_backtests_handling(tmp_path):
    path = tmp_path / "history.csv"
    pd.DataFrame({
        "when": ["2026-01-03T00:00:00Z", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-04T00:00:00Z"],
        "key": ["c", "a", "b", "d"],
        "city": ["Zürich", "東京", None, "Zürich"],
        "ok": [True, False, True, None],
        "x": [3.0, 1.0, None, 4.0],
        "noise": [9, 9, 9, 9],
        "fault": [1, 0, 1, None],
    }).to_csv(path, index=False)
    readings, dropped = file_readings(path, target="fault", drop=["noise"], time_col="when", id_col="key")
    assert dropped == 1
    assert [r.record["id"] for r in readings] == ["a", "b", "c"]
    assert [r.label for r in readings] == [0, 1, 1]
    assert readings[0].record["ts"] == pd.Timestamp("2026-01-01T00:00:00Z").timestamp()
    assert readings[0].record["features"] == {"city": "東京", "ok": "False", "x": 1.0}
    assert readings[1].record["features"] == {"city": None, "ok": "True", "x": None}  # missing travels as null
    assert [r.seq for r in readings] == [0, 1, 2]


def test_an_unknown_target_is_one_clear_error(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"a": [1], "b": [2]}).to_csv(path, index=False)
    with pytest.raises(BacktestError, match="unknown target 'y'"):
        file_readings(path, target="y")
