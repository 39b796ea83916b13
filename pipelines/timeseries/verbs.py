"""``mambatune eval / predict / export`` on a finished time-series run.

A ``forecast`` run leaves ``predictor/`` (a serialized :class:`MambaPredictor`: LoRA merged, the
recipe's context, horizon, sample count and seed), or ``<group>/predictor`` per group of a
competition run; a ``pretrain`` run leaves ``model/`` (the forecaster), wrapped in a predictor
with the recipe's sample count and seed. Forecasts are seeded, so ``eval`` reproduces the run's
backtest scores.

``predict`` reads a file shaped like the run's (``domains.timeseries.user_data``, with the run's column
keys: a long table, one series when there is no item column, or series records such as GluonTS JSON
lines) at the predictor's frequency, and forecasts the run's horizon after each series' last step: one row
per series and step with the mean and the 0.1 / 0.5 / 0.9 quantiles. A series at another frequency gets one
row without a forecast whose note says so.
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mambatune.core.atomic import atomic_write_json
from mambatune.domains.tables import TableError, find_files
from mambatune.domains.timeseries.user_data import read_series
from mambatune.domains.timeseries.competition import group_scores
from mambatune.domains.timeseries.ensemble import context_length
from mambatune.domains.timeseries.ensemble import load_predictor as load_serialized
from mambatune.domains.timeseries.estimator import MambaPredictor
from mambatune.domains.timeseries.evaluation import METRIC_NAMES
from mambatune.domains.timeseries.evaluation import evaluate as score_forecasts
from mambatune.domains.timeseries.module import load_forecaster

from .. import domain_run
from .config import COMPETITIONS, HOURLY, columns, dataset_names, group_names
from .data import load_problem

QUANTILES = (0.1, 0.5, 0.9)


def open_run(run_dir):
    recipe, results = domain_run.open_run(run_dir, "timeseries")
    return Path(run_dir), recipe, results


def groups_of(recipe) -> list[str] | None:
    """The groups of a competition run with one forecaster per group (None: one forecaster)."""
    cfg = recipe.data
    names = dataset_names(cfg.dataset)
    if names[0] in COMPETITIONS and len(group_names(cfg.group, names[0])) > 1:
        return group_names(cfg.group, names[0])
    return None


def load_predictor(run_dir: Path, recipe, group: str | None = None) -> MambaPredictor:
    folder = run_dir / group if group else run_dir
    if (folder / "predictor").is_dir():
        return load_serialized(folder / "predictor")  # a MambaPredictor or an EnsemblePredictor
    if recipe.data.task == "pretrain" and (folder / "model").is_dir():
        cfg = recipe.data
        freq = "h" if dataset_names(cfg.dataset)[0] in HOURLY else load_problem(cfg, group=group).freq
        return MambaPredictor(load_forecaster(folder / "model"), freq, cfg.num_samples, seed=recipe.model.seed)
    raise FileNotFoundError(f"{folder} has no predictor/ (or model/ for pretraining): the run did not save one")


def single_predictor(run_dir: Path, recipe) -> MambaPredictor:
    groups = groups_of(recipe)
    if groups:
        raise ValueError(f"this run trained one forecaster per group ({', '.join(groups)}), saved in "
                         f"{run_dir}/<group>/predictor; load the one you need with mambatune.domains.timeseries.ensemble.load_predictor")
    return load_predictor(run_dir, recipe)


# -- eval ----------------------------------------------------------------------------------------

def evaluate(run_dir, split: str | None = None) -> dict:
    """The run's forecaster rescored on its backtest windows (the run's ``test``) with the run's metrics."""
    run_dir, recipe, results = open_run(run_dir)
    split = domain_run.check_split(split, recipe, allowed=("test",))
    cfg = recipe.data
    name = next(iter(results["test"]))
    groups = groups_of(recipe)
    if groups is None:
        problem = load_problem(cfg)
        forecasts = list(load_predictor(run_dir, recipe).predict(problem.backtest.test_data.input))
        ev = score_forecasts(forecasts, problem.backtest.test_data, seasonality=problem.mase_seasonality)
        return {"task": cfg.task, "split": split, "model": name, "problem": problem.description,
                "examples": len(forecasts), "metrics": {k: ev.overall[k] for k in METRIC_NAMES}}
    evaluations, horizons = {}, {}
    for group in groups:
        problem = load_problem(cfg, group=group)
        forecasts = list(load_predictor(run_dir, recipe, group).predict(problem.backtest.test_data.input))
        evaluations[group] = score_forecasts(forecasts, problem.backtest.test_data,
                                             seasonality=problem.mase_seasonality)
        horizons[group] = problem.prediction_length
    scores = group_scores(evaluations, horizons)
    return {"task": cfg.task, "split": split, "model": name, "groups": groups,
            "metrics": {"sMAPE": scores["all"].sMAPE, "MASE": scores["all"].MASE},
            "scores": {g: s.to_dict() for g, s in scores.items()}}


# -- predict -------------------------------------------------------------------------------------

@dataclass
class SeriesInputs:
    """The input file; it is read at the predictor's frequency, with the run's column keys, in :func:`predict`."""

    path: Path


def read_inputs(source: str, recipe) -> SeriesInputs:
    try:
        find_files(source, key="the input path")
    except TableError as err:
        raise FileNotFoundError(f"{err} (time-series predict reads your series with the run's column keys: a long "
                                "table, or series records with a list-valued target)") from None
    return SeriesInputs(Path(source))


def forecast_rows(forecast, item_id: str, note: str) -> list[dict]:
    with warnings.catch_warnings():  # a quantile forecast has no mean: its median stands in (documented)
        warnings.simplefilter("ignore")
        mean = np.asarray(forecast.mean)
    quantiles = {q: np.asarray(forecast.quantile(q)) for q in QUANTILES}
    return [{"item_id": item_id, "timestamp": str(period.to_timestamp()), "step": h + 1,
             "mean": round(float(mean[h]), 6), **{f"q{q}": round(float(quantiles[q][h]), 6) for q in QUANTILES},
             "note": note} for h, period in enumerate(forecast.index)]


def split_horizon(series, horizon: int, covariates: list[str]):
    """For a forecaster with known covariates: each series of a long table ends with ``horizon`` rows
    whose target is empty and whose covariate columns give the horizon's values. Returns the series
    without those steps, their covariates running ``horizon`` steps further (GluonTS' layout)."""
    entries = []
    for e in series.entries:
        tail = np.asarray(e["target"][-horizon:], dtype=np.float64)
        if len(e["target"]) <= horizon or np.isfinite(tail).any():
            raise ValueError(f"series {e['item_id']!r}: this forecaster reads the covariates {covariates}; end each "
                             f"series with {horizon} rows for the forecast horizon, their target empty and their "
                             "covariate columns filled")
        entries.append({**e, "target": e["target"][:-horizon], "observed_values": e["observed_values"][:-horizon]})
    return replace(series, entries=entries)


def predict(run_dir, inputs: SeriesInputs) -> list[dict]:
    """Forecasts of the run's horizon after the last step of every input series. A run trained with
    ``data.covariates`` needs them for the horizon: see :func:`split_horizon`."""
    run_dir, recipe, results = open_run(run_dir)
    predictor = single_predictor(run_dir, recipe)
    known = (results or {}).get("static_categories") or {}
    lost = [c for c in recipe.data.static if c not in known]
    if lost:
        raise ValueError(f"{run_dir}/results.json does not record the categories of the static column(s) {lost}; "
                         "predict with the run that trained the forecaster")
    read = read_series(inputs.path, columns(recipe.data), freq=predictor.freq, encoding=recipe.data.encoding,
                       static_categories=[known[c] for c in recipe.data.static] if recipe.data.static else None)
    series = read.series
    if recipe.data.covariates:
        series = split_horizon(series, predictor.prediction_length, recipe.data.covariates)
    context = context_length(predictor)
    counts = {"series": len(series), **{f"skipped ({k})": v for k, v in series.skipped.items()},
              **{k: v for k, v in read.counts.items() if k not in ("rows", "series")}}
    notes = []
    for entry in series.entries:
        observed = np.isfinite(np.asarray(entry["target"], dtype=np.float64)[-context:])
        if not observed.any():
            notes.append(f"no observed value in the last {context} steps: the forecast knows nothing of this series")
        elif len(entry["target"]) < context:
            notes.append(f"{len(entry['target'])} steps, shorter than the context ({context}): left-padded as unobserved")
        else:
            notes.append("")
    counts["without observed values"] = sum(n.startswith("no observed") for n in notes)
    counts["shorter than the context"] = sum("shorter" in n for n in notes)
    domain_run.report_skipped("predict series", counts)
    for note in read.notes:  # what reading the file changed (sorted rows, gaps, UTC offsets, ...)
        print(f"predict series: {note}", file=sys.stderr)
    rows = []
    for entry, forecast, note in zip(series.entries, predictor.predict(series.entries), notes):
        rows.extend(forecast_rows(forecast, str(entry.get("item_id")), note))
    for name, why in read.left_out.items():  # every input series keeps a row: one without a forecast, saying why
        rows.append({"item_id": name, "timestamp": "", "step": "", "mean": "", **{f"q{q}": "" for q in QUANTILES},
                     "note": f"no forecast: {why}"})
    return rows


# -- export --------------------------------------------------------------------------------------

def export(run_dir, out) -> Path:
    """The run's predictor folder(s), serialized again (``forecaster.json`` + ``model.safetensors`` +
    ``predictor.json``; one per group for a competition run) and ``export.json``."""
    run_dir, recipe, _ = open_run(run_dir)
    out = Path(out)
    groups = groups_of(recipe)
    written = []
    for group in groups or [None]:
        target = out / group if group else out
        load_predictor(run_dir, recipe, group).serialize(target)
        written.append(str(target.relative_to(out)) if group else ".")
    atomic_write_json(out / "export.json", {"exported_from": str(run_dir), "recipe": recipe.name,
                                            "task": recipe.data.task, "predictors": written,
                                            "load_with": "mambatune.domains.timeseries.ensemble.load_predictor(folder)"})
    return out
