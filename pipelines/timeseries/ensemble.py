"""``mambatune ensemble`` for time-series runs: forecast runs trained separately (seeds side by side on
several GPUs, or in several batches) scored and saved as one ensemble, as ``data.ensemble`` would.

Every run must forecast the same problem: the same datasets (or competition and groups), horizon,
backtest windows and series selection. The members are each run's forecasters (an ensemble run
gives all of its members); per problem they are pooled by :class:`EnsemblePredictor` (sample paths
pooled; quantiles averaged for quantile heads) and saved in ``DIR/predictor`` (``DIR/<group>/predictor``
for a competition run), so ``mambatune eval / predict / export`` read ``DIR`` like any run. The
ensemble and every member are scored on the run's backtest; the other rows of the first run's
results (baselines, the scratch twin) are copied, not refitted: they do not depend on the members.
``results.json`` is written last and a failure removes ``DIR``, so no half-made run is left.
"""
from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
from pathlib import Path

from mambatune.core.atomic import atomic_write_text
from mambatune.domains.timeseries.competition import GroupScore, competition_report, group_scores
from mambatune.domains.timeseries.ensemble import EnsemblePredictor, combine
from mambatune.domains.timeseries.evaluation import METRIC_NAMES
from mambatune.domains.timeseries.evaluation import evaluate as score_forecasts

from .. import ensemble_runs as shared
from ..recipe import save_resolved
from .config import dataset_names
from .data import load_problem
from .report import members_table
from .verbs import groups_of, load_predictor, open_run

# settings that change which series and windows are forecast and how they are scored
PROBLEM_KEYS = ("task", "dataset", "group", "prediction_length", "windows", "max_series", "max_history",
                "season_length", "mase_seasonality")


def open_source(run) -> tuple:
    """(folder, recipe, results) of a finished time-series forecast run, or a clear error."""
    folder, recipe, results = open_run(run)
    if recipe.data.task != "forecast":
        raise ValueError(f"{folder} is a time-series {recipe.data.task} run; an ensemble combines forecast runs")
    return folder, recipe, results


def check_compatible(runs: list[tuple]) -> None:
    shared.check_settings(runs, PROBLEM_KEYS, "the runs forecast different problems: data.{key} is {a!r} in {first} "
                          "and {b!r} in {folder}; an ensemble's members must be scored on the same series and windows")
    folders = [str(Path(f).resolve()) for f, _, _ in runs]
    if len(set(folders)) != len(folders):
        raise ValueError("a run is given twice: each run's forecasters would count twice in the ensemble")


def member_info(recipe, k_in_run: int) -> dict:
    """Seed and context of one member as its run trained it (an ensemble run's k-th member: seed + k)."""
    cfg = recipe.data
    contexts = cfg.ensemble_context_lengths or [cfg.context_length]
    ensemble = cfg.ensemble > 1
    return {"seed": recipe.model.seed + (k_in_run if ensemble else 0),
            "context_length": contexts[k_in_run % len(contexts)] if ensemble else cfg.context_length}


def member_steps(results: dict, k: int):
    """The k-th member's optimizer steps as its run recorded them ("–" for a competition run, per group)."""
    training = results.get("training") or {}
    if training.get("members"):
        return training["members"][k].get("steps", "–")
    return training.get("steps", "–")


def collect_members(runs: list[tuple], groups: list) -> tuple[dict, list[dict], list[dict]]:
    """({group: [MambaPredictor]}, member records, source-run records); each run must save a forecaster per group."""
    members: dict = {g: [] for g in groups}
    records, sources = [], []
    for folder, recipe, results in runs:
        count = None
        for g in groups:
            predictor = load_predictor(folder, recipe, g)
            found = predictor.members if isinstance(predictor, EnsemblePredictor) else [predictor]
            members[g].extend(found)
            count = len(found)
        combined = (results.get("ensemble") or {}).get("members")  # a folder made by `mambatune ensemble`
        for k in range(count):
            own = {key: combined[k][key] for key in ("seed", "context_length", "steps")} if combined else \
                {**member_info(recipe, k), "steps": member_steps(results, k)}
            records.append({"source_run": str(folder), **own})
        sources.append({"run": str(folder), "members": count, "seed": recipe.model.seed,
                        "context_length": recipe.data.context_length})
    seen = {}
    for r in records:
        key = (r["seed"], r["context_length"])
        if key in seen:
            print(f"warning: {seen[key]} and {r['source_run']} both have a member with seed {key[0]} and context "
                  f"{key[1]}: they may be the same forecaster counted twice", file=sys.stderr)
        seen.setdefault(key, r["source_run"])
    return members, records, sources


def combine_runs(runs: list, out) -> Path:
    """Combines finished forecast runs into the ensemble run folder ``out`` (new or empty); returns it."""
    started = time.time()
    opened = [open_source(r) for r in runs]
    check_compatible(opened)
    out = Path(out)
    shared.check_out(out, opened)
    first, recipe, first_results = opened[0]
    groups = groups_of(recipe) or [None]
    members, records, sources = collect_members(opened, groups)
    size = len(members[groups[0]])
    if size < 2:
        raise ValueError(f"an ensemble needs at least two forecasters; {', '.join(runs)} hold {size}")
    scored = {g: score_group(recipe, g, members[g]) for g in groups}  # before anything is written
    ens_recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, ensemble=size,
                                                                     ensemble_context_lengths=[],
                                                                     compare_context_lengths=[]))
    main = re.sub(r",? ensemble of \d+", "", next(iter(first_results["test"]))).replace(" ()", "")
    name = f"{main}, ensemble of {size}"

    def write() -> None:
        out.mkdir(parents=True, exist_ok=True)
        for g in groups:
            EnsemblePredictor(members[g]).serialize(out / g / "predictor" if g else out / "predictor")
        save_resolved(ens_recipe, out)
        atomic_write_text(out / shared.ENSEMBLE_INFO, json.dumps({"runs": sources, "members": records}, indent=2) + "\n")
        results = (competition_results if groups != [None] else single_results)(
            name, scored, records, first, first_results, started)
        write_ensemble_report(out, ens_recipe, results, name, groups)
        atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=float) + "\n")

    shared.write_combined_run(out, write)
    return out


def score_group(recipe, group, predictors: list) -> dict:
    """The ensemble's and each member's evaluation on the problem's backtest."""
    problem = load_problem(recipe.data, group=group) if group else load_problem(recipe.data)
    inputs = list(problem.backtest.test_data.input)
    per_member = [list(p.predict(inputs)) for p in predictors]
    def score(fc):
        return score_forecasts(fc, problem.backtest.test_data, seasonality=problem.mase_seasonality)
    return {"problem": problem, "ensemble": score(combine(per_member)), "members": [score(fc) for fc in per_member]}


def single_results(name: str, scored: dict, records: list[dict], first: Path, first_results: dict,
                   started: float) -> dict:
    s = scored[None]
    test = {name: {k: s["ensemble"].overall[k] for k in METRIC_NAMES}}
    rows = []
    for k, (ev, r) in enumerate(zip(s["members"], records)):
        test[f"mamba member {k}"] = {k2: ev.overall[k2] for k2 in METRIC_NAMES}
        rows.append({**r, "name": f"mamba member {k}", **{k2: ev.overall[k2] for k2 in METRIC_NAMES}})
    copied = shared.first_baselines(first_results)
    test.update(copied)
    return {"task": "forecast", "problem": s["problem"].description, "pretrained": first_results.get("pretrained"),
            "test": test, "baselines": copied, "copied_from": str(first), "ensemble": {"size": len(records),
            "members": rows}, "mase_seasonality": s["problem"].mase_seasonality,
            "total_seconds": time.time() - started}


def competition_results(name: str, scored: dict, records: list[dict], first: Path, first_results: dict,
                        started: float) -> dict:
    horizons = {g: s["problem"].prediction_length for g, s in scored.items()}
    scores = {name: group_scores({g: s["ensemble"] for g, s in scored.items()}, horizons)}
    for k in range(len(records)):
        scores[f"mamba member {k}"] = group_scores({g: s["members"][k] for g, s in scored.items()}, horizons)
    test = {m: {"sMAPE": s["all"].sMAPE, "MASE": s["all"].MASE} for m, s in scores.items()}
    copied = shared.first_baselines(first_results)
    test.update(copied)
    all_scores = {m: {g: v.to_dict() for g, v in s.items()} for m, s in scores.items()}
    all_scores.update({m: v for m, v in first_results.get("scores", {}).items() if m in copied})
    return {"task": "forecast", "problem": first_results.get("problem"), "groups": first_results.get("groups"),
            "pretrained": first_results.get("pretrained"), "test": test, "baselines": copied,
            "copied_from": str(first), "scores": all_scores,
            "ensemble": {"size": len(records), "members": [{**r, "name": f"mamba member {k}"}
                                                           for k, r in enumerate(records)]},
            "total_seconds": time.time() - started}


def group_score(d: dict) -> GroupScore:
    return GroupScore(d["series"], d["sMAPE"], d["MASE"], d["sMAPE_step_weighted"], d["MASE_step_weighted"])


def write_ensemble_report(out: Path, recipe, results: dict, name: str, groups: list) -> None:
    ens = results["ensemble"]
    sources = sorted({r["source_run"] for r in ens["members"]})
    intro = (f"Ensemble of {ens['size']} forecasters from {len(sources)} runs ({', '.join(sources)}), combined by "
             "`mambatune ensemble`: pooled sample paths (mean of quantiles for quantile heads). Each `mamba member k` row "
             f"scores one forecaster alone. The other rows are copied from {results['copied_from']}/results.json, "
             "not refitted: they are the same on the same series and windows.")
    if groups == [None]:
        cols = ["MASE", "sMAPE", "wQL", "MSIS", "ND", "NRMSE"]
        rows = "\n".join(f"| {n} | " + " | ".join(f"{m[c]:.4g}" for c in cols) + " |"
                         for n, m in results["test"].items())
        body = (f"Backtest: {results['problem']}. MASE uses a seasonal period of {results['mase_seasonality']}.\n\n"
                f"| model | {' | '.join(cols)} |\n|{'---|' * (len(cols) + 1)}\n{rows}\n\n"
                + members_table(ens["members"], results["test"][name]))
    else:
        scores = {m: {g: group_score(v) for g, v in by.items()} for m, by in results["scores"].items()}
        dataset = dataset_names(recipe.data.dataset)[0]
        body = competition_report(scores, dataset, complete=recipe.data.max_series is None)
    atomic_write_text(out / "report.md", f"# {recipe.name}, ensemble\n\n{intro}\n\n{body}\n")
