"""From series to model inputs: scaling, time features, patches or per-step tokens, windows.

Shapes: ``B`` batch, ``C`` context length (steps), ``H`` prediction length,
``F`` time features, ``P`` patch length, ``N`` number of patches.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from .data import SeriesCollection, TimeSeriesDataError
from .frequency import normalise_freq, offset_alias

SCALINGS = ("mean", "std", "revin", "none")


# --------------------------------------------------------------------------- scaling
@dataclass
class Scaled:
    """``values = (raw - loc) / scale``; ``loc``, ``scale``: (B, 1)."""

    values: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor

    def unscale(self, x: torch.Tensor) -> torch.Tensor:
        """Map model-space values (B, ...) back to the data's units."""
        shape = (-1,) + (1,) * (x.dim() - 1)
        return x * self.scale.reshape(shape) + self.loc.reshape(shape)


def instance_scale(x: torch.Tensor, observed: torch.Tensor | None = None, method: str = "mean",
                   min_scale: float = 1e-5) -> Scaled:
    """Scale each series of ``x`` (B, C) by statistics of its observed steps.

    - ``mean``: ``scale`` = mean |x| (DeepAR style), ``loc`` = 0
    - ``std`` / ``revin``: ``loc`` = mean, ``scale`` = standard deviation (RevIN's
      normalisation; the learnable affine part is :class:`RevIN`)
    - ``none``: identity

    Zero-scale safe: a constant (or all-zero, or fully unobserved) series would give
    scale 0; its scale falls back to |mean|, then to 1, so values stay finite and a
    constant series maps to zeros. NaN steps must be marked unobserved; they are
    replaced by ``loc`` (0 after scaling).
    """
    if method not in SCALINGS:
        raise ValueError(f"unknown scaling {method!r}; choose one of {SCALINGS}")
    if observed is None:
        observed = (~torch.isnan(x)).to(x.dtype)
    observed = observed.to(x.dtype)
    clean = torch.where(observed > 0, torch.nan_to_num(x), torch.zeros_like(x))
    count = observed.sum(-1, keepdim=True).clamp_min(1.0)
    mean = clean.sum(-1, keepdim=True) / count
    if method == "none":
        loc, scale = torch.zeros_like(mean), torch.ones_like(mean)
    elif method == "mean":
        loc = torch.zeros_like(mean)
        scale = (clean.abs().sum(-1, keepdim=True) / count)
        scale = torch.where(scale > min_scale, scale, torch.ones_like(scale))
    else:
        loc = mean
        var = (((clean - mean) * observed) ** 2).sum(-1, keepdim=True) / count
        scale = var.sqrt()
        fallback = torch.where(mean.abs() > min_scale, mean.abs(), torch.ones_like(mean))
        scale = torch.where(scale > min_scale * torch.maximum(mean.abs(), torch.ones_like(mean)), scale, fallback)
    values = torch.where(observed > 0, (clean - loc) / scale, torch.zeros_like(x))
    return Scaled(values, loc, scale)


class RevIN(nn.Module):
    """Reversible instance normalisation (Kim et al. 2022) with a learnable affine map.

    ``forward(x (B, C), observed (B, C))`` → normalised (B, C) and the :class:`Scaled`
    statistics; ``inverse(y (B, H), stats)`` → y in data units.
    """

    def __init__(self, affine: bool = True, min_scale: float = 1e-5):
        super().__init__()
        self.min_scale = min_scale
        self.weight = nn.Parameter(torch.ones(1)) if affine else None
        self.bias = nn.Parameter(torch.zeros(1)) if affine else None

    def forward(self, x: torch.Tensor, observed: torch.Tensor | None = None) -> tuple[torch.Tensor, Scaled]:
        stats = instance_scale(x, observed, "revin", self.min_scale)
        y = stats.values
        if self.weight is not None:
            y = y * self.weight + self.bias
        return y, stats

    def inverse(self, y: torch.Tensor, stats: Scaled) -> torch.Tensor:
        if self.weight is not None:
            y = (y - self.bias) / (self.weight + self.min_scale ** 2)
        return stats.unscale(y)


# --------------------------------------------------------------------------- time features
def time_features(start: pd.Period, length: int, freq: str | None = None) -> np.ndarray:
    """GluonTS' calendar features for ``length`` steps from ``start``: (F, length) float32
    in [-0.5, 0.5], chosen by ``gluonts.time_feature.time_features_from_frequency_str``."""
    from gluonts.time_feature import time_features_from_frequency_str

    freq = freq or start.freqstr
    index = pd.period_range(start, periods=length, freq=normalise_freq(freq))
    feats = time_features_from_frequency_str(offset_alias(freq))  # GluonTS reads it with to_offset
    if not feats:
        return np.zeros((0, length), dtype=np.float32)
    return np.stack([f(index) for f in feats]).astype(np.float32)


HOLIDAY_CALENDARS = ("us",)
NUM_HOLIDAY_FEATURES = 2  # the day is a holiday; nearness to the closest holiday
HOLIDAY_NEARNESS_RATE = 0.5  # nearness = exp(-rate * |days to the closest holiday|)


def holiday_dates(calendar: str, first: pd.Timestamp, last: pd.Timestamp) -> pd.DatetimeIndex:
    """The days between ``first`` and ``last`` that ``calendar`` counts as holidays. ``us``: the US
    federal holidays (pandas' ``USFederalHolidayCalendar``, on their observed days) plus the calendar
    days of New Year, Independence Day, Veterans Day and Christmas when observed on another day, and
    Christmas Eve, New Year's Eve and the day after Thanksgiving."""
    from pandas.tseries.holiday import USFederalHolidayCalendar, USThanksgivingDay

    check_holidays(calendar)
    observed = USFederalHolidayCalendar().holidays(first, last)
    years = range(first.year - 1, last.year + 2)
    fixed = [pd.Timestamp(y, m, d) for y in years for m, d in ((1, 1), (7, 4), (11, 11), (12, 24), (12, 25), (12, 31))]
    thanksgiving = USThanksgivingDay.dates(pd.Timestamp(first.year - 1, 1, 1), pd.Timestamp(last.year + 1, 12, 31))
    days = observed.union(pd.DatetimeIndex(fixed)).union(thanksgiving + pd.Timedelta(days=1))
    return days[(days >= first) & (days <= last)]


def check_holidays(calendar: str) -> None:
    if calendar not in HOLIDAY_CALENDARS:
        raise ValueError(f"holidays={calendar!r} is not a known calendar; choose one of {HOLIDAY_CALENDARS} "
                         "(or '' for none), or pass your own calendar as a known covariate column")


def holiday_features(start: pd.Period, length: int, calendar: str, freq: str | None = None) -> np.ndarray:
    """Calendar covariates for ``length`` steps from ``start``: (2, length) float32. Row 0 is 1 on the
    steps that fall on a holiday of ``calendar`` (see :func:`holiday_dates`), row 1 is
    ``exp(-0.5 * days to the closest holiday)`` (1 on a holiday, 0.61 a day away, 0.22 three days
    away), so the days around a holiday are marked too. Daily or finer data only."""
    check_holidays(calendar)
    freq = freq or start.freqstr
    step = pd.Period(start, freq=freq)
    if (step + 1).start_time - step.start_time > pd.Timedelta(days=1):
        raise ValueError(f"holiday covariates need daily or finer data; this series is at {freq!r} "
                         "(pass a covariate column that counts holidays per period instead)")
    if not length:
        return np.zeros((NUM_HOLIDAY_FEATURES, 0), dtype=np.float32)
    days = pd.period_range(start, periods=length, freq=freq).start_time.normalize()
    margin = pd.Timedelta(days=60)
    holidays = holiday_dates(calendar, days[0] - margin, days[-1] + margin).values
    pos = np.searchsorted(holidays, days.values)
    before = holidays[np.clip(pos - 1, 0, len(holidays) - 1)]
    after = holidays[np.clip(pos, 0, len(holidays) - 1)]
    one_day = np.timedelta64(1, "D")
    gap = np.minimum(np.abs(days.values - before), np.abs(after - days.values)) / one_day
    return np.stack([(gap == 0), np.exp(-HOLIDAY_NEARNESS_RATE * gap)]).astype(np.float32)


def known_covariates(entry: dict, length: int, freq: str, holidays: str = "", first: int = 0) -> np.ndarray | None:
    """The known covariates of one series over its steps ``first`` to ``length`` (counted from its start):
    its ``feat_dynamic_real`` rows, then the holiday rows when ``holidays`` names a calendar;
    (K, length - first) float32, or None when it has neither. A covariate row shorter than ``length``
    raises TimeSeriesDataError (forecasting needs the covariates over the horizon too)."""
    rows = []
    if "feat_dynamic_real" in entry:
        dyn = np.atleast_2d(np.asarray(entry["feat_dynamic_real"], dtype=np.float32))
        if dyn.shape[1] < length:
            raise TimeSeriesDataError(
                f"series {entry.get('item_id')!r}: feat_dynamic_real covers {dyn.shape[1]} steps, but {length} are "
                "needed: known covariates must also cover the forecast horizon (for prediction, GluonTS' layout: "
                "the target's steps plus prediction_length more)")
        rows.append(np.nan_to_num(dyn[:, first:length]))
    if holidays:
        start = entry["start"] if isinstance(entry["start"], pd.Period) else pd.Period(entry["start"], freq=freq)
        rows.append(holiday_features(start + first, length - first, holidays, freq))
    return np.concatenate(rows) if rows else None


def num_time_features(freq: str) -> int:
    from gluonts.time_feature import time_features_from_frequency_str

    return len(time_features_from_frequency_str(offset_alias(freq)))


# --------------------------------------------------------------------------- tokens
@dataclass
class Patches:
    """``values``: (B, N, P); ``observed``: (B, N, P) with 0 on padding and missing steps."""

    values: torch.Tensor
    observed: torch.Tensor


def num_patches(length: int, patch_length: int, stride: int) -> int:
    """Patches covering ``length`` steps (left-padded so the last patch ends at the last step)."""
    if length <= patch_length:
        return 1
    return -(-(length - patch_length) // stride) + 1


def patchify(x: torch.Tensor, observed: torch.Tensor, patch_length: int, stride: int) -> Patches:
    """PatchTST-style patches of ``x`` (B, C): windows of ``patch_length`` steps every
    ``stride`` steps, aligned so the last patch ends at the last (most recent) step.
    The start is padded with unobserved zeros when needed."""
    if patch_length < 1 or stride < 1:
        raise ValueError(f"patch_length ({patch_length}) and stride ({stride}) must be ≥ 1")
    length = x.shape[-1]
    n = num_patches(length, patch_length, stride)
    pad = (n - 1) * stride + patch_length - length
    if pad:
        x = torch.nn.functional.pad(x, (pad, 0))
        observed = torch.nn.functional.pad(observed, (pad, 0))
    return Patches(x.unfold(-1, patch_length, stride), observed.unfold(-1, patch_length, stride))


def step_tokens(values: torch.Tensor, observed: torch.Tensor, time_feat: torch.Tensor | None = None) -> torch.Tensor:
    """Per-step tokens (B, C, 2 + F): the scaled value, the observed flag and the time
    features (``time_feat``: (B, C, F))."""
    parts = [values.unsqueeze(-1), observed.unsqueeze(-1)]
    if time_feat is not None:
        parts.append(time_feat)
    return torch.cat(parts, dim=-1)


# --------------------------------------------------------------------------- windows
class ForecastWindows(torch.utils.data.Dataset):
    """Map-style dataset of (context, horizon) windows cut from a :class:`SeriesCollection`.

    ``mode="train"``: every cut point ``t`` (every ``stride`` steps, newest first) such
    that the horizon ``[t, t + H)`` lies inside the series and at least ``min_past``
    steps precede it; ``mode="predict"``: one window per series whose context ends at
    the series' last step and whose horizon is the unknown future.

    Series with fewer than ``min_past + H`` steps (train) or ``min_past`` (predict)
    cannot give a window: ``on_short="skip"`` counts them in ``skipped``,
    ``on_short="raise"`` raises. A context longer than the history is left-padded
    with zeros marked unobserved, so any ``context_length`` (8,192 and beyond) works.

    Each item is a dict of numpy arrays: ``past_target`` (C,), ``past_observed`` (C,),
    ``past_time_feat`` (C, F), ``future_time_feat`` (H, F), ``future_target`` (H,) and
    ``future_observed`` (H,) (train only; unobserved future steps have target 0),
    ``feat_static_cat`` (S,), ``past_known`` (C, K) and ``future_known`` (H, K) when the series
    has known covariates (its ``feat_dynamic_real`` rows, then the ``holidays`` calendar's rows; in
    predict mode the covariates must cover the horizon), and ``series_index``.
    """

    def __init__(self, collection: SeriesCollection, context_length: int, prediction_length: int,
                 mode: str = "train", stride: int = 1, min_past: int = 1, time_feat: bool = True,
                 on_short: str = "skip", max_windows_per_series: int | None = None, holidays: str = ""):
        if mode not in ("train", "predict"):
            raise ValueError(f"mode={mode!r}; choose 'train' or 'predict'")
        if on_short not in ("skip", "raise"):
            raise ValueError(f"on_short={on_short!r}; choose 'skip' or 'raise'")
        if context_length < 1 or prediction_length < 1 or stride < 1 or min_past < 1:
            raise ValueError("context_length, prediction_length, stride and min_past must be ≥ 1")
        self.collection, self.mode = collection, mode
        self.context_length, self.prediction_length = context_length, prediction_length
        self.time_feat = time_feat
        self.holidays = holidays
        if holidays:
            check_holidays(holidays)
        self.skipped: dict[str, int] = {}
        self._features: dict[int, np.ndarray] = {}
        self._known: dict[int, np.ndarray | None] = {}
        index = []
        needed = min_past + (prediction_length if mode == "train" else 0)
        for s, entry in enumerate(collection.entries):
            length = len(entry["target"])
            if length < needed or entry["observed_values"].sum() == 0:
                reason = ("all values missing" if entry["observed_values"].sum() == 0 else
                          f"shorter than {needed} steps (min_past {min_past}"
                          + (f" + prediction_length {prediction_length})" if mode == "train" else ")"))
                if on_short == "raise":
                    raise TimeSeriesDataError(
                        f"series {entry['item_id']!r} has {length} steps: {reason}; drop it, lower "
                        f"prediction_length/min_past, or pass on_short='skip' to skip and count such series")
                self.skipped[reason] = self.skipped.get(reason, 0) + 1
                continue
            if mode == "predict":
                index.append((s, length))
                continue
            cuts = np.arange(length - prediction_length, min_past - 1, -stride)
            if max_windows_per_series is not None:
                cuts = cuts[:max_windows_per_series]
            index.extend((s, int(t)) for t in cuts)
        self.index = np.array(index, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.index)

    def _series_features(self, s: int) -> np.ndarray:
        if s not in self._features:
            entry = self.collection.entries[s]
            total = len(entry["target"]) + self.prediction_length
            self._features[s] = time_features(entry["start"], total, self.collection.freq).T  # (T + H, F)
        return self._features[s]

    def _series_known(self, s: int) -> np.ndarray | None:
        """Known covariates of series ``s``, or None: (K, T) in train mode (no horizon runs past the
        series), (K, T + H) in predict mode."""
        if s not in self._known:
            entry = self.collection.entries[s]
            length = len(entry["target"]) + (self.prediction_length if self.mode == "predict" else 0)
            self._known[s] = known_covariates(entry, length, self.collection.freq, self.holidays)
        return self._known[s]

    def __getitem__(self, i: int) -> dict:
        s, t = (int(v) for v in self.index[i])
        entry = self.collection.entries[s]
        c, h = self.context_length, self.prediction_length
        lo = max(0, t - c)
        pad = c - (t - lo)
        target, observed = entry["target"], entry["observed_values"]
        past = np.zeros(c, dtype=np.float32)
        past_obs = np.zeros(c, dtype=np.float32)
        past[pad:] = np.nan_to_num(target[lo:t])
        past_obs[pad:] = observed[lo:t]
        item = {"past_target": past, "past_observed": past_obs, "series_index": s,
                "feat_static_cat": entry.get("feat_static_cat", np.zeros(0, dtype=np.int64))}
        if self.mode == "train":
            item["future_target"] = np.nan_to_num(target[t:t + h]).astype(np.float32)
            item["future_observed"] = observed[t:t + h].copy()
        known = self._series_known(s)
        if known is not None:
            past_known = np.zeros((c, known.shape[0]), dtype=np.float32)
            past_known[pad:] = known[:, lo:t].T
            item["past_known"] = past_known
            item["future_known"] = known[:, t:t + h].T.copy()
        if self.time_feat:
            feats = self._series_features(s)
            past_feat = np.zeros((c, feats.shape[1]), dtype=np.float32)
            past_feat[pad:] = feats[lo:t]
            item["past_time_feat"] = past_feat
            item["future_time_feat"] = feats[t:t + h].copy()
        return item
