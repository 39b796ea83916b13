"""The Mamba forecaster through its GluonTS interface: train a few batches on tiny series, predict,
score with GluonTS' evaluation, round-trip the predictor, fine-tune from a checkpoint, bad input."""
import numpy as np
import pandas as pd
import pytest
import torch

from mambatune.domains.timeseries import TimeSeriesDataError, evaluate, rolling_origin
from mambatune.domains.timeseries.data import from_gluonts
from mambatune.domains.timeseries.estimator import MambaEstimator, MambaPredictor, balanced_pick
from mambatune.domains.timeseries.module import (
    ForecasterConfig, MambaForecaster, interpolate_quantiles, load_forecaster, save_forecaster, student_t_icdf,
)

H, C = 6, 48
TINY = {"d_model": 8, "n_layer": 1, "d_state": 4}


def series(n_series: int = 3, length: int = 200, freq: str = "h", seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return [{"start": pd.Period("2024-01-01 00:00", freq=freq), "item_id": f"s{i}",
             "target": (10 + i + np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(length)).astype(np.float32)}
            for i in range(n_series)]


def estimator(**kw) -> MambaEstimator:
    args = dict(freq="h", prediction_length=H, context_length=C, patch_length=8, stride=4, backbone=TINY,
                train={"max_steps": 3, "batch_size": 8, "eval_every": 2}, max_train_windows=64, num_samples=20)
    args.update(kw)
    return MambaEstimator(**args)


@pytest.fixture(scope="module")
def backtest():
    return rolling_origin(from_gluonts(series()), H, windows=2)


@pytest.fixture(scope="module")
def predictor(backtest):
    return estimator().train(backtest.train, validation_data=backtest.train)


def test_train_predict_evaluate(predictor, backtest):
    from gluonts.model.forecast import SampleForecast

    forecasts = list(predictor.predict(backtest.test_data.input))
    assert len(forecasts) == len(backtest.test_data) == 6
    f = forecasts[0]
    assert isinstance(f, SampleForecast) and f.samples.shape == (20, H) and np.isfinite(f.samples).all()
    first_input = next(iter(backtest.test_data.input))
    assert f.start_date == first_input["start"] + len(first_input["target"])
    scores = evaluate(forecasts, backtest.test_data, seasonality=24).overall
    assert set(scores) == {"MASE", "sMAPE", "MSIS", "wQL", "ND", "NRMSE"}
    assert all(np.isfinite(v) for v in scores.values())


def test_serialize_round_trip_gives_identical_forecasts(predictor, backtest, tmp_path):
    from gluonts.model.predictor import Predictor

    predictor.serialize(tmp_path / "p")
    files = {p.name for p in (tmp_path / "p").iterdir()}
    assert {"model.safetensors", "forecaster.json", "predictor.json"} <= files
    assert not any(name.endswith((".pkl", ".pt", ".bin")) for name in files)
    again = MambaPredictor.deserialize(tmp_path / "p")
    via_gluonts = Predictor.deserialize(tmp_path / "p")
    a = [f.samples for f in predictor.predict(backtest.test_data.input)]
    b = [f.samples for f in again.predict(backtest.test_data.input)]
    c = [f.samples for f in via_gluonts.predict(backtest.test_data.input)]
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)


def test_quantile_head_and_per_step_tokens(backtest):
    from gluonts.model.forecast import QuantileForecast

    pred = estimator(distribution="quantile", patch_length=1, stride=1, context_length=24,
                     time_features=False).train(backtest.train)
    forecasts = list(pred.predict(backtest.test_data.input))
    assert isinstance(forecasts[0], QuantileForecast)
    q = np.stack([forecasts[0].quantile(level) for level in (0.1, 0.5, 0.9)])
    assert (np.diff(q, axis=0) >= 0).all()
    assert np.isfinite(evaluate(forecasts, backtest.test_data).overall["wQL"])


@pytest.mark.parametrize("method", [{"method": "lora", "targets": ["in_proj", "out_proj"], "rank": 2},
                                    {"method": "head_only"}, {"method": "full"}])
def test_fine_tune_from_pretrained_checkpoint(tmp_path, backtest, method):
    torch.manual_seed(0)
    base = MambaForecaster(ForecasterConfig(context_length=C, prediction_length=H, patch_length=8, stride=4,
                                            num_time_features=4, backbone=TINY))
    save_forecaster(base, tmp_path / "base")
    before = {k: v.clone() for k, v in load_forecaster(tmp_path / "base").state_dict().items()}
    pred = estimator(pretrained=tmp_path / "base", peft=method).train(backtest.train)
    after = pred.model.state_dict()
    assert after.keys() == before.keys()  # LoRA merged into plain weights
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("head.") for k in changed)
    if method["method"] == "head_only":
        assert all(k.startswith("head.") for k in changed)
    else:
        assert any(k.startswith("backbone.") for k in changed)
    assert len(list(pred.predict(backtest.test_data.input))) == len(backtest.test_data)


def test_training_goes_through_the_one_fine_tune_path(tmp_path, backtest):
    """MambaEstimator.train runs core.training.finetune: the trainable-parameter table of its PEFT method,
    a pretrained forecaster rebuilt for another kernel backend with the same weights, and a run identity
    holding the training series' fingerprint, so its output folder does not resume onto other series."""
    from mambatune.core.training.identity import RunIdentityError

    torch.manual_seed(0)
    base = MambaForecaster(ForecasterConfig(context_length=C, prediction_length=H, patch_length=8, stride=4,
                                            num_time_features=4, backbone=TINY))
    save_forecaster(base, tmp_path / "base")
    lora = {"method": "lora", "targets": ["in_proj"], "rank": 2}
    est = estimator(pretrained=tmp_path / "base", peft=lora, backend="reference",
                    train={"max_steps": 2, "batch_size": 8, "output_dir": str(tmp_path / "run")})
    pred = est.train(backtest.train)
    assert "lora" in est.last_summary and "trainable" in est.last_summary and est.last_result.steps == 2
    assert pred.model.config.backbone["backend"] == "reference" and pred.model.config.backbone["d_model"] == 8
    again = estimator(pretrained=tmp_path / "base", peft=lora, backend="reference",
                      train={"max_steps": 3, "batch_size": 8, "output_dir": str(tmp_path / "run")})
    again.train(backtest.train)  # the same series: resumes from step 2
    assert again.last_result.steps == 3
    other = rolling_origin(from_gluonts(series(seed=1)), H, windows=2)
    with pytest.raises(RunIdentityError, match="extra.data_fingerprint"):
        estimator(pretrained=tmp_path / "base", peft=lora, backend="reference",
                  train={"max_steps": 4, "batch_size": 8, "output_dir": str(tmp_path / "run")}).train(other.train)


def test_new_horizon_gets_a_new_head(tmp_path, backtest):
    base = MambaForecaster(ForecasterConfig(context_length=C, prediction_length=12, patch_length=8, stride=4,
                                            num_time_features=4, backbone=TINY))
    save_forecaster(base, tmp_path / "base")
    pred = estimator(pretrained=tmp_path / "base", peft={"method": "head_only"}).train(backtest.train)
    assert pred.model.config.prediction_length == H and pred.prediction_length == H


@pytest.mark.parametrize("context", [16, 200])
def test_fine_tune_at_another_context_length(tmp_path, backtest, context):
    """Pretrained at C = 48: fine-tuned and forecasting at a shorter and a longer context (same patching)."""
    base = MambaForecaster(ForecasterConfig(context_length=C, prediction_length=H, patch_length=8, stride=4,
                                            num_time_features=4, backbone=TINY))
    save_forecaster(base, tmp_path / "base")
    pred = estimator(pretrained=tmp_path / "base", context_length=context,
                     peft={"method": "lora", "targets": ["in_proj"], "rank": 2}).train(backtest.train)
    assert pred.model.config.context_length == context and pred.model.config.num_tokens > 1
    forecasts = list(pred.predict(backtest.test_data.input))
    assert all(np.isfinite(f.samples).all() for f in forecasts)


def test_other_patching_than_the_pretrained_one_is_a_clear_error(tmp_path, backtest):
    base = MambaForecaster(ForecasterConfig(context_length=C, prediction_length=H, patch_length=8, stride=4,
                                            num_time_features=4, backbone=TINY))
    save_forecaster(base, tmp_path / "base")
    with pytest.raises(ValueError, match="set patch_length=8 and stride=4"):
        estimator(pretrained=tmp_path / "base", patch_length=16, stride=8).train(backtest.train)


def test_balanced_window_sampling_shares_equally_among_series():
    rng = np.random.default_rng(0)
    owner = np.repeat([0, 1, 2], [1000, 30, 500])  # window -> series
    pick = balanced_pick(owner, 300, rng)
    assert len(pick) == len(set(pick)) == 300
    assert np.bincount(owner[pick]).tolist() == [135, 30, 135]  # the short series gives all it has
    long_and_short = series(1, length=2000) + series(1, length=60, seed=1)
    long_and_short[1]["item_id"] = "short"
    for sampling, low in (("balanced", 25), ("proportional", 0)):
        windows = estimator(max_train_windows=50, window_sampling=sampling).windows(from_gluonts(long_and_short))
        per_series = np.bincount([windows[i]["series_index"] for i in range(len(windows))], minlength=2)
        assert per_series.sum() == 50 and per_series[1] >= low
    with pytest.raises(ValueError, match="window_sampling"):
        estimator(window_sampling="uniform")


# -- bad input -------------------------------------------------------------------------------

def test_nan_targets_and_constant_series_train_and_forecast():
    data = series(2)
    data[0]["target"][50:80] = np.nan
    data[0]["target"][-3:] = np.nan  # missing at the end of the context too
    data[1]["target"][:] = 5.0       # zero scale
    bt = rolling_origin(from_gluonts(data), H, windows=1)
    pred = estimator().train(bt.train)
    forecasts = list(pred.predict(bt.test_data.input))
    assert all(np.isfinite(f.samples).all() for f in forecasts)
    assert np.abs(forecasts[1].mean - 5.0).max() < 50  # a constant series stays near its level


def test_series_shorter_than_context_or_horizon():
    data = series(2, length=200) + [{"start": pd.Period("2024-01-01 00:00", freq="h"), "item_id": "short",
                                     "target": np.ones(4, dtype=np.float32)}]
    pred = estimator().train(data)  # the 4-step series cannot give a training window: skipped
    forecasts = list(pred.predict([{"start": pd.Period("2024-01-01", freq="h"), "target": np.arange(10.0)}]))
    assert forecasts[0].samples.shape == (20, H)  # shorter than the context: left-padded, masked
    with pytest.raises(TimeSeriesDataError, match="no training window"):
        estimator().train(series(2, length=5))


def test_frequency_mismatch_is_a_clear_error(predictor):
    daily = series(1, freq="D")
    with pytest.raises(TimeSeriesDataError, match="frequency mismatch"):
        list(predictor.predict(daily))
    with pytest.raises(TimeSeriesDataError, match="frequency mismatch"):
        estimator().train(daily)


def test_config_errors_and_checkpoint_errors(tmp_path):
    with pytest.raises(ValueError, match="distribution"):
        ForecasterConfig(distribution="gaussian")
    with pytest.raises(ValueError, match="did you mean 'patch_length'"):
        ForecasterConfig.from_dict({"patch_len": 4})
    with pytest.raises(FileNotFoundError, match="save_forecaster"):
        load_forecaster(tmp_path)


def test_sampling_helpers():
    u = torch.tensor([0.025, 0.5, 0.975])
    z = student_t_icdf(u, torch.full_like(u, 1e6))
    np.testing.assert_allclose(z.numpy(), [-1.96, 0.0, 1.96], atol=1e-2)
    levels = torch.tensor([0.1, 0.5, 0.9])
    values = torch.tensor([[1.0, 2.0, 4.0]])
    np.testing.assert_allclose(interpolate_quantiles(values, levels, torch.tensor([0.3])).numpy(), [1.5])


def test_forecasting_page_examples_run(tmp_path, monkeypatch):
    """Every ```python block of docs/forecasting.md runs as written, in order, sharing one namespace."""
    from helpers import REPO, python_blocks

    blocks = python_blocks(REPO / "docs" / "forecasting.md")
    assert len(blocks) >= 2, "docs/forecasting.md lost its python examples"
    monkeypatch.chdir(tmp_path)  # nothing may be written into the repository
    namespace = {"__name__": "__docs__"}
    for code in blocks:
        exec(compile(code, "docs/forecasting.md", "exec"), namespace)


# -- seasonal skip -------------------------------------------------------------------------------

@pytest.mark.parametrize("distribution", ["student_t", "quantile"])
def test_seasonal_skip_starts_from_the_seasonal_naive_forecast(distribution):
    """With the head's projection zeroed, the location is exactly the seasonal-naive forecast (the last
    period repeated over a horizon longer than the period) in data units."""
    period, horizon = 5, 12
    cfg = ForecasterConfig(context_length=20, prediction_length=horizon, patch_length=4, stride=4, backbone=TINY,
                           seasonal_skip=period, distribution=distribution, scaling="revin")
    model = MambaForecaster(cfg).eval()
    torch.nn.init.zeros_(model.head.proj.weight)
    torch.nn.init.zeros_(model.head.proj.bias)
    past = torch.randn(3, 20) * 4 + 30
    out = model(past, torch.ones_like(past))
    expected = past[:, -period:].repeat(1, 3)[:, :horizon]  # steps C-5..C-1, then again
    if distribution == "student_t":
        location = out.logits[..., 1] * out.scale + out.loc
    else:
        location = out.logits[..., 0] * out.scale + out.loc  # the lowest quantile: base + 0 (the cumulative start)
    torch.testing.assert_close(location, expected, rtol=1e-5, atol=1e-4)
    plain = MambaForecaster(ForecasterConfig(**{**cfg.to_dict(), "seasonal_skip": 0}))
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in plain.parameters()) + horizon
    with torch.no_grad():
        model.head.skip_weight.zero_()  # the learnable weight turns the seasonal forecast off
    out = model(past, torch.ones_like(past))
    assert out.logits[..., 0 if distribution == "quantile" else 1].abs().max() < 1e-6


def test_seasonal_skip_trains_serializes_and_is_checked(tmp_path, backtest):
    with pytest.raises(ValueError, match="at least one period"):
        ForecasterConfig(context_length=12, seasonal_skip=24)
    with pytest.raises(ValueError, match="seasonal_skip"):
        ForecasterConfig(seasonal_skip=-1)
    trained = estimator(seasonal_skip=24).train(backtest.train)
    assert trained.model.config.seasonal_skip == 24
    trained.serialize(tmp_path / "p")
    again = MambaPredictor.deserialize(tmp_path / "p")
    assert again.model.config.seasonal_skip == 24
    a = [f.samples for f in trained.predict(backtest.test_data.input)]
    b = [f.samples for f in again.predict(backtest.test_data.input)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    # a checkpoint saved before the option existed (no key, no weight) loads with it off; fine-tuning may
    # switch it on (the head gets its weights, starting at 1)
    import json as _json

    from safetensors.torch import save_file

    save_forecaster(trained.model, tmp_path / "base")
    d = _json.loads((tmp_path / "base" / "forecaster.json").read_text())
    d["forecaster"].pop("seasonal_skip")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "forecaster.json").write_text(_json.dumps(d))
    state = trained.model.state_dict()
    assert "head.skip_weight" in state
    save_file({k: v.contiguous() for k, v in state.items() if k != "head.skip_weight"},
              tmp_path / "old" / "model.safetensors")
    assert load_forecaster(tmp_path / "old").config.seasonal_skip == 0
    tuned = estimator(pretrained=tmp_path / "old", seasonal_skip=24).train(backtest.train)
    assert tuned.model.config.seasonal_skip == 24 and tuned.model.head.skip_weight.shape == (H,)
    kept = estimator(pretrained=tmp_path / "old").train(backtest.train)
    assert kept.model.config.seasonal_skip == 0


def test_scale_window_takes_the_statistics_from_the_last_steps(tmp_path, backtest):
    """With scale_window W the loc / scale are those of the context's last W steps alone: a long context whose
    old part sits at another level scales like its recent W steps, and the whole history still reaches the
    tokens (the scaled values differ from a W-step context's only in their length)."""
    with pytest.raises(ValueError, match="scale_window"):
        ForecasterConfig(scale_window=-1)
    cfg = ForecasterConfig(context_length=64, prediction_length=8, patch_length=8, stride=8, backbone=TINY,
                           scaling="std", scale_window=16)
    model = MambaForecaster(cfg).eval()
    recent = torch.randn(2, 16) + 5
    past = torch.cat([torch.randn(2, 48) * 10 + 100, recent], -1)  # an old level far from the recent one
    values, loc, scale = model.scale_context(past, torch.ones_like(past))
    short = MambaForecaster(ForecasterConfig(**{**cfg.to_dict(), "context_length": 16, "scale_window": 0}))
    v16, loc16, scale16 = short.scale_context(recent, torch.ones_like(recent))
    torch.testing.assert_close(loc, loc16)
    torch.testing.assert_close(scale, scale16)
    torch.testing.assert_close(values[:, -16:], v16)
    assert values[:, :48].mean() > 10  # the old level stays in view, far above the recent one
    whole = MambaForecaster(ForecasterConfig(**{**cfg.to_dict(), "scale_window": 0}))
    assert not torch.allclose(whole.scale_context(past, torch.ones_like(past))[1], loc)
    # trained, serialized and kept by fine-tuning unless overridden
    trained = estimator(scale_window=C // 2).train(backtest.train)
    assert trained.model.config.scale_window == C // 2
    trained.serialize(tmp_path / "p")
    assert MambaPredictor.deserialize(tmp_path / "p").model.config.scale_window == C // 2
    save_forecaster(trained.model, tmp_path / "base")
    assert estimator(pretrained=tmp_path / "base").train(backtest.train).model.config.scale_window == C // 2
    assert estimator(pretrained=tmp_path / "base", scale_window=0).train(backtest.train).model.config.scale_window == 0
