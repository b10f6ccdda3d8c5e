"""`driftctl plot` on backtest JSON: a PNG, with or without a per-record accuracy curve."""

import json
from pathlib import Path

import pytest

from driftctl.app.plot import PlotError, draw, from_backtest, load

PNG = b"\x89PNG\r\n\x1a\n"

BACKTEST = {"rows": 20_000, "warmup": 2_000, "policy": "drift", "accuracy": 0.91, "retrains": 1,
            "drift_events": [{"index": 10_120, "detector": "error-adwin", "statistic": 0.3, "threshold": 0.05},
                             {"index": 10_400, "detector": "data-ks", "statistic": 1e-9, "threshold": 2.5e-4}],
            "promotions": [{"index": 11_800, "version": 2}], "seconds": 12.3}


def test_backtest_with_an_accuracy_curve(tmp_path):
    data = {**BACKTEST, "accuracy_curve": [[i, 0.95 if i < 10_000 else 0.7] for i in range(2_000, 20_000, 500)]}
    drawn = draw(from_backtest(data), tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:8] == PNG
    assert drawn["accuracy_points"] == 36 and drawn["drift_events"] == 2 and drawn["promotions"] == [2]
    assert drawn["detectors"] == {"error-adwin": 1, "data-ks": 1}
    assert drawn["notes"] == []


def test_backtest_block_curve_as_driftctl_backtest_writes_it(tmp_path):
    data = {**BACKTEST, "accuracy_curve": {"every": 400, "values": [0.95] * 25 + [0.6] * 25}}
    timeline = from_backtest(data)
    assert timeline.accuracy_curve[0] == (200, 0.95) and timeline.accuracy_curve[-1] == (19_800, 0.6)
    assert draw(timeline, tmp_path / "b.png")["accuracy_points"] == 50


def test_backtest_without_curve_or_positions_degrades_with_a_note(tmp_path):
    data = {**BACKTEST, "promotions": 1, "drift_events": [{"index": 10_120, "detector": "error-adwin"}]}
    timeline = from_backtest(data)
    assert timeline.promotions == [] and timeline.statistics == {}
    assert any("accuracy_curve" in n for n in timeline.notes) and any("1 promotion" in n for n in timeline.notes)
    drawn = draw(timeline, tmp_path / "nested" / "t.png")
    assert Path(drawn["out"]).read_bytes()[:8] == PNG


def test_not_a_backtest_is_a_clear_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"records": 3}))
    with pytest.raises(PlotError, match="not a `driftctl backtest --json` output"):
        load(path, None)
    path.write_text("{")
    with pytest.raises(PlotError, match="not JSON"):
        load(path, None)


def test_cli_plot(tmp_path, home, cli):
    source = tmp_path / "bt.json"
    source.write_text(json.dumps(BACKTEST))
    done = cli("plot", str(source), "--out", str(tmp_path / "o.png"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["promotions"] == [2]
    assert (tmp_path / "o.png").read_bytes()[:8] == PNG
    empty = cli("plot", "--out", str(tmp_path / "p.png"))
    assert empty.returncode == 1
    assert empty.stderr.startswith("driftctl: error: nothing to plot") and len(empty.stderr.splitlines()) == 1
