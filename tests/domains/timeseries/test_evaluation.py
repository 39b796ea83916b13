"""Rolling-origin backtests, GluonTS evaluation and fan charts on a tiny subset."""
import math

import numpy as np
import pandas as pd
import pytest

from mambatune.domains.timeseries.baselines import seasonal_naive
from mambatune.domains.timeseries.data import TimeSeriesDataError, from_gluonts
from mambatune.domains.timeseries.demo_data import load_competition, load_hourly
from mambatune.domains.timeseries.evaluation import (
    METRIC_NAMES, evaluate, evaluate_by_series, fan_charts, official_split, rolling_origin,
)


def sine_collection(n=3, length=24 * 10):
    t = np.arange(length)
    return from_gluonts([{"start": pd.Period("2024-01-01 00:00", "h"), "item_id": f"s{i}",
                          "target": (10 + i + np.sin(2 * np.pi * t / 24)).astype(np.float32)} for i in range(n)])


def test_rolling_origin_windows_and_perfect_seasonal_naive():
    backtest = rolling_origin(sine_collection(), prediction_length=24, windows=3)
    assert len(backtest) == 9
    starts = sorted({str(inp["start"] + len(inp["target"])) for inp, _ in backtest.test_data})
    assert len(starts) == 3
    first_train = next(iter(backtest.train))
    assert len(first_train["target"]) == 240 - 72 and "observed_values" not in first_train
    forecasts = list(seasonal_naive(24, 24).predict(backtest.test_data.input))
    result = evaluate(forecasts, backtest.test_data, seasonality=1)  # a 24-periodic series has 0 seasonal error
    assert set(result.overall) == set(METRIC_NAMES)
    assert result.overall["MASE"] == pytest.approx(0, abs=1e-4)
    assert result.overall["sMAPE"] == pytest.approx(0, abs=1e-3)
    assert len(result.per_item) == 9 and {"item_id", "MASE", "sMAPE"} <= set(result.per_item.columns)


def test_backtest_skips_and_counts_short_series():
    coll = from_gluonts([{"start": pd.Period("2024-01", "M"), "target": np.ones(n, dtype=np.float32) * (n + 1),
                          "item_id": str(n)} for n in (40, 20, 10)])
    backtest = rolling_origin(coll, prediction_length=6, windows=2, min_past=12)
    assert len(backtest) == 2 and sum(backtest.skipped.values()) == 2
    with pytest.raises(TimeSeriesDataError, match="no series is long enough"):
        rolling_origin(coll, prediction_length=24, windows=2)


def test_official_split_on_m3_subset_and_fan_charts(tmp_path):
    split = load_competition("m3", "monthly", max_series=5)
    assert split.horizon == 18 and len(split.train) == 5
    backtest = official_split(split.train, split.test, split.horizon)
    labels = [label["target"] for _, label in backtest.test_data]
    np.testing.assert_array_equal(labels[0], split.test[0]["target"][-18:])
    forecasts = list(seasonal_naive(18, 12).predict(backtest.test_data.input))
    result = evaluate(forecasts, backtest.test_data, seasonality=12)
    assert all(math.isfinite(v) for v in result.overall.values())
    paths = fan_charts(forecasts, backtest.test_data, tmp_path, max_series=2, title="M3 monthly")
    assert len(paths) == 2 and all(p.stat().st_size > 5_000 for p in paths)
    assert paths[0].read_bytes()[:4] == b"\x89PNG"


def test_hourly_demo_series_backtest():
    electricity = load_hourly("electricity")
    assert len(electricity[0]["target"]) == 26_304
    backtest = rolling_origin(electricity, prediction_length=24, windows=7)
    forecasts = list(seasonal_naive(24, 168).predict(backtest.test_data.input))
    result = evaluate(forecasts, backtest.test_data)
    assert 0 < result.overall["MASE"] < 5 and 0 < result.overall["ND"] < 1


def test_forecast_count_mismatch_raises():
    backtest = rolling_origin(sine_collection(), prediction_length=24)
    with pytest.raises(ValueError, match="2 forecasts for 3 test windows"):
        evaluate(list(seasonal_naive(24, 24).predict(backtest.test_data.input))[:2], backtest.test_data)


def test_scores_per_series_and_their_mean():
    backtest = rolling_origin(sine_collection(), prediction_length=24, windows=2)
    forecasts = list(seasonal_naive(24, 12).predict(backtest.test_data.input))  # half a period off: errors
    per_series = evaluate_by_series(forecasts, backtest.test_data, seasonality=1)
    assert list(per_series) == ["s0", "s1", "s2", "mean"]
    assert all(set(scores) == set(METRIC_NAMES) for scores in per_series.values())
    for metric in METRIC_NAMES:
        assert per_series["mean"][metric] == pytest.approx(np.mean([per_series[s][metric] for s in ("s0", "s1", "s2")]))
    # MASE is a mean over windows, so the mean over equal-sized series is the overall one
    assert per_series["mean"]["MASE"] == pytest.approx(evaluate(forecasts, backtest.test_data, seasonality=1).overall["MASE"])
