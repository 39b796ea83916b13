"""What a time-series run trains and scores: the base forecaster (``model.pretrained``), the estimator a recipe
makes, the forecasters trained on every rank under torchrun (an ensemble's members, the other context
lengths, the scratch twin), their backtest scores and the same-run baselines. ``pipeline.run`` puts these
together into the run folder; ``competition.run_competition`` does so per group."""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from mambatune.domains.timeseries.ensemble import EnsemblePredictor, combine
from mambatune.domains.timeseries.estimator import MambaEstimator, check_patching
from mambatune.domains.timeseries.evaluation import METRIC_NAMES
from mambatune.domains.timeseries.evaluation import evaluate as score_forecasts
from mambatune.core import MambaConfig
from mambatune.domains.timeseries.module import FORECASTER_CONFIG, ForecasterConfig, save_forecaster

from .. import domain_run
from ..recipe import pretrained_overrides
from .config import DataConfig, dataset_names
from .data import Problem, fit_and_validation, load_problem

DEFAULT_SERIES_MODEL = "runs/pretrain_series/model"  # where `mambatune run timeseries/pretrain_series` leaves it
# pretrained on a GPU by this project's recipe and shipped in the package (recipe and log beside it)
SHIPPED_SERIES_MODEL = Path(sys.modules["mambatune.domains.timeseries"].__file__).parent / "pretrained" / \
    "series-mamba-500k"
HEAD_KEYS = ("kind", "distribution", "quantile_levels")


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
    behaviour = {}  # the model.config keys that apply to a pretrained forecaster (its backend)
    if pretrained is not None or architecture is not None:
        behaviour, _ = pretrained_overrides(recipe, (architecture or pretrained_architecture(pretrained, cfg))
                                            .mamba_config())
    if architecture is not None:  # the same model as a pretrained one (scratch baseline)
        arch = {"patch_length": architecture.patch_length, "stride": architecture.stride,
                "scaling": architecture.scaling, "time_features": architecture.num_time_features > 0,
                "dropout": architecture.dropout, "backbone": {**architecture.backbone, **behaviour}}
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
                          backend=behaviour.get("backend") if pretrained else None, **head_options(recipe))


def built_backbone(recipe, architecture: ForecasterConfig | None) -> tuple[MambaConfig, list[str]]:
    """The forecaster's backbone as this run builds it, and notes for the report. A new forecaster: the recipe's
    ``model.config`` (or the estimator's default). A pretrained one (``architecture``) keeps its shape: the
    recipe's ``model.config`` goes through ``recipe.pretrained_overrides``, so a shape key of the recipe file
    that differs is noted as not used, one given on the command line that contradicts the pretrained
    forecaster is a RecipeError, and the behaviour keys (``backend``) apply."""
    if architecture is None:
        return ForecasterConfig(backbone=dict(recipe.model.config) or ForecasterConfig().backbone).mamba_config(), []
    behaviour, notes = pretrained_overrides(recipe, architecture.mamba_config())
    return ForecasterConfig(backbone={**architecture.backbone, **behaviour}).mamba_config(), notes


def train_forecaster(estimator: MambaEstimator, problem: Problem) -> tuple:
    """Trains one forecaster (on every rank under torchrun); returns (predictor, training record). The predictor
    is None on the ranks other than the main one of an FSDP run."""
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
    if not domain_run.is_main_process():  # under FSDP the other ranks hold no model (see MambaEstimator.train)
        return None, members
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


def main_name(recipe, pretrained: str | None) -> str:
    methods = "+".join(m.method for m in recipe.peft.methods) or "full"
    ensemble = f", ensemble of {recipe.data.ensemble}" if recipe.data.ensemble > 1 else ""
    return f"mamba {'fine-tuned' if pretrained else 'from scratch'} ({methods}{ensemble})"


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
