"""The sustained run's lag growth: a slope over the samples taken while the load is offered."""

from driftctl.app.bench import lag_growth


def test_lag_growth_is_the_slope_while_producing():
    times = [float(t) for t in range(30)]
    lags = [500.0 * t for t in range(20)] + [9500.0] * 10  # grows 500/s, then flat once the producer is done
    produced = [10_000 * t for t in range(20)] + [200_000] * 10
    assert abs(lag_growth(times, lags, produced, 200_000, start=5.0) - 500.0) < 1e-6
    # the flat tail after the producer finished is what pulled the old fit down
    assert lag_growth(times, lags, [0] * 30, 200_000, start=5.0) < 400.0


def test_lag_growth_needs_three_samples_past_start():
    assert lag_growth([0.0, 1.0, 12.0, 13.0], [0.0, 1.0, 2.0, 3.0], [0, 1, 2, 3], 10, start=10.0) is None
    assert abs(lag_growth([10.0, 11.0, 12.0], [3.0, 2.0, 1.0], [0, 1, 2], 10, start=10.0) + 1.0) < 1e-9
