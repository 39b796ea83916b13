"""Time-series data layer, baselines and evaluation (GluonTS-compatible).

See docs/timeseries.md. Series are GluonTS data entries (``start`` Period,
float32 ``target`` with NaN for missing steps, ``observed_values`` mask); see
:mod:`.data` for the readers, :mod:`.transforms` for model inputs,
:mod:`.evaluation` for backtests and metrics, :mod:`.baselines` for the
reference forecasters, :mod:`.competition` for M3-style scores and :mod:`.demo_data`
for the committed real series.
"""
from .data import (
    SeriesCollection,
    TimeSeriesDataError,
    check_same_frequency,
    from_gluonts,
    from_polars,
    read_file,
    same_frequency,
    to_gluonts,
    truncate,
)
from .demo_data import PRETRAIN_CORPUS, CompetitionSplit, competition_groups, load_competition, load_hourly
from .evaluation import Backtest, Evaluation, evaluate, evaluate_by_series, fan_charts, official_split, rolling_origin
from .transforms import (
    ForecastWindows,
    Patches,
    RevIN,
    Scaled,
    instance_scale,
    patchify,
    step_tokens,
    time_features,
)

__all__ = [
    "PRETRAIN_CORPUS",
    "Backtest",
    "CompetitionSplit",
    "Evaluation",
    "ForecastWindows",
    "Patches",
    "RevIN",
    "Scaled",
    "SeriesCollection",
    "TimeSeriesDataError",
    "check_same_frequency",
    "competition_groups",
    "evaluate",
    "evaluate_by_series",
    "fan_charts",
    "from_gluonts",
    "from_polars",
    "instance_scale",
    "load_competition",
    "load_hourly",
    "official_split",
    "patchify",
    "read_file",
    "rolling_origin",
    "same_frequency",
    "step_tokens",
    "time_features",
    "to_gluonts",
    "truncate",
]
