"""The time-series recipe's ``data`` section (:class:`DataConfig`), the dataset names it accepts and the
checks that need only it (the bottom layer of ``pipelines.timeseries``: it imports nothing of the package)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from mambatune.domains.tables import TABLE_SUFFIXES, TableError, find_files
from mambatune.domains.timeseries.backtest_data import PARTIAL_PERIOD_MODES
from mambatune.domains.timeseries.demo_data import HOURLY as HOURLY_SERIES
from mambatune.domains.timeseries.demo_data import competition_groups
from mambatune.domains.timeseries.estimator import WINDOW_SAMPLINGS
from mambatune.domains.timeseries.frequency import normalise_freq
from mambatune.domains.timeseries.transforms import check_holidays
from mambatune.domains.timeseries.user_data import SeriesColumns

from ..data_source import DataSource

HOURLY = tuple(HOURLY_SERIES)
COMPETITIONS = ("m3", "m1")
TASKS = ("forecast", "pretrain")
CLASSICAL_BASELINES = ("seasonal_naive", "theta")
FORECAST_FORMATS = ("csv", "parquet", "none")


# -- dataset names ---------------------------------------------------------------------------------

def dataset_names(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def group_names(value: str | list[str], dataset: str) -> list[str]:
    """The competition groups ``data.group`` names (``all``: every group of ``dataset``)."""
    if value == "all":
        return competition_groups(dataset)
    return [value] if isinstance(value, str) else list(value)


def is_series_file(name) -> bool:
    """Whether a ``data.dataset`` value names the user's own series (a path: a table suffix, a folder, a glob)
    rather than a built-in set."""
    if not isinstance(name, str) or name in HOURLY + COMPETITIONS:
        return False
    text = name.lower().removesuffix(".gz")
    return text.endswith(TABLE_SUFFIXES) or any(ch in name for ch in "/*?[") or Path(name).exists()


def check_datasets(value: str | list[str], name: str) -> None:
    """One hourly series, several distinct ones, one competition, or one file of series (checked by data.path)."""
    names = dataset_names(value)
    if any(is_series_file(n) for n in names):
        if len(names) > 1:
            raise ValueError(f"{name}: a file of series is used alone, got {value!r}")
        return
    unknown = [n for n in names if n not in HOURLY + COMPETITIONS]
    if unknown or not names:
        raise ValueError(f"{name} must be one of {', '.join(HOURLY + COMPETITIONS)} or a list of hourly series "
                         f"(your own file: data.path), got {value!r}")
    if len(names) > 1 and (any(n in COMPETITIONS for n in names) or len(set(names)) != len(names)):
        raise ValueError(f"{name}: a list must name distinct hourly series ({', '.join(HOURLY)}); a competition "
                         f"({', '.join(COMPETITIONS)}) is used alone, got {value!r}")


# -- the data section --------------------------------------------------------------------------------

@dataclass
class DataConfig(DataSource):
    """task: forecast | pretrain; dataset: an hourly series (electricity, sf_traffic, traffic_volume,
    bike_sharing, solar, wind), a list of them (one item each), m3 | m1, or a file of your own series
    (a long table .csv / .tsv / .parquet with item_id (optional), timestamp, target and covariate
    columns, or GluonTS JSON lines; old recipes' spelling of data.path), backtested like the hourly series;
    path: your own series (a file, folder or glob of CSV / TSV / parquet / JSON lines / JSON, .gz too;
    see ``domains.timeseries.user_data``), which then replaces dataset; timestamp_column, target_column,
    item_column (null: item_id when present, else one series): its columns; timestamp_parts: date-part
    columns combined into the timestamp ({year: yr, month: mo, day: dy, hour: hr}); timestamp_format: a
    strftime format for the timestamp column (null: inferred); start_column / freq_column: a series
    record's start field and per-series frequency field (JSON); resample: aggregate rows of one period
    (mean, sum, last, first, max, min) instead of refusing duplicate or off-grid timestamps;
    partial_period: a sub-daily series ending in an incomplete day: trim (drop that day's steps), error or
    keep; freq: the file's frequency (any pandas spelling, old or new: h / H, M / ME, Q / QE, Y / YE / A,
    or monthly ...; inferred from a table's timestamps when null, needed for series records); baselines:
    the classical baselines scored in the same run (seasonal_naive, theta; each on its own; [] for none,
    as does eval.baselines=false); forecasts_format: the backtest forecasts of every model saved as
    forecasts.csv or forecasts.parquet (one row per model, window and step; none: not saved); covariates: the table's
    known covariate columns, which the forecaster reads (values for the horizon too: see
    ``pipelines.timeseries.verbs.predict``); static: the table's static categorical columns (constant per
    item; predict accepts only the categories seen in training); group: the
    competition group (yearly, quarterly, monthly, other), a list of them, or all; prediction_length: horizon (null: the
    competition's official one); context_length: steps the model reads (left-padded when longer than
    the history); windows: rolling backtest windows (hourly); max_series: first N competition series;
    max_history: keep only the last N steps of each hourly series (quick runs; null: all);
    patch_length / stride: token size and hop (1 / 1 = per-step tokens); scaling: revin | std | mean |
    none; time_features: GluonTS calendar features per token; max_train_windows: training windows drawn
    (seeded) from all cut points; window_sampling: how they are shared among several series when
    there are more cut points (proportional: by length; balanced: an equal share per series);
    num_samples: sample paths per forecast; season_length: seasonal naive
    and Theta's period (null: the longest cycle of the frequency that every history covers twice: 168
    hourly (24 for series shorter than 2 weeks), 7 daily, 12 monthly, the competition's seasonality);
    mase_seasonality: MASE's period (null: GluonTS' for the frequency: 24 hourly, the competition's); deep_baselines: also DeepAR and PatchTST (GluonTS torch, needs
    lightning; slower); baseline_epochs: their epochs of 50 batches; pretrain_dataset (a name or a list,
    like dataset) / pretrain_steps:
    with ``model.pretrained: default`` and no saved model, pretrain one in this run under ``pretrain/``;
    scratch_baseline: when fine-tuning, also train the same model from scratch; ensemble: train this many
    forecasters (seeds seed, seed + 1, ...) and forecast with all of them (pooled sample paths; see
    ``domains.timeseries.ensemble``), each member with the recipe's budget; ensemble_context_lengths: the
    members' context lengths, cycled (empty: all read context_length); seasonal_skip: a period P: the
    forecaster predicts the correction to the seasonal-naive forecast of period P (``season``: the data's
    seasonal-naive period, season_length: 168 hourly and the group's seasonality for M3/M1; null: a pretrained model's
    setting, else off; 0: off); compare_context_lengths:
    also train the same model (same budget, windows and seed) at each of these context lengths and
    report every one (the one equal to context_length is the main model); fan_charts: series
    plotted; dropout: on the token embeddings; scale_window: the instance scaling's statistics come
    from the context's last W steps (0: the whole context; null: a pretrained model's setting, else 0), so
    a long context keeps a short one's view of the recent level; holidays: a holiday calendar (``us``)
    whose covariates (the day is a holiday, nearness to the closest one) the forecaster reads over the
    context and the horizon (hourly data; "": none; null: a pretrained model's setting, else none)."""

    task: str = "forecast"
    dataset: str | list[str] = "electricity"
    group: str | list[str] = "monthly"
    prediction_length: int | None = 24
    context_length: int = 512
    windows: int = 7
    max_series: int | None = None
    max_history: int | None = None
    patch_length: int = 16
    stride: int = 8
    scaling: str = "revin"
    time_features: bool = True
    max_train_windows: int = 4096
    window_sampling: str = "proportional"
    num_samples: int = 100
    season_length: int | None = None
    mase_seasonality: int | None = None
    deep_baselines: bool = False
    baseline_epochs: int = 3
    pretrain_dataset: str | list[str] = "sf_traffic"
    pretrain_steps: int = 200
    scratch_baseline: bool = True
    compare_context_lengths: list[int] = dataclasses.field(default_factory=list)
    ensemble: int = 1
    ensemble_context_lengths: list[int] = dataclasses.field(default_factory=list)
    seasonal_skip: int | str | None = None
    scale_window: int | None = None
    holidays: str | None = None
    freq: str | None = None
    covariates: list[str] = dataclasses.field(default_factory=list)
    static: list[str] = dataclasses.field(default_factory=list)
    timestamp_column: str = "timestamp"
    target_column: str = "target"
    item_column: str | None = None
    timestamp_parts: dict[str, str] = dataclasses.field(default_factory=dict)
    timestamp_format: str | None = None
    start_column: str = "start"
    freq_column: str | None = None
    resample: str | None = None
    partial_period: str = "trim"
    baselines: list[str] = dataclasses.field(default_factory=lambda: ["seasonal_naive", "theta"])
    forecasts_format: str = "csv"
    fan_charts: int = 4
    dropout: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_forecasting_source(self)
        if self.path is None and is_series_file(self.dataset):
            self.path = self.dataset  # an old recipe's data.dataset: sales.csv
        if self.path is not None:
            try:
                find_files(self.path)
            except TableError as err:
                raise ValueError(f"data.path: {err}") from None
            self.dataset = self.path  # the rest of the pipeline tells a user's file by this
        columns(self)  # checks timestamp_parts and resample
        if self.freq is not None:
            normalise_freq(self.freq)
        if self.partial_period not in PARTIAL_PERIOD_MODES:
            raise ValueError(f"partial_period must be one of {', '.join(PARTIAL_PERIOD_MODES)}, got {self.partial_period!r}")
        unknown = [b for b in self.baselines if b not in CLASSICAL_BASELINES]
        if unknown:
            raise ValueError(f"baselines: unknown {unknown}; choose from {', '.join(CLASSICAL_BASELINES)} (a list, [] for "
                             "none; DeepAR and PatchTST: data.deep_baselines=true)")
        if self.forecasts_format not in FORECAST_FORMATS:
            raise ValueError(f"forecasts_format must be one of {', '.join(FORECAST_FORMATS)}, got {self.forecasts_format!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        for name in ("dataset", "pretrain_dataset"):
            check_datasets(getattr(self, name), name)
        if self.window_sampling not in WINDOW_SAMPLINGS:
            raise ValueError(f"window_sampling must be one of {', '.join(WINDOW_SAMPLINGS)}, "
                             f"got {self.window_sampling!r}")
        if self.max_history is not None and self.max_history < 2:
            raise ValueError(f"max_history must be >= 2 or null, got {self.max_history}")
        for name in ("context_length", "windows", "patch_length", "stride", "max_train_windows", "num_samples",
                     "pretrain_steps", "ensemble"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.prediction_length is not None and self.prediction_length < 1:
            raise ValueError(f"prediction_length must be >= 1 or null, got {self.prediction_length}")
        if any(c < 1 for c in self.compare_context_lengths) or \
                len(set(self.compare_context_lengths)) != len(self.compare_context_lengths):
            raise ValueError(f"compare_context_lengths must be distinct positive lengths, "
                             f"got {self.compare_context_lengths}")
        if any(c < 1 for c in self.ensemble_context_lengths):
            raise ValueError(f"ensemble_context_lengths must be positive lengths, got {self.ensemble_context_lengths}")
        if self.ensemble_context_lengths and self.ensemble == 1:
            raise ValueError("ensemble_context_lengths needs data.ensemble > 1 (the number of members)")
        if isinstance(self.seasonal_skip, str) and self.seasonal_skip != "season":
            raise ValueError(f"seasonal_skip is a period, 0 (off), null or 'season' (the seasonal-naive period of "
                             f"the data: 168 hourly, the competition group's seasonality), got {self.seasonal_skip!r}")
        if isinstance(self.seasonal_skip, int):
            if self.seasonal_skip < 0:
                raise ValueError(f"seasonal_skip must be a period >= 0 (0 = off) or null, got {self.seasonal_skip}")
            short = [c for c in [self.context_length, *self.compare_context_lengths, *self.ensemble_context_lengths]
                     if c < self.seasonal_skip]
            if short:
                raise ValueError(f"seasonal_skip={self.seasonal_skip} needs contexts of at least one period; "
                                 f"got context lengths {short}")
        if self.scale_window is not None and (isinstance(self.scale_window, bool) or not isinstance(self.scale_window, int)
                                              or self.scale_window < 0):
            raise ValueError(f"scale_window is a number of steps >= 0 (0: the whole context) or null, "
                             f"got {self.scale_window!r}")
        if self.holidays:
            check_holidays(self.holidays)
            if dataset_names(self.dataset)[0] in COMPETITIONS:
                raise ValueError(f"data.holidays needs daily or finer data; {self.dataset} is a competition set of "
                                 "yearly to monthly series: set data.holidays to '' or null")
        if self.ensemble > 1 and self.compare_context_lengths:
            raise ValueError("compare_context_lengths compares single models: drop data.ensemble for that run")
        if self.ensemble > 1 and self.task == "pretrain":
            raise ValueError("data.ensemble is for forecast runs; a pretrain run saves one model")
        if dataset_names(self.dataset)[0] in COMPETITIONS:
            groups = competition_groups(self.dataset)
            bad = [g for g in group_names(self.group, self.dataset) if g not in groups]
            if bad or not group_names(self.group, self.dataset):
                raise ValueError(f"group must be one of {', '.join(groups)}, a list of them, or all; "
                                 f"got {self.group!r}")
            if len(group_names(self.group, self.dataset)) > 1 and self.compare_context_lengths:
                raise ValueError("compare_context_lengths works on one problem: pick one group")
        first = dataset_names(self.dataset)[0]
        if self.prediction_length is None and (first in HOURLY or self.path is not None):
            raise ValueError("hourly and file datasets need a prediction_length (e.g. 24 or 168)")
        if (self.covariates or self.static) and self.path is None:
            raise ValueError("data.covariates / data.static name columns of your own long table: set data.path to it")


def check_forecasting_source(cfg: DataSource) -> None:
    """The contract's split keys that forecasting has no use for are refused: the backtest windows (the last
    data.windows horizons of every series) are its test set and its cross-validation."""
    if cfg.cv_folds is not None or cfg.fold is not None:
        raise ValueError("data.cv_folds does not apply to forecasting: the backtest already scores data.windows "
                         "rolling windows (rolling-origin evaluation, the forecasting form of cross-validation); "
                         "raise data.windows for more folds")
    if cfg.split_column is not None or cfg.test_path is not None:
        raise ValueError("data.split_column / data.test_path do not apply to forecasting: the test set is the last "
                         "data.windows x data.prediction_length steps of every series; leave them unset")
    if cfg.group_column is not None or cfg.val_fraction != 0.1 or cfg.test_fraction != 0.2 or not cfg.stratify:
        raise ValueError("data.group_column / val_fraction / test_fraction / stratify split rows of a table; a "
                         "forecast is scored on the last data.windows horizons of each series: leave them unset")


def columns(cfg) -> SeriesColumns:
    """The recipe's column keys as ``domains.timeseries.user_data.SeriesColumns``."""
    return SeriesColumns(timestamp=cfg.timestamp_column, target=cfg.target_column, item=cfg.item_column,
                         timestamp_parts=dict(cfg.timestamp_parts), timestamp_format=cfg.timestamp_format,
                         start=cfg.start_column, freq_column=cfg.freq_column, covariates=list(cfg.covariates),
                         static=list(cfg.static), resample=cfg.resample)
