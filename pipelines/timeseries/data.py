"""What a time-series recipe forecasts: the backtest ("problem") each dataset gives (hourly demo series,
M3 / M1 groups, or a file of the user's series), and the training / validation series cut from it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from mambatune.domains.timeseries import from_gluonts, load_competition, load_hourly, official_split, rolling_origin
from mambatune.domains.timeseries.backtest_data import (
    check_backtest_length,
    partial_last_period,
    season_lengths,
    trim_missing_ends,
)
from mambatune.domains.timeseries.data import truncate
from mambatune.domains.timeseries.user_data import read_series

from .config import HOURLY, columns, dataset_names, group_names, is_series_file


@dataclass
class Problem:
    """One dataset's backtest and the periods used on it."""

    backtest: object
    freq: str
    prediction_length: int
    season_length: int
    mase_seasonality: int
    description: str
    static_categories: list = dataclasses.field(default_factory=list)  # a file's static columns' values
    data_notes: list = dataclasses.field(default_factory=list)  # what reading a user's file changed or counted
    data_counts: dict = dataclasses.field(default_factory=dict)


def load_problem(cfg, dataset: str | list[str] | None = None, group: str | None = None) -> Problem:
    names = dataset_names(dataset or cfg.dataset)
    if names[0] in HOURLY:
        h = cfg.prediction_length
        series = load_hourly(names)
        if cfg.max_history is not None:
            series = last_steps(series, cfg.max_history)
        backtest = rolling_origin(series, h, windows=cfg.windows)
        what = names[0] if len(names) == 1 else f"{len(names)} series ({', '.join(names)})"
        each = " of each series" if len(names) > 1 else ""
        return Problem(backtest, "h", h, cfg.season_length or 168, cfg.mase_seasonality or 24,
                       f"{what} hourly, last {cfg.windows} windows of {h} h{each} (rolling origin)")
    if dataset is None and cfg.path is not None:
        return file_problem(cfg, cfg.path)
    if is_series_file(names[0]):
        return file_problem(cfg, names[0])
    dataset = names[0]
    group = group or group_names(cfg.group, dataset)[0]
    split = load_competition(dataset, group, max_series=cfg.max_series)
    if cfg.prediction_length not in (None, split.horizon):
        raise ValueError(f"{dataset} {group} has the official horizon {split.horizon}; set "
                         f"data.prediction_length={split.horizon} or null")
    backtest = official_split(split.train, split.test, split.horizon)
    return Problem(backtest, split.train.freq, split.horizon, cfg.season_length or split.seasonality,
                   cfg.mase_seasonality or split.seasonality,
                   f"{dataset} {group}, {len(split.train)} series, official split, horizon {split.horizon}")


def file_problem(cfg, path: str) -> Problem:
    """A rolling backtest over the user's series in ``path`` (``data.path``; see ``DataConfig``): read with the
    recipe's column keys, missing ends trimmed, an incomplete last day handled, short series named."""
    read = read_series(path, columns(cfg), freq=cfg.freq, encoding=cfg.encoding)
    series, notes, counts = read.series, list(read.notes), dict(read.counts)
    name = Path(path).name if isinstance(path, str) and not any(ch in path for ch in "*?[") else str(path)
    for step in (lambda s: trim_missing_ends(s, name), lambda s: partial_last_period(s, cfg.partial_period)):
        series, more_notes, more_counts = step(series)
        notes += more_notes
        counts.update(more_counts)
    if cfg.max_history is not None:
        series = last_steps(series, cfg.max_history)
        notes.append(f"only the last {cfg.max_history} steps of each series used (data.max_history)")
    h = cfg.prediction_length
    more_notes, more_counts = check_backtest_length(series, h, cfg.windows, name)
    notes += more_notes
    counts.update(more_counts)
    backtest = rolling_origin(series, h, windows=cfg.windows)
    season, mase = season_lengths(series, h * cfg.windows)
    covariates = f", covariates {', '.join(cfg.covariates)}" if cfg.covariates else ""
    covariates += f", static {', '.join(cfg.static)}" if cfg.static else ""
    return Problem(backtest, series.freq, h, cfg.season_length or season, cfg.mase_seasonality or mase,
                   f"{name}: {len(series)} series at {series.freq}{covariates}, last {cfg.windows} "
                   f"windows of {h} steps (rolling origin)", list(series.static_categories), notes, counts)


def last_steps(collection, n: int):
    """The last ``n`` steps of every series (start moved accordingly; covariates cut alike)."""
    entries = []
    for e in collection.entries:
        cut = max(0, len(e["target"]) - n)
        entry = {**e, "start": e["start"] + cut, "target": e["target"][cut:],
                 "observed_values": e["observed_values"][cut:]}
        if "feat_dynamic_real" in e:
            entry["feat_dynamic_real"] = e["feat_dynamic_real"][:, cut:]
        entries.append(entry)
    return dataclasses.replace(collection, entries=entries)


def fit_and_validation(problem: Problem):
    """Training series (everything before the backtest, minus one horizon) and validation series
    (everything before the backtest; its last horizon is scored for early stopping)."""
    seen = from_gluonts(problem.backtest.train, problem.freq)
    return truncate(seen, problem.prediction_length), seen
