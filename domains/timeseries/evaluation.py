"""Rolling-origin backtests and scoring through GluonTS' own evaluation, plus fan charts.

A backtest holds out the last ``windows`` forecast windows of every series
(``gluonts.dataset.split.split`` with an offset, then
``TestTemplate.generate_instances``); the model sees everything before each
window's start. Scores come from ``gluonts.model.evaluate_forecasts``:

| name | GluonTS metric | aggregation |
|---|---|---|
| ``MASE`` | ``MASE()`` (median forecast, seasonal naive in-sample scale) | mean over series-windows × steps |
| ``sMAPE`` | ``SMAPE()`` ×100 (percent, as in the M3 literature) | mean |
| ``MSIS`` | ``MSIS(alpha=0.05)`` (95 % interval) | mean |
| ``wQL`` | ``MeanWeightedSumQuantileLoss(quantiles)`` | pooled |
| ``ND`` | ``ND()`` | pooled |
| ``NRMSE`` | ``NRMSE()`` | pooled |
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .data import SeriesCollection, TimeSeriesDataError

DEFAULT_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
METRIC_NAMES = ("MASE", "sMAPE", "MSIS", "wQL", "ND", "NRMSE")


@dataclass
class Backtest:
    """``train``: each series cut before its first test window (GluonTS ``TrainingDataset``);
    ``test_data``: GluonTS ``TestData`` of (input, label) pairs, ``windows`` per series;
    ``skipped``: series left out, by reason."""

    train: object
    test_data: object
    prediction_length: int
    windows: int
    distance: int
    freq: str
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.test_data)


def gluonts_entries(collection: SeriesCollection | Iterable[dict]) -> list[dict]:
    """Entries without our ``observed_values`` field, which GluonTS' splitters would not
    slice along with the target (GluonTS models recompute it from NaNs)."""
    return [{k: v for k, v in e.items() if k != "observed_values"} for e in collection]


def rolling_origin(collection: SeriesCollection, prediction_length: int, windows: int = 1,
                   distance: int | None = None, min_past: int = 1) -> Backtest:
    """Backtest over the last ``windows`` windows of every series, ``distance`` steps apart
    (default: ``prediction_length``, non-overlapping). Series with fewer than
    ``min_past`` steps before the first window are skipped and counted."""
    from gluonts.dataset.split import split

    if prediction_length < 1 or windows < 1:
        raise ValueError(f"prediction_length ({prediction_length}) and windows ({windows}) must be ≥ 1")
    distance = prediction_length if distance is None else distance
    held_out = prediction_length + (windows - 1) * distance
    keep, skipped = [], dict(collection.skipped)
    for entry in gluonts_entries(collection):
        if len(entry["target"]) - held_out < min_past:
            reason = f"shorter than {held_out + min_past} steps (backtest needs {held_out} + min_past {min_past})"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        keep.append(entry)
    if not keep:
        raise TimeSeriesDataError(f"no series is long enough for {windows} window(s) of {prediction_length} "
                                  f"steps (skipped: {skipped}); lower windows or prediction_length")
    train, template = split(keep, offset=-held_out)
    test_data = template.generate_instances(prediction_length, windows=windows, distance=distance)
    return Backtest(train, test_data, prediction_length, windows, distance, collection.freq, skipped)


def official_split(train: SeriesCollection, test: SeriesCollection, prediction_length: int) -> Backtest:
    """A one-window backtest from a competition's official split: ``test`` holds each
    ``train`` series followed by its ``prediction_length`` test values."""
    from .data import check_same_frequency

    check_same_frequency(train, test)
    for a, b in zip(train, test):
        if len(b["target"]) != len(a["target"]) + prediction_length or a["item_id"] != b["item_id"]:
            raise TimeSeriesDataError(f"series {a['item_id']!r}: the test series must be the training series "
                                      f"plus {prediction_length} steps")
    return rolling_origin(test, prediction_length, windows=1)


def metric_definitions(quantiles: Sequence[float] = DEFAULT_QUANTILES) -> list:
    from gluonts.ev.metrics import MASE, MSIS, ND, NRMSE, SMAPE, MeanWeightedSumQuantileLoss

    return [MASE(), SMAPE(), MSIS(alpha=0.05), MeanWeightedSumQuantileLoss(quantile_levels=list(quantiles)),
            ND(), NRMSE()]


def _rename(frame: pd.DataFrame) -> pd.DataFrame:
    names = {}
    for col in frame.columns:
        for short, prefix in (("MASE", "MASE"), ("sMAPE", "sMAPE"), ("MSIS", "MSIS"),
                              ("wQL", "mean_weighted_sum_quantile_loss"), ("ND", "ND"), ("NRMSE", "NRMSE")):
            if col.startswith(prefix):
                names[col] = short
    frame = frame.rename(columns=names)
    if "sMAPE" in frame:
        frame["sMAPE"] = frame["sMAPE"] * 100.0
    return frame


@dataclass
class Evaluation:
    """``overall``: metric name → value over the whole backtest; ``per_item``: one row per
    (item_id, forecast start) with MASE, sMAPE, MSIS, ND, NRMSE, wQL of that window."""

    overall: dict[str, float]
    per_item: pd.DataFrame

    def series_mean(self) -> dict[str, float]:
        """Each series-window weighted equally (the M3 convention for sMAPE and MASE)."""
        return {k: float(self.per_item[k].mean()) for k in ("MASE", "sMAPE")}


def evaluate(forecasts, test_data, seasonality: int | None = None,
             quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Evaluation:
    """Score ``forecasts`` (GluonTS ``Forecast`` objects, in ``test_data`` order) against
    the labels of ``test_data`` (``Backtest.test_data`` or any GluonTS ``TestData``).

    ``seasonality``: the period of MASE's seasonal-naive scale (and MSIS'); by default
    GluonTS derives it from the frequency (24 for hourly, 12 monthly, 4 quarterly).
    """
    from gluonts.model import evaluate_forecasts

    forecasts = list(forecasts)
    if len(forecasts) != len(test_data):
        raise ValueError(f"{len(forecasts)} forecasts for {len(test_data)} test windows")
    metrics = metric_definitions(quantiles)
    kwargs = dict(test_data=test_data, metrics=metrics, seasonality=seasonality)
    overall = _rename(evaluate_forecasts(forecasts, **kwargs))
    per_item = _rename(evaluate_forecasts(forecasts, axis=1, **kwargs))
    per_item.index = per_item.index.set_names(["item_id", "forecast_start"])
    return Evaluation({k: float(overall[k].iloc[0]) for k in METRIC_NAMES}, per_item.reset_index())


@dataclass
class _Windows:
    """A subset of a GluonTS ``TestData``: what ``evaluate_forecasts`` reads (``input``, ``label``)."""

    input: list
    label: list

    def __len__(self) -> int:
        return len(self.input)


def evaluate_by_series(forecasts, test_data, seasonality: int | None = None,
                       quantiles: Sequence[float] = DEFAULT_QUANTILES) -> dict[str, dict[str, float]]:
    """Each series' own overall metrics (over its windows, aggregated as in :func:`evaluate`):
    ``{item_id: {metric: value}}`` in the order the series first appear, plus ``"mean"``: the
    mean over series of each metric (every series weighted equally, whatever its length)."""
    from gluonts.model import evaluate_forecasts

    forecasts = list(forecasts)
    inputs, labels = list(test_data.input), list(test_data.label)
    if len(forecasts) != len(inputs):
        raise ValueError(f"{len(forecasts)} forecasts for {len(inputs)} test windows")
    groups: dict[str, list[int]] = {}
    for i, entry in enumerate(inputs):
        groups.setdefault(str(entry.get("item_id", i)), []).append(i)
    scores = {}
    for item, rows in groups.items():
        subset = _Windows([inputs[i] for i in rows], [labels[i] for i in rows])
        frame = _rename(evaluate_forecasts([forecasts[i] for i in rows], test_data=subset,
                                           metrics=metric_definitions(quantiles), seasonality=seasonality))
        scores[item] = {k: float(frame[k].iloc[0]) for k in METRIC_NAMES}
    scores["mean"] = {k: float(np.mean([s[k] for s in scores.values()])) for k in METRIC_NAMES}
    return scores


def fan_charts(forecasts, test_data, out_dir: str | Path, max_series: int = 4, history: int | None = None,
               title: str = "", model: str | None = None) -> list[Path]:
    """Save one PNG per series (the first ``max_series`` windows): the last ``history``
    observed steps (default 4 × horizon), the actual future, the median forecast and
    the 50 % and 90 % central intervals. Titled with ``title`` (the run's name) and ``model``
    (default: what the run folder above ``out_dir`` records); the legend beside the axes.
    Returns the paths."""
    from mambatune.core.training.figures import figure_title, legend_outside, pyplot, run_dir_of, save_figure

    plt = pyplot()
    out_dir = Path(out_dir)
    heading = figure_title(run_dir_of(out_dir), model, name=title)
    paths = []
    for k, (forecast, (inp, label)) in enumerate(zip(forecasts, test_data)):
        if k >= max_series:
            break
        h = len(label["target"])
        keep = history or 4 * h
        past = np.asarray(inp["target"], dtype=float)[-keep:]
        x_past = np.arange(-len(past), 0)
        x_future = np.arange(h)
        fig, ax = plt.subplots(figsize=(9, 3.4), dpi=100)
        ax.plot(x_past, past, color="black", lw=1, label="history")
        ax.plot(x_future, label["target"], color="black", lw=1, ls="--", label="actual")
        for lo, hi, alpha in ((0.05, 0.95, 0.2), (0.25, 0.75, 0.4)):
            ax.fill_between(x_future, forecast.quantile(lo), forecast.quantile(hi), color="tab:blue",
                            alpha=alpha, lw=0, label=f"{int(round((hi - lo) * 100))}% interval")
        ax.plot(x_future, forecast.quantile(0.5), color="tab:blue", lw=1.5, label="median forecast")
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_title(f"series {forecast.item_id}, forecast from {forecast.start_date}", fontsize=9)
        ax.set_xlabel("time steps relative to the forecast start")
        ax.set_ylabel("value")
        ax.grid(alpha=0.3)
        legend_outside(ax, fontsize=7)
        fig.suptitle(heading, fontsize=9)
        name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{forecast.item_id}_{k}")
        paths.append(save_figure(fig, out_dir / f"fan_{name}.png", dpi=100))
    return paths
