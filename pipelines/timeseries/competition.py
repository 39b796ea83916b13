"""Competition runs (M3 / M1 with several groups in one run): one forecaster per group with the group's
own horizon and frequency, the baselines on the same series, scores per group and overall in the M3
convention, and the run's report.md. Called by ``pipeline.run`` when ``data.group`` names several groups."""
from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl

from mambatune.core.atomic import atomic_write_text
from mambatune.domains.timeseries.competition import competition_report, group_scores
from mambatune.domains.timeseries.demo_data import competition_groups
from mambatune.domains.timeseries.forecast_table import forecast_frame, write_forecasts

from .. import domain_run
from .config import dataset_names, group_names
from .data import load_problem
from .report import members_table, plot_fans
from .tasks import make_estimator, run_baselines_scored, score_forecaster, score_main, train_forecaster, train_main


def run_competition(recipe, run_dir: Path, name: str, pretrained: str | None, peft, arch, start: float) -> Path:
    """Every group of ``data.group`` in one run: one forecaster per group (its own horizon and frequency,
    the same recipe and budget), saved under ``<group>/predictor``; the baselines on the same series;
    scores per group and overall in the M3 convention (see ``domains.timeseries.competition``)."""
    cfg = recipe.data
    dataset = dataset_names(cfg.dataset)[0]
    on_main = domain_run.is_main_process()
    trained = {}  # every group's forecasters first (every rank trains), then the main rank scores them
    for group in group_names(cfg.group, dataset):
        problem = load_problem(cfg, group=group)
        if on_main:
            print(f"{dataset} {group}: {problem.description}")
        predictor, members = train_main(recipe, problem, run_dir / group, pretrained=pretrained, peft=peft)
        if on_main:
            predictor.serialize(run_dir / group / "predictor")
        scratch = None
        if pretrained and cfg.scratch_baseline and cfg.task == "forecast":
            estimator = make_estimator(recipe, problem, run_dir / group / "scratch", architecture=arch)
            scratch = train_forecaster(estimator, problem)
        trained[group] = (problem, predictor, members, scratch)
    if not on_main:
        return run_dir
    evaluations: dict[str, dict] = {}
    horizons, seconds, training, problems = {}, {}, {}, {}
    tables = []  # every group's backtest forecasts, saved as one table
    for group, (problem, predictor, members, scratch) in trained.items():
        problems[group], horizons[group] = problem.description, problem.prediction_length
        forecasts, evaluation, training[group] = score_main(predictor, members, problem)
        models = {name: (forecasts, evaluation, training[group]["seconds"])}
        if scratch is not None:
            s_fc, s_eval, s_train = score_forecaster(*scratch, problem)
            models["mamba from scratch (full, same budget)"] = (s_fc, s_eval, s_train["seconds"])
        models.update(run_baselines_scored(recipe, problem))
        tables.append(forecast_frame({n: fc for n, (fc, _, _) in models.items()}, problem.backtest.test_data,
                                     {"group": group}))
        plot_fans(forecasts, problem, run_dir / "plots" / group, cfg.fan_charts, f"{recipe.name}, {group}")
        for model, (_, ev, sec) in models.items():
            model = model.split(" (season ")[0]  # the baselines' season differs by group: one name for all
            evaluations.setdefault(model, {})[group] = ev
            seconds[model] = seconds.get(model, 0.0) + sec
    scores = {model: group_scores(evs, horizons) for model, evs in evaluations.items()}
    test = {model: {"sMAPE": s["all"].sMAPE, "MASE": s["all"].MASE, "seconds": seconds[model]}
            for model, s in scores.items()}
    results = {"task": cfg.task, "problem": f"{dataset}, groups {', '.join(horizons)}, official split and horizons",
               "groups": problems, "pretrained": pretrained, "test": test,
               "baselines": {n: m for n, m in test.items() if n != name},
               "scores": {model: {g: v.to_dict() for g, v in s.items()} for model, s in scores.items()},
               "per_group": {model: {g: ev.overall for g, ev in evs.items()} for model, evs in evaluations.items()},
               "training": training, "total_seconds": time.time() - start}
    saved = write_forecasts(pl.concat(tables, how="diagonal"), run_dir, cfg.forecasts_format)
    results["forecasts"] = saved.name if saved else None
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2, default=float) + "\n")
    complete = cfg.max_series is None and set(horizons) == set(competition_groups(dataset))
    table = competition_report(scores, dataset, complete)
    steps = ", ".join(f"{g} {t['steps']}" for g, t in training.items())
    ensembles = "".join("\n" + members_table(t["members"], evaluations[name][g].overall, f"### Ensemble members, {g}")
                        for g, t in training.items() if t.get("members"))
    atomic_write_text(run_dir / "report.md", f"""# {recipe.name}

Recipe: `{recipe.source}` · task `{cfg.task}` · base model: `{pretrained or 'none (from scratch)'}`

{dataset.upper()} with its official split and horizons, one forecaster per group (same recipe and budget),
context {cfg.context_length} steps, patches of {cfg.patch_length} (stride {cfg.stride}), scaling `{cfg.scaling}`,
time features {cfg.time_features}; seasonal naive and Theta (statsmodels; the group's seasonality) on
the same series in the same run.
sMAPE in percent and MASE (seasonality 1 yearly/other, 4 quarterly, 12 monthly) of the median
forecast, each the mean over series of the per-series value (the M3 convention; "all" pools every
series); the last column weights every forecast step instead.

{table}

Training steps per group: {steps}; total {results['total_seconds']:.0f} s.
Per group: {'; '.join(problems.values())}.
{ensembles}""")
    return run_dir
