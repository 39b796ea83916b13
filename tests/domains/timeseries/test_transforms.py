"""Scaling, time features, patching, per-step tokens and windows."""
import numpy as np
import pandas as pd
import pytest
import torch

from mambatune.domains.timeseries.data import TimeSeriesDataError, from_gluonts
from mambatune.domains.timeseries.transforms import (
    SCALINGS, ForecastWindows, RevIN, instance_scale, num_patches, num_time_features, patchify, step_tokens,
    time_features,
)

START = pd.Period("2024-01-01 00:00", freq="h")


def collection(*lengths, nan_at=None):
    entries = []
    for i, n in enumerate(lengths):
        target = np.arange(n, dtype=np.float32) + 1
        if nan_at is not None and nan_at < n:
            target[nan_at] = np.nan
        entries.append({"start": START, "target": target, "item_id": f"s{i}"})
    return from_gluonts(entries)


@pytest.mark.parametrize("method", SCALINGS)
def test_constant_and_zero_series_scale_safely(method):
    x = torch.tensor([[5.0] * 8, [0.0] * 8, [-3.0] * 8])
    scaled = instance_scale(x, method=method)
    assert torch.isfinite(scaled.values).all() and (scaled.scale > 0).all()
    torch.testing.assert_close(scaled.unscale(scaled.values), x)
    future = scaled.unscale(torch.ones(3, 4))
    assert torch.isfinite(future).all()


@pytest.mark.parametrize("method", ["mean", "std", "revin"])
def test_nan_steps_are_ignored_by_the_statistics(method):
    x = torch.tensor([[1.0, 2.0, float("nan"), 4.0]])
    observed = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    scaled = instance_scale(x, observed, method)
    reference = instance_scale(torch.tensor([[1.0, 2.0, 4.0]]), method=method)
    torch.testing.assert_close(scaled.scale, reference.scale)
    assert torch.isfinite(scaled.values).all() and scaled.values[0, 2] == 0


def test_revin_inverts():
    x = torch.randn(4, 32) * 10 + 3
    revin = RevIN()
    with torch.no_grad():
        revin.weight.fill_(1.7)
        revin.bias.fill_(-0.3)
    y, stats = revin(x)
    torch.testing.assert_close(revin.inverse(y, stats), x, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="unknown scaling"):
        instance_scale(x, method="minmax")


def test_time_features_follow_gluonts():
    feats = time_features(START, 48)
    assert feats.shape == (num_time_features("h"), 48) and feats.dtype == np.float32
    assert np.abs(feats).max() <= 0.5
    assert feats[0, 0] == feats[0, 24]  # hour of day repeats daily


@pytest.mark.parametrize("length,patch,stride", [(64, 16, 8), (63, 16, 8), (10, 16, 8), (8192, 64, 64)])
def test_patchify_covers_the_end(length, patch, stride):
    x = torch.arange(length, dtype=torch.float32).expand(2, length)
    patches = patchify(x, torch.ones_like(x), patch, stride)
    n = num_patches(length, patch, stride)
    assert patches.values.shape == (2, n, patch)
    assert patches.values[0, -1, -1] == length - 1
    assert patches.observed.sum(-1)[0, -1] == min(patch, length)
    padded = (n - 1) * stride + patch - length
    assert patches.observed[0, 0, :padded].sum() == 0


def test_step_tokens():
    values = torch.zeros(2, 10)
    tokens = step_tokens(values, torch.ones(2, 10), torch.zeros(2, 10, 4))
    assert tokens.shape == (2, 10, 6)


def test_series_shorter_than_context_is_padded_with_mask():
    windows = ForecastWindows(collection(100), context_length=8192, prediction_length=24, stride=10)
    item = windows[0]
    assert item["past_target"].shape == (8192,) and item["past_time_feat"].shape == (8192, 4)
    assert item["past_observed"].sum() == 76 and item["past_target"][:-76].sum() == 0
    np.testing.assert_array_equal(item["future_target"], np.arange(77, 101))
    assert item["future_time_feat"].shape == (24, 4)


def test_series_shorter_than_horizon_skipped_or_raises():
    windows = ForecastWindows(collection(100, 10), context_length=32, prediction_length=24)
    assert len({int(s) for s in windows.index[:, 0]}) == 1
    assert sum(windows.skipped.values()) == 1 and "shorter than 25 steps" in next(iter(windows.skipped))
    with pytest.raises(TimeSeriesDataError, match="has 10 steps.*on_short='skip'"):
        ForecastWindows(collection(100, 10), context_length=32, prediction_length=24, on_short="raise")


def test_nan_targets_in_windows_are_zero_and_unobserved():
    windows = ForecastWindows(collection(40, nan_at=30), context_length=16, prediction_length=4, stride=1)
    for i in range(len(windows)):
        item = windows[i]
        for key in ("past_target", "future_target"):
            assert np.isfinite(item[key]).all()
    item = windows[0]  # newest window: horizon 36..39, context 20..35
    assert item["past_observed"][30 - 20] == 0


def test_predict_windows_end_at_the_last_step():
    windows = ForecastWindows(collection(50, 5), context_length=16, prediction_length=8, mode="predict")
    assert len(windows) == 2 and "future_target" not in windows[0]
    assert windows[1]["past_target"][-1] == 5 and windows[1]["past_observed"].sum() == 5
    assert windows[0]["future_time_feat"].shape == (8, 4)
