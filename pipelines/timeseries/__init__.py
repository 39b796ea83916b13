"""The time-series pipeline (``pipeline: timeseries`` in a recipe): the Mamba forecaster trained or
fine-tuned on a backtest, scored beside the same run's baselines; recipes in ``recipes/timeseries/``.

The package, in layers (each module imports only those above it):

- ``config``: the recipe's ``data`` section (:class:`DataConfig`) and the dataset names it accepts;
- ``data``: the backtest ("problem") of a dataset or of the user's file, and its training series;
- ``tasks``: the base forecaster, the estimator a recipe makes, training and scoring forecasters
  (ensemble members, other context lengths, the scratch twin) and the same-run baselines;
- ``report``: fan charts and report.md;
- ``competition``: M3 / M1 runs of several groups; ``pipeline``: :func:`run` (recipe -> run folder);
- ``verbs``: ``mambatune eval / predict / export`` on a finished run; ``ensemble``: ``mambatune ensemble``.

This module exports what :mod:`mambatune.pipelines.registry` checks (the Pipeline interface) and the shipped
forecaster's folder, which ``mambatune models`` lists.
"""
from .config import TASKS, DataConfig
from .pipeline import run
from .tasks import DEFAULT_SERIES_MODEL, SHIPPED_SERIES_MODEL
from .verbs import evaluate, export, predict, read_inputs

__all__ = ["DataConfig", "TASKS", "run", "evaluate", "read_inputs", "predict", "export", "SHIPPED_SERIES_MODEL",
           "DEFAULT_SERIES_MODEL"]
