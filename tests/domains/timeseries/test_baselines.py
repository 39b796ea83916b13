"""Baselines smoke tests on a few series: seasonal naive, Theta, and GluonTS' DeepAR/PatchTST."""
import math

import numpy as np
import pandas as pd
import pytest

from mambatune.domains.timeseries import lightning_compat
from mambatune.domains.timeseries.baselines import ThetaPredictor, TrainingBudget, run_baselines
from mambatune.domains.timeseries.data import from_gluonts
from mambatune.domains.timeseries.demo_data import load_competition
from mambatune.domains.timeseries.evaluation import official_split, rolling_origin


def test_seasonal_naive_and_theta_on_m3_quarterly():
    split = load_competition("m3", "quarterly", max_series=6)
    backtest = official_split(split.train, split.test, split.horizon)
    results = run_baselines(backtest, split.seasonality, ["seasonal_naive", "theta"])
    for result in results.values():
        assert all(math.isfinite(v) for v in result.evaluation.overall.values()), result.evaluation.overall
        assert len(result.forecasts) == 6
    theta = results["theta"].forecasts[0]
    assert theta.quantile(0.025).shape == (8,) and (theta.quantile(0.975) >= theta.quantile(0.5)).all()
    assert results["theta"].evaluation.overall["sMAPE"] < 40


@pytest.mark.parametrize("target", [
    np.full(30, 7.0),                                        # constant: zero scale
    np.r_[np.arange(1.0, 20.0), np.nan, np.arange(21.0, 31.0)],  # NaN inside
    np.array([3.0, 4.0]),                                    # shorter than a season
    np.r_[-np.arange(15.0), np.arange(15.0)],                # non-positive: additive model
])
def test_theta_handles_awkward_series(target):
    predictor = ThetaPredictor(prediction_length=5, season_length=12)
    item = {"start": pd.Period("2000-01", "M"), "target": target.astype(np.float32), "item_id": "x"}
    forecast = next(iter(predictor.predict([item])))
    for q in (0.025, 0.5, 0.975):
        assert np.isfinite(forecast.quantile(q)).all()
    if np.ptp(target) == 0:
        np.testing.assert_allclose(forecast.quantile(0.5), 7.0)


def test_missing_lightning_gives_an_install_hint(monkeypatch):
    monkeypatch.setattr(lightning_compat.importlib.util, "find_spec", lambda name: None)
    from mambatune.domains.timeseries.baselines import deepar_estimator

    with pytest.raises(ImportError, match=r"pip install 'mambatune\[timeseries\]'"):
        deepar_estimator("h", 24, 96, TrainingBudget())


def test_deepar_and_patchtst_train_on_a_tiny_budget():
    pytest.importorskip("lightning", reason="GluonTS' torch estimators need lightning (extra 'timeseries')")
    t = np.arange(24 * 12)
    coll = from_gluonts([{"start": pd.Period("2024-01-01 00:00", "h"), "item_id": f"s{i}",
                          "target": (5 + i + np.sin(2 * np.pi * t / 24)).astype(np.float32)} for i in range(3)])
    backtest = rolling_origin(coll, prediction_length=24, windows=1)
    budget = TrainingBudget(max_epochs=1, num_batches_per_epoch=2, batch_size=8)
    results = run_baselines(backtest, 24, ["deepar", "patchtst"], context_length=48, budget=budget, seed=3)
    for result in results.values():
        assert math.isfinite(result.evaluation.overall["wQL"])
    again = run_baselines(backtest, 24, ["deepar"], context_length=48, budget=budget, seed=3)  # seeded: repeats
    assert again["deepar"].evaluation.overall["wQL"] == results["deepar"].evaluation.overall["wQL"]
