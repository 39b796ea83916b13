"""Backtest forecasts as one table, so that any metric can be computed after the run.

One row per (model, series, window, step): ``model``, ``item_id``, ``origin`` (the last observed step
before the window), ``step`` (1 … horizon), ``timestamp`` (the forecast step's start), ``actual`` (the
held-out value; empty when missing), ``mean`` (a quantile forecast's median stands in for its mean) and
the quantiles ``q0.025`` … ``q0.975`` (:data:`TABLE_QUANTILES`). Written as CSV or parquet.

For example the ND of a model (GluonTS' ``ND()``, on the median) is
``sum(|actual - q0.5|) / sum(|actual|)`` over its rows.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl

from mambatune.core.atomic import atomic_write

TABLE_QUANTILES = (0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.975)


def forecast_frame(models: dict[str, list], test_data, extra: dict[str, str] | None = None) -> pl.DataFrame:
    """The table of every model's forecasts (``{model name: forecasts in test_data order}``) on the windows
    of ``test_data`` (GluonTS ``TestData``: (input, label) pairs). ``extra``: constant columns put first
    (e.g. ``{"group": "monthly"}``)."""
    pairs = list(test_data)
    columns: dict[str, list] = {k: [] for k in ("model", "item_id", "origin", "step", "timestamp", "actual", "mean",
                                                *(f"q{q}" for q in TABLE_QUANTILES))}
    for name, forecasts in models.items():
        forecasts = list(forecasts)
        if len(forecasts) != len(pairs):
            raise ValueError(f"{name}: {len(forecasts)} forecasts for {len(pairs)} windows")
        for forecast, (inp, label) in zip(forecasts, pairs):
            h = len(label["target"])
            index = forecast.index[:h]
            with warnings.catch_warnings():  # a quantile forecast has no mean: its median stands in
                warnings.simplefilter("ignore")
                mean = np.asarray(forecast.mean, dtype=np.float64)[:h]
            columns["model"] += [name] * h
            columns["item_id"] += [str(inp.get("item_id", forecast.item_id))] * h
            columns["origin"] += [str((index[0] - 1).start_time)] * h
            columns["step"] += list(range(1, h + 1))
            columns["timestamp"] += [str(p.start_time) for p in index]
            actual = np.asarray(label["target"], dtype=np.float64)
            columns["actual"] += [None if np.isnan(a) else float(a) for a in actual]
            columns["mean"] += mean.tolist()
            for q in TABLE_QUANTILES:
                columns[f"q{q}"] += np.asarray(forecast.quantile(q), dtype=np.float64)[:h].tolist()
    frame = pl.DataFrame(columns, schema_overrides={"actual": pl.Float64})
    if extra:
        frame = frame.select([pl.lit(v).alias(k) for k, v in extra.items()] + frame.columns)
    return frame


def write_forecasts(frame: pl.DataFrame, run_dir: str | Path, fmt: str = "csv") -> Path | None:
    """``forecasts.csv`` or ``forecasts.parquet`` in ``run_dir`` (written atomically); None for ``none``."""
    if fmt == "none":
        return None
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"forecasts format must be csv, parquet or none, got {fmt!r}")
    path = Path(run_dir) / f"forecasts.{fmt}"
    atomic_write(path, lambda tmp: frame.write_csv(tmp, float_precision=6) if fmt == "csv" else frame.write_parquet(tmp))
    return path
