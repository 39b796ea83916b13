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
from dataclasses import dataclass
from pathlib import Path

import torch

from mambatune.core.atomic import atomic_write_text
from mambatune.domains.timeseries.data import TABLE_SUFFIXES
from mambatune.domains.timeseries.ensemble import EnsemblePredictor, combine
from mambatune.domains.timeseries.evaluation import METRIC_NAMES, evaluate_by_series
from mambatune.domains.timeseries.evaluation import evaluate as score_forecasts
from mambatune.domains.timeseries.estimator import WINDOW_SAMPLINGS, MambaEstimator, check_patching
from mambatune.domains.timeseries.transforms import check_holidays
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
from .timeseries_report import plot_fans, write_report

TASKS = ("forecast", "pretrain")
DEFAULT_SERIES_MODEL = "runs/pretrain_series/model"  # where `mambatune run timeseries/pretrain_series` leaves it
# pretrained on a GPU by this project's recipe and shipped in the package (recipe and log beside it)
SHIPPED_SERIES_MODEL = Path(sys.modules["mambatune.domains.timeseries"].__file__).parent / "pretrained" / \
    "series-mamba-500k"
HEAD_KEYS = ("kind", "distribution", "quantile_levels")
MAX_PER_SERIES = 50  # a backtest of more series than this gets no per-series table in the report


@dataclass
class DataConfig:
    """task: forecast | pretrain; dataset: an hourly series (electricity, sf_traffic, traffic_volume,
    bike_sharing, solar, wind), a list of them (one item each), m3 | m1, or a file of your own series
    (a long table .csv / .tsv / .parquet with item_id (optional), timestamp, target and covariate
    columns, or GluonTS JSON lines), backtested like the hourly series; freq: the file's frequency
    (a pandas alias; inferred from a table when null, needed for JSON lines); covariates: the table's
    known covariate columns, which the forecaster reads (values for the horizon too: see
    ``timeseries_verbs.predict``); static: the table's static categorical columns (constant per
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
    and Theta's period (null: 168 hourly, the competition's seasonality); mase_seasonality: MASE's period
    (null: 24 hourly, the competition's); deep_baselines: also DeepAR and PatchTST (GluonTS torch, needs
    lightning; slower); baseline_epochs: their epochs of 50 batches; pretrain_dataset (a name or a list,
    like dataset) / pretrain_steps:
    with ``model.pretrained: default`` and no saved model, pretrain one in this run under ``pretrain/``;
    scratch_baseline: when fine-tuning, also train the same model from scratch; ensemble: train this many
    forecasters (seeds seed, seed + 1, ...) and forecast with all of them (pooled sample paths; see
    ``domains.timeseries.ensemble``), each member with the recipe's budget; ensemble_context_lengths: the
    members' context lengths, cycled (empty: all read context_length); seasonal_skip: a period P: the
    forecaster predicts the correction to the seasonal-naive forecast of period P (``season``: the data's
    seasonal-naive period, 168 hourly and the group's seasonality for M3/M1; null: a pretrained model's
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
    fan_charts: int = 4
    dropout: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
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
        if self.prediction_length is None and (first in HOURLY or is_series_file(first)):
            raise ValueError("hourly and file datasets need a prediction_length (e.g. 24 or 168)")
        if (self.covariates or self.static) and not (is_series_file(first)
                                                      and Path(first).suffix.lower() in TABLE_SUFFIXES):
            raise ValueError("data.covariates / data.static name columns of a long table given as data.dataset "
                             "(.csv / .tsv / .parquet); JSON lines carry theirs as feat_dynamic_real / feat_static_cat")


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


def run_baselines_scored(recipe, problem: Problem) -> dict:
    from mambatune.domains.timeseries.baselines import TrainingBudget, run_baselines

    names = ["seasonal_naive", "theta"] + (["deepar", "patchtst"] if recipe.data.deep_baselines else [])
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
    if recipe.eval.baselines:
        models.update(run_baselines_scored(recipe, problem))
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
