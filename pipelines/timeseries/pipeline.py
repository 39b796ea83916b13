"""The time-series run: forecast a demo dataset with the Mamba forecaster, baselines in the same run.

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
``mambatune eval / predict / export`` on it: see ``verbs``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from mambatune.core.atomic import atomic_write_text
from mambatune.domains.timeseries.evaluation import METRIC_NAMES, evaluate_by_series
from mambatune.domains.timeseries.forecast_table import forecast_frame, write_forecasts
from mambatune.domains.timeseries.module import save_forecaster

from .. import domain_run
from ..recipe import save_resolved
from .competition import run_competition
from .config import COMPETITIONS, dataset_names, group_names
from .data import load_problem
from .report import plot_fans, write_report
from .tasks import (
    built_backbone,
    main_name,
    make_estimator,
    pretrained_architecture,
    resolve_pretrained,
    run_baselines_scored,
    score_contexts,
    score_forecaster,
    score_main,
    train_contexts,
    train_forecaster,
    train_main,
)

MAX_PER_SERIES = 50  # a backtest of more series than this gets no per-series table in the report


def run(recipe) -> Path:
    """Runs the recipe and writes the run folder; returns it. Under torchrun every rank trains (all the
    forecasters first); the main rank alone forecasts, scores, fits the baselines and writes the folder."""
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
    backbone, model_notes = built_backbone(recipe, arch)  # a contradicting override: RecipeError, before training
    if on_main:  # config.yaml now records the backbone as built (a pretrained forecaster's shape)
        save_resolved(recipe, run_dir, built=backbone, notes=model_notes)
        for note in model_notes:
            print(f"model: {note}", flush=True)
    peft = recipe.peft if recipe.peft.methods else None
    if peft is not None and pretrained is None and on_main:
        print("note: PEFT without model.pretrained fine-tunes a randomly initialised forecaster")
    name = "mamba (pretraining)" if cfg.task == "pretrain" else main_name(recipe, pretrained)
    names = dataset_names(cfg.dataset)
    if names[0] in COMPETITIONS and len(group_names(cfg.group, names[0])) > 1:
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
    charts = plot_fans(forecasts, problem, run_dir / "plots", cfg.fan_charts, recipe.name)
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
               "model_notes": model_notes, "mase_seasonality": problem.mase_seasonality,
               "total_seconds": time.time() - start}
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2, default=float) + "\n")
    write_report(run_dir, recipe, results, name)
    return run_dir
