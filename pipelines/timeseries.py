"""Time-series pipeline: forecast a demo dataset with the Mamba forecaster, baselines in the same run.

``data.task`` picks what a recipe does (recipes in ``recipes/timeseries/``):

- ``forecast``: train (``model.pretrained: null``) or fine-tune (a forecaster folder, or
  ``default``) the forecaster with the recipe's PEFT method (none = full) on everything
  before the backtest windows, forecast the windows, score them with GluonTS' metrics;
- ``pretrain``: train a forecaster on ``data.dataset`` and save it under ``model/`` for
  the fine-tuning recipes (``runs/pretrain_series/model`` by default).

Backtests: hourly series (``electricity``, ``sf_traffic``, ``traffic_volume``,
``bike_sharing``, ``solar``, ``wind``; ``data.dataset`` may list several, each one item)
hold out their last ``data.windows`` horizons (rolling origin, one window per horizon),
scored overall and per series (with the mean over series), and so does a file of the user's
series (``data.dataset: sales.csv``, with ``data.covariates``); M3 / M1 use one group's
official split and horizon; ``data.group: all`` (or a list) runs every group in one run,
one forecaster per group, scored per group and overall in the M3 convention (mean over
series of each series' sMAPE) beside seasonal naive and Theta (recipe ``forecast_m3``).
``data.compare_context_lengths`` trains the same model at several context lengths with
the same budget and windows and reports each (e.g. ``[512, 8192]``). In the same run and on the same windows: seasonal
naive and Theta (``eval.baselines``), DeepAR and PatchTST (``data.deep_baselines``, same
context and a comparable budget), and, when fine-tuning, the same forecaster trained from
scratch at the same budget (``data.scratch_baseline``).

The run folder: config.yaml, metrics.jsonl + checkpoints/ (the Trainer's), predictor/
(a serialized MambaPredictor) or model/ (pretrain), plots/fan_*.png, results.json, report.md.
``mambatune eval / predict / export`` on it: see ``timeseries_verbs``.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from mambatune.core.atomic import atomic_write_text
from mambatune.domains.timeseries.ensemble import EnsemblePredictor, combine
from mambatune.domains.timeseries.evaluation import METRIC_NAMES, evaluate_by_series
from mambatune.domains.timeseries.forecast_table import forecast_frame, write_forecasts
from mambatune.domains.timeseries.evaluation import evaluate as score_forecasts
from mambatune.domains.timeseries.estimator import MambaEstimator, check_patching
from mambatune.domains.timeseries.module import FORECASTER_CONFIG, ForecasterConfig, save_forecaster

from . import domain_run
from .timeseries_problem import (  # noqa: F401  (also used as ts.load_problem, ... by the other modules)
    COMPETITIONS,
    HOURLY,
    Problem,
    check_datasets,
    competition_groups,
    dataset_names,
    fit_and_validation,
    group_names,
    is_series_file,
    load_problem,
)
from .timeseries_config import TASKS, DataConfig  # noqa: F401  (the recipe's data section)
from .timeseries_report import plot_fans, write_report

DEFAULT_SERIES_MODEL = "runs/pretrain_series/model"  # where `mambatune run timeseries/pretrain_series` leaves it
# pretrained on a GPU by this project's recipe and shipped in the package (recipe and log beside it)
SHIPPED_SERIES_MODEL = Path(sys.modules["mambatune.domains.timeseries"].__file__).parent / "pretrained" / \
    "series-mamba-500k"
HEAD_KEYS = ("kind", "distribution", "quantile_levels")
MAX_PER_SERIES = 50  # a backtest of more series than this gets no per-series table in the report


# -- models --------------------------------------------------------------------------------------

def resolve_pretrained(recipe, run_dir: Path) -> str | None:
    """The base forecaster's folder. ``default``: $MAMBATUNE_SERIES_MODEL, else the shipped forecaster,
    else runs/pretrain_series/model, and when that does not exist either, one pretrained in this run
    (under ``pretrain/``); the name of a shipped forecaster (a folder beside SHIPPED_SERIES_MODEL): that one."""
    path = recipe.model.pretrained
    if path is None:
        return None
    shipped = SHIPPED_SERIES_MODEL
    if path == "default":
        path = domain_run.default_model("MAMBATUNE_SERIES_MODEL", shipped, DEFAULT_SERIES_MODEL)
        if not Path(path).exists():
            if domain_run.is_main_process():
                print(f"no pretrained forecaster at {path}: pretraining one on {recipe.data.pretrain_dataset} "
                      f"under {run_dir / 'pretrain'}")
            return str(pretrain_in_run(recipe, run_dir / "pretrain"))
    if not Path(path).exists() and (shipped.parent / path / "model.safetensors").is_file():
        path = str(shipped.parent / path)  # a shipped forecaster by name, e.g. series-mamba-500k
    if not Path(path).exists():
        names = sorted(p.name for p in shipped.parent.iterdir() if p.is_dir()) if shipped.parent.is_dir() else []
        raise FileNotFoundError(
            f"pretrained forecaster {path!r} does not exist. Create one with `mambatune run timeseries/pretrain_series` "
            f"(it writes {DEFAULT_SERIES_MODEL}), set model.pretrained=default to pretrain one in this run, "
            + (f"name a shipped forecaster ({', '.join(names)}), " if names else "")
            + "or model.pretrained=null to train from scratch")
    return path


def head_options(recipe) -> dict:
    head = dict(recipe.model.head)
    unknown = [k for k in head if k not in HEAD_KEYS]
    if unknown or head.get("kind") != "forecast":
        raise ValueError(f"model.head for time series is {{kind: forecast, distribution: student_t | quantile, "
                         f"quantile_levels: [...]}}; got {head}")
    head.pop("kind")
    return head


def make_estimator(recipe, problem: Problem, output_dir: Path, pretrained: str | None = None, peft=None,
                   architecture: ForecasterConfig | None = None, max_steps: int | None = None,
                   context_length: int | None = None, seed: int | None = None) -> MambaEstimator:
    cfg = recipe.data
    seed = recipe.model.seed if seed is None else seed
    train = dataclasses.asdict(recipe.train)
    train["output_dir"] = str(output_dir)
    train["seed"] = train["seed"] + seed - recipe.model.seed  # an ensemble member shifts the data order too
    if max_steps is not None:
        train["max_steps"] = max_steps
    arch = {"patch_length": cfg.patch_length, "stride": cfg.stride, "scaling": cfg.scaling,
            "time_features": cfg.time_features, "dropout": cfg.dropout, "backbone": dict(recipe.model.config)}
    if architecture is not None:  # the same model as a pretrained one (scratch baseline)
        arch = {"patch_length": architecture.patch_length, "stride": architecture.stride,
                "scaling": architecture.scaling, "time_features": architecture.num_time_features > 0,
                "dropout": architecture.dropout, "backbone": dict(architecture.backbone)}
    # null in the recipe: the pretrained architecture's setting (scratch baseline), else the estimator's default
    inherited = {name: getattr(architecture, name) if value is None and architecture is not None else value
                 for name, value in (("seasonal_skip", problem.season_length if cfg.seasonal_skip == "season"
                                      else cfg.seasonal_skip),
                                     ("scale_window", cfg.scale_window), ("holidays", cfg.holidays))}
    return MambaEstimator(problem.freq, problem.prediction_length, context_length or cfg.context_length,
                          pretrained=pretrained,
                          peft=peft, train=train, max_train_windows=cfg.max_train_windows,
                          window_sampling=cfg.window_sampling,
                          num_samples=cfg.num_samples, seed=seed, **inherited, **arch,
                          **head_options(recipe))


def train_forecaster(estimator: MambaEstimator, problem: Problem) -> tuple:
    """Trains one forecaster (on every rank under torchrun); returns (predictor, training record)."""
    fit, val = fit_and_validation(problem)
    started = time.time()
    predictor = estimator.train(fit, validation_data=val)
    result = estimator.last_result
    training = {"steps": result.steps, "best_step": result.best_step, "stopped_early": result.stopped_early,
                "train_seconds": result.seconds, "seconds": time.time() - started, "last_eval": result.last_eval}
    return predictor, training


def score_forecaster(predictor, training: dict, problem: Problem) -> tuple:
    """Forecasts the backtest windows and scores them (the main rank only under torchrun); returns
    (forecasts, evaluation, training) with the forecasting time added to ``training["seconds"]``."""
    started = time.time()
    forecasts = list(predictor.predict(problem.backtest.test_data.input))
    evaluation = score_forecasts(forecasts, problem.backtest.test_data, seasonality=problem.mase_seasonality)
    return forecasts, evaluation, {**training, "seconds": training["seconds"] + time.time() - started}


def train_main(recipe, problem: Problem, out_dir: Path, pretrained: str | None = None, peft=None) -> tuple:
    """Trains the recipe's forecaster, or with ``data.ensemble`` > 1 its ensemble: members under
    ``out_dir/member-<k>`` with seeds seed + k (and the k-th of ``ensemble_context_lengths``, cycled), each
    trained with the recipe's budget, combined by :class:`EnsemblePredictor`. Every rank trains under
    torchrun. Returns (predictor, members), a member being {"predictor", "training", "seed", "context_length"}."""
    cfg = recipe.data
    if cfg.ensemble == 1:
        estimator = make_estimator(recipe, problem, out_dir, pretrained=pretrained, peft=peft)
        predictor, training = train_forecaster(estimator, problem)
        return predictor, [{"predictor": predictor, "training": training, "seed": recipe.model.seed,
                            "context_length": cfg.context_length}]
    members = []
    contexts = cfg.ensemble_context_lengths or [cfg.context_length]
    for k in range(cfg.ensemble):
        seed, context = recipe.model.seed + k, contexts[k % len(contexts)]
        if domain_run.is_main_process():
            print(f"ensemble member {k + 1}/{cfg.ensemble}: seed {seed}, context {context}")
        estimator = make_estimator(recipe, problem, out_dir / f"member-{k}", pretrained=pretrained, peft=peft,
                                   context_length=context, seed=seed)
        predictor, training = train_forecaster(estimator, problem)
        members.append({"predictor": predictor, "training": training, "seed": seed, "context_length": context})
    return EnsemblePredictor([m["predictor"] for m in members]), members


def score_main(predictor, members: list[dict], problem: Problem) -> tuple:
    """Forecasts and scores what :func:`train_main` trained (the main rank): (forecasts, evaluation,
    training). The training record of an ensemble lists every member with its own test scores, so the
    gain of the ensemble over its members is in the results."""
    if len(members) == 1:
        return score_forecaster(predictor, members[0]["training"], problem)
    started = time.time()
    per_member, records = [], []
    for m in members:
        forecasts, evaluation, training = score_forecaster(m["predictor"], m["training"], problem)
        per_member.append(forecasts)
        records.append({"seed": m["seed"], "context_length": m["context_length"], "steps": training["steps"],
                        "best_step": training["best_step"], "seconds": training["seconds"],
                        **{k: evaluation.overall[k] for k in METRIC_NAMES}})
    forecasts = combine(per_member)
    evaluation = score_forecasts(forecasts, problem.backtest.test_data, seasonality=problem.mase_seasonality)
    training = {"steps": sum(r["steps"] for r in records), "best_step": [r["best_step"] for r in records],
                "stopped_early": None, "train_seconds": sum(r["seconds"] for r in records),
                "seconds": sum(m["training"]["seconds"] for m in members) + time.time() - started,
                "last_eval": None, "members": records}
    return forecasts, evaluation, training


def pretrain_in_run(recipe, out_dir: Path) -> Path:
    """Pretrains the recipe's architecture on ``data.pretrain_dataset`` for ``data.pretrain_steps``;
    returns the saved model folder. Under torchrun every rank trains, the main rank saves and the others
    wait for it, since every rank loads the folder next."""
    from mambatune.core.training.distributed import barrier_between_launched

    problem = load_problem(recipe.data, recipe.data.pretrain_dataset)
    estimator = make_estimator(recipe, problem, out_dir, max_steps=recipe.data.pretrain_steps)
    predictor = estimator.train(*fit_and_validation(problem))
    folder = out_dir / "model"
    if domain_run.is_main_process():
        save_forecaster(predictor.model, folder, meta={"pretrained_on": dataset_names(recipe.data.pretrain_dataset)})
    barrier_between_launched()
    return folder


def pretrained_architecture(pretrained: str, cfg: DataConfig) -> ForecasterConfig:
    """The saved forecaster's architecture; its patching must be the recipe's (the context may differ)."""
    arch = ForecasterConfig.from_dict(json.loads((Path(pretrained) / FORECASTER_CONFIG).read_text())["forecaster"])
    check_patching(arch, cfg.patch_length, cfg.stride, where=f"the pretrained forecaster {pretrained}",
                   names=("data.patch_length", "data.stride"))
    return arch


def baseline_names(recipe) -> list[str]:
    """The same-run baselines: ``data.baselines`` (seasonal_naive, theta, each on its own), plus DeepAR and
    PatchTST with ``data.deep_baselines``; none with ``eval.baselines: false``. A list given as
    ``eval.baselines`` is taken as the names instead."""
    chosen = recipe.eval.baselines
    if chosen is False:
        return []
    names = list(chosen) if isinstance(chosen, (list, tuple)) else list(recipe.data.baselines)
    return names + [n for n in ("deepar", "patchtst") if recipe.data.deep_baselines and n not in names]


def run_baselines_scored(recipe, problem: Problem) -> dict:
    from mambatune.domains.timeseries.baselines import TrainingBudget, run_baselines

    names = baseline_names(recipe)
    if not names:
        return {}
    domain_run.announce_baselines(names)
    budget = TrainingBudget(max_epochs=recipe.data.baseline_epochs)
    results = run_baselines(problem.backtest, problem.season_length, names, recipe.data.context_length, budget,
                            seed=recipe.data.seed)
    label = {"seasonal_naive": f"seasonal naive (season {problem.season_length})",
             "theta": f"Theta (season {problem.season_length})", "deepar": "DeepAR", "patchtst": "PatchTST"}
    # score every model with the same MASE period (run_baselines uses the baselines' season)
    return {label[n]: (r.forecasts, score_forecasts(r.forecasts, problem.backtest.test_data,
                                             seasonality=problem.mase_seasonality), r.seconds)
            for n, r in results.items()}


# -- the run -------------------------------------------------------------------------------------

def main_name(recipe, pretrained: str | None) -> str:
    methods = "+".join(m.method for m in recipe.peft.methods) or "full"
    ensemble = f", ensemble of {recipe.data.ensemble}" if recipe.data.ensemble > 1 else ""
    return f"mamba {'fine-tuned' if pretrained else 'from scratch'} ({methods}{ensemble})"


def run(recipe) -> Path:
    """Runs the recipe and writes the run folder; returns it. Under torchrun every rank trains (all the
    forecasters first); the main rank alone forecasts, scores, fits the baselines and writes the folder."""
    from .recipe import save_resolved

    start = time.time()
    cfg = recipe.data
    run_dir = Path(recipe.train.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    on_main = domain_run.is_main_process()
    if on_main:
        save_resolved(recipe, run_dir)
    torch.manual_seed(cfg.seed)
    pretrained = resolve_pretrained(recipe, run_dir) if cfg.task == "forecast" else None
    arch = pretrained_architecture(pretrained, cfg) if pretrained else None
    peft = recipe.peft if recipe.peft.methods else None
    if peft is not None and pretrained is None and on_main:
        print("note: PEFT without model.pretrained fine-tunes a randomly initialised forecaster")
    name = "mamba (pretraining)" if cfg.task == "pretrain" else main_name(recipe, pretrained)
    names = dataset_names(cfg.dataset)
    if names[0] in COMPETITIONS and len(group_names(cfg.group, names[0])) > 1:
        from .timeseries_competition import run_competition
        return run_competition(recipe, run_dir, name, pretrained, peft, arch, start)
    problem = load_problem(cfg)
    predictor, members = train_main(recipe, problem, run_dir, pretrained=pretrained, peft=peft)
    if on_main and cfg.task == "pretrain":
        save_forecaster(predictor.model, run_dir / "model", meta={"pretrained_on": names})
    elif on_main:
        predictor.serialize(run_dir / "predictor")
    other_contexts = train_contexts(recipe, problem, run_dir, name, pretrained, peft)
    scratch = None
    if pretrained and cfg.scratch_baseline and cfg.task == "forecast":
        scratch = train_forecaster(make_estimator(recipe, problem, run_dir / "scratch", architecture=arch), problem)
    if not on_main:
        return run_dir
    forecasts, evaluation, training = score_main(predictor, members, problem)
    models = {name: (forecasts, evaluation, training["seconds"])}
    contexts = score_contexts(recipe, other_contexts, problem, models[name], training)
    models.update({f"{name}, context {c}": m for c, (m, _) in contexts.items() if c != cfg.context_length})
    if scratch is not None:
        s_fc, s_eval, s_train = score_forecaster(*scratch, problem)
        models["mamba from scratch (full, same budget)"] = (s_fc, s_eval, s_train["seconds"])
    models.update(run_baselines_scored(recipe, problem))
    saved = write_forecasts(forecast_frame({n: fc for n, (fc, _, _) in models.items()}, problem.backtest.test_data),
                            run_dir, cfg.forecasts_format)
    charts = plot_fans(forecasts, problem, run_dir / "plots", cfg.fan_charts, name)
    test = {n: {k: ev.overall[k] for k in METRIC_NAMES} | {"seconds": sec} for n, (_, ev, sec) in models.items()}
    per_series = None
    items = {entry.get("item_id") for entry in problem.backtest.test_data.input}
    if names[0] not in COMPETITIONS and 1 < len(items) <= MAX_PER_SERIES:
        per_series = {n: evaluate_by_series(fc, problem.backtest.test_data, seasonality=problem.mase_seasonality)
                      for n, (fc, _, _) in models.items()}
    results = {"task": cfg.task, "problem": problem.description, "pretrained": pretrained, "test": test,
               "per_series": per_series,
               "context_comparison": {str(c): {k: ev.overall[k] for k in METRIC_NAMES}
                                      | {"seconds": sec, "steps": t["steps"], "best_step": t["best_step"]}
                                      for c, ((_, ev, sec), t) in contexts.items()} or None,
               "baselines": {n: m for n, m in test.items() if n != name}, "training": training,
               "static_categories": dict(zip(cfg.static, problem.static_categories)) or None,
               "data": {"notes": problem.data_notes, "counts": problem.data_counts} if cfg.path else None,
               "forecasts": saved.name if saved else None,
               "fan_charts": [str(p.relative_to(run_dir)) for p in charts],
               "mase_seasonality": problem.mase_seasonality, "total_seconds": time.time() - start}
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2, default=float) + "\n")
    write_report(run_dir, recipe, results, name)
    return run_dir


def train_contexts(recipe, problem: Problem, run_dir: Path, name: str, pretrained: str | None, peft) -> dict:
    """``data.compare_context_lengths``: the main model trained again at each other length, with the same
    recipe, budget, seed and training cut points (only the context read before each differs); every rank
    trains under torchrun. Returns ``{length: (predictor, training)}`` without ``context_length``'s."""
    cfg = recipe.data
    out = {}
    for c in cfg.compare_context_lengths:
        if c == cfg.context_length:
            continue
        if domain_run.is_main_process():
            print(f"context comparison: training {name} at context {c}")
        estimator = make_estimator(recipe, problem, run_dir / f"context_{c}", pretrained=pretrained, peft=peft,
                                   context_length=c)
        out[c] = train_forecaster(estimator, problem)
    return out


def score_contexts(recipe, trained: dict, problem: Problem, main: tuple, training: dict) -> dict:
    """Scores what :func:`train_contexts` trained (the main rank); ``main`` and ``training``: the main model's
    (forecasts, evaluation, seconds) and training record. Returns ``{length: ((forecasts, evaluation,
    seconds), training)}`` in the order of ``compare_context_lengths``."""
    out = {}
    for c in recipe.data.compare_context_lengths:
        if c == recipe.data.context_length:
            out[c] = (main, training)
            continue
        fc, ev, t = score_forecaster(*trained[c], problem)
        out[c] = ((fc, ev, t["seconds"]), t)
    return out


# the CLI verbs on a finished run (eval, predict, export) live beside this module
evaluate, predict, export, read_inputs = domain_run.verbs_of("mambatune.pipelines.timeseries_verbs")
