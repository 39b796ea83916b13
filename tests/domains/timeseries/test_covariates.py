"""Known covariates (given, and a holiday calendar's) and static categories in the forecaster."""
import numpy as np
import pandas as pd
import pytest
import torch

from mambatune.domains.timeseries import TimeSeriesDataError
from mambatune.domains.timeseries.data import from_gluonts
from mambatune.domains.timeseries.estimator import MambaEstimator, MambaPredictor, covariate_layout
from mambatune.domains.timeseries.module import ForecasterConfig, MambaForecaster, save_forecaster
from mambatune.domains.timeseries.transforms import ForecastWindows, holiday_dates, holiday_features

START = pd.Period("2016-01-01 00:00", freq="h")
H = 24


def driven_series(n: int = 3, length: int = 400, seed: int = 0, static: bool = False):
    """Series equal to 5 × a random known covariate + 10 (+ 3 × the static code): (training entries, whose
    covariates stop with the target; prediction entries, whose covariates run H steps further; the H
    true future values of each)."""
    rng = np.random.default_rng(seed)
    train, predict, future = [], [], []
    for i in range(n):
        x = rng.normal(size=length + H).astype(np.float32)
        y = 5 * x + 10 + 3 * (i % 2 if static else 0) + 0.05 * rng.normal(size=length + H).astype(np.float32)
        entry = {"start": START, "target": y[:length], "item_id": f"s{i}"}
        if static:
            entry["feat_static_cat"] = np.array([i % 2])
        train.append({**entry, "feat_dynamic_real": x[None, :length]})
        predict.append({**entry, "feat_dynamic_real": x[None]})
        future.append(y[length:])
    return train, predict, future


def tiny(**kw) -> MambaEstimator:
    return MambaEstimator(freq="h", prediction_length=H, context_length=48, patch_length=8, stride=4,
                          backbone={"d_model": 16, "n_layer": 1, "d_state": 4}, max_train_windows=512,
                          train={"epochs": 8, "batch_size": 32, "lr": 2e-2}, **kw)


def mae(predictor, entries, future) -> float:
    return float(np.mean([np.abs(f.median - y).mean() for f, y in zip(predictor.predict(entries), future)]))


def test_us_holidays_around_christmas_2016():
    days = holiday_dates("us", pd.Timestamp("2016-12-20"), pd.Timestamp("2017-01-03"))
    assert [d.day for d in days] == [24, 25, 26, 31, 1, 2]  # 25 Dec and 1 Jan fell on Sundays: observed on Mondays
    feats = holiday_features(pd.Period("2016-12-20 00:00", freq="h"), 24 * 14, "us")
    assert feats.shape == (2, 24 * 14) and feats.dtype == np.float32
    daily = feats.reshape(2, 14, 24)
    assert (daily == daily[:, :, :1]).all()  # constant within a day
    assert daily[0, :, 0].tolist() == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1]  # 24-26 Dec, 31 Dec-2 Jan
    assert daily[1, 3, 0] == pytest.approx(np.exp(-0.5)) and daily[1, 0, 0] == pytest.approx(np.exp(-2.0))
    with pytest.raises(ValueError, match="daily or finer"):
        holiday_features(pd.Period("2016-01", freq="M"), 12, "us")
    with pytest.raises(ValueError, match="not a known calendar"):
        holiday_features(pd.Period("2016-01-01", freq="D"), 12, "uk")


def test_windows_carry_the_covariates_of_context_and_horizon():
    train, _, _ = driven_series(n=1, length=100)
    windows = ForecastWindows(from_gluonts(train, "h"), context_length=48, prediction_length=H, stride=10,
                              holidays="us")
    item = windows[0]  # the newest cut: the horizon is the last 24 steps
    x = train[0]["feat_dynamic_real"][0]
    assert item["past_known"].shape == (48, 3) and item["future_known"].shape == (H, 3)
    np.testing.assert_array_equal(item["future_known"][:, 0], x[-H:])
    np.testing.assert_array_equal(item["past_known"][:, 0], x[-H - 48:-H])
    assert (item["future_known"][:, 1] == 0).all()  # 4 January 2016: no holiday (the holiday row)
    oldest = windows[len(windows) - 1]  # the cut at step 4: a left-padded context, the horizon on 1 January
    t = int(windows.index[-1][1])
    assert (oldest["past_known"][:48 - t] == 0).all() and oldest["past_observed"].sum() == t
    assert (oldest["future_known"][:24 - t, 1] == 1).all() and (oldest["future_known"][24 - t:, 1] == 0).all()


def test_known_covariates_are_learnt_and_serialized(tmp_path):
    train, predict, future = driven_series()
    plain_train = [{k: v for k, v in e.items() if k != "feat_dynamic_real"} for e in train]
    with_cov = tiny().train(train)
    without = tiny().train(plain_train)
    assert with_cov.model.config.num_dynamic_real == 1
    err_with, err_without = mae(with_cov, predict, future), mae(without, plain_train, future)
    assert err_with < 0.25 * err_without, (err_with, err_without)  # the target is 5 × the covariate
    with_cov.serialize(tmp_path / "p")
    again = MambaPredictor.deserialize(tmp_path / "p")
    np.testing.assert_array_equal(next(iter(again.predict(predict))).samples,
                                  next(iter(with_cov.predict(predict))).samples)


def test_static_categories_and_holidays_train_and_forecast():
    train, predict, future = driven_series(n=4, static=True)
    predictor = tiny(holidays="us").train(train)
    cfg = predictor.model.config
    assert cfg.static_cardinalities == [2] and cfg.num_known == 3 and cfg.holidays == "us"
    assert predictor.model.static[0].weight.abs().sum() > 0  # started at zero, trained
    forecasts = list(predictor.predict(predict))
    assert len(forecasts) == 4 and all(np.isfinite(f.samples).all() for f in forecasts)
    bad = [{**predict[0], "feat_static_cat": np.array([5])}]
    with pytest.raises(ValueError, match="categories seen in training"):
        list(predictor.predict(bad))


def test_covariate_errors_are_clear(tmp_path):
    train, predict, _ = driven_series()
    predictor = tiny().train(train)
    with pytest.raises(TimeSeriesDataError, match="must also cover the forecast horizon"):
        list(predictor.predict(train))  # covariates stop with the target
    with pytest.raises(TimeSeriesDataError, match="carries 0 known covariates"):
        list(predictor.predict([{k: v for k, v in predict[0].items() if k != "feat_dynamic_real"}]))
    mixed = [train[0], {k: v for k, v in train[1].items() if k != "feat_dynamic_real"}]
    with pytest.raises(TimeSeriesDataError, match="disagree on their covariates"):
        covariate_layout(from_gluonts(mixed, "h"))
    with pytest.raises(TimeSeriesDataError, match="validation series carry 0 known covariates"):
        tiny().train(train, validation_data=[{k: v for k, v in e.items() if k != "feat_dynamic_real"} for e in train])
    # a forecaster trained with one covariate cannot be fine-tuned on data with two
    save_forecaster(predictor.model, tmp_path / "one")
    two = [{**e, "feat_dynamic_real": np.concatenate([e["feat_dynamic_real"]] * 2)} for e in train]
    with pytest.raises(ValueError, match="trained with 1 known covariates"):
        tiny(pretrained=tmp_path / "one").train(two)


def test_covariate_maps_start_at_zero_so_a_pretrained_model_is_unchanged():
    base = MambaForecaster(ForecasterConfig(context_length=48, prediction_length=H, patch_length=8, stride=4,
                                            backbone={"d_model": 16, "n_layer": 1, "d_state": 4}))
    past = torch.randn(2, 48) + 5
    observed = torch.ones(2, 48)
    before = base(past, observed).logits
    base.config = ForecasterConfig.from_dict({**base.config.to_dict(), "num_dynamic_real": 1, "holidays": "us",
                                              "static_cardinalities": [3]})
    assert base.add_covariate_inputs() == ["known", "future_merge", "known_direct", "static"]
    after = base(past, observed, past_known=torch.randn(2, 48, 3), future_known=torch.randn(2, H, 3),
                 static_cat=torch.tensor([[0], [2]])).logits
    torch.testing.assert_close(after, before)
    with pytest.raises(ValueError, match="pass past_known"):
        base(past, observed, static_cat=torch.tensor([[0], [2]]))
    with pytest.raises(ValueError, match="dynamic_loc / dynamic_scale"):
        ForecasterConfig(num_dynamic_real=2, dynamic_scale=[1.0, 0.0])
