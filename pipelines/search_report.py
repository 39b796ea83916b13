"""What a finished (or stopped) search leaves in its folder.

``trials.csv`` (every trial: number, state, value, methods, parameters, run folder), ``best`` (a
link to the best trial's run folder), ``best_recipe.yaml`` (the best trial's recipe, written to
train into ``<search>/best_rerun``), ``plots/optimization_history.png`` and
``plots/param_importances.png`` (Optuna's, on matplotlib's Agg backend) and ``search_report.md``
(the best hybrid's test metrics beside the best single method's and head-only's among the trials).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from mambatune.core.atomic import atomic_write_text

from .search_trial import trial_recipe, write_recipe

FIXED = ("number", "state", "value", "kind", "methods", "method_params", "trainable_params", "seconds",
         "run_dir", "worker", "retry_of", "note")


def note_of(t, retried: set[int]) -> str:
    if t.user_attrs.get("over_budget"):
        return "over the parameter budget: pruned before training"
    if t.user_attrs.get("not_hybrid"):
        return "fewer than two methods in a hybrid search: pruned before training"
    if t.state.name == "FAIL" and t.number in retried:
        return "its worker was killed: re-run as a later trial"
    if t.user_attrs.get("error"):
        return t.user_attrs["error"]
    return t.user_attrs.get("seeded", "")


KIND_TEXT = {"any": "any (any combination of the methods)", "single": "single (one method per trial)",
             "hybrid": "hybrid (two or more methods per trial)"}
NOT_SCORES = ("n", "positives", "seconds")  # numbers a pipeline reports beside its test scores


def test_metrics(run_dir: str | None) -> dict[str, float]:
    """The fine-tuned model's test scores from the run's results.json: the section itself (generic
    pipeline) or its first entry (domain pipelines list their model first, then baselines)."""
    path = Path(run_dir) / "results.json" if run_dir else None
    if path is None or not path.is_file():
        return {}
    test = json.loads(path.read_text()).get("test") or {}
    if test and all(isinstance(v, dict) for v in test.values()):
        test = next(iter(test.values()))
    return {k: float(v) for k, v in test.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_SCORES}


def write_trials_csv(trials, path: Path) -> None:
    """One row per trial: FIXED columns, the test metrics of completed runs (``test.<name>``), every parameter."""
    retried = {t.user_attrs.get("retry_of") for t in trials}
    params = list(dict.fromkeys(k for t in trials for k in t.params))
    tests = {t.number: {f"test.{k}": v for k, v in test_metrics(t.user_attrs.get("run_dir")).items()}
             for t in trials if t.state.name == "COMPLETE"}
    metrics = list(dict.fromkeys(k for m in tests.values() for k in m))
    with open(path.with_suffix(".tmp"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(FIXED) + metrics + params)
        w.writeheader()
        for t in trials:
            row = {k: t.user_attrs.get(k, "") for k in FIXED}
            row.update(number=t.number, state=t.state.name, value="" if t.value is None else t.value,
                       note=note_of(t, retried), **tests.get(t.number, {}), **t.params)
            w.writerow(row)
    os.replace(path.with_suffix(".tmp"), path)


def link_best(folder: Path, run_dir: Path) -> Path:
    """``<search>/best``: a relative link to the best run folder (a copy where links are refused)."""
    best = folder / "best"
    if best.is_symlink() or best.is_file():
        best.unlink()
    elif best.is_dir():
        shutil.rmtree(best)
    try:
        best.symlink_to(os.path.relpath(run_dir, folder), target_is_directory=True)
    except OSError:
        shutil.copytree(run_dir, best)
    return best


def write_plots(study, folder: Path, target: str) -> list[str]:
    """Optuna's optimisation history and parameter importances as PNGs; returns notes on plots not made."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as oplt

    out = folder / "plots"
    out.mkdir(exist_ok=True)
    notes = []
    for name, plot in (("optimization_history", oplt.plot_optimization_history),
                       ("param_importances", oplt.plot_param_importances)):
        try:
            with warnings.catch_warnings():  # importances of few trials come with caveats the note already makes
                warnings.simplefilter("ignore")
                ax = plot(study, target_name=target)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.tight_layout()
            fig.savefig(out / f"{name}.png", dpi=120)
            plt.close(fig)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:  # e.g. importances of fewer than 2 trials
            (out / f"{name}.png").unlink(missing_ok=True)
            notes.append(f"{name}.png not drawn: {err}")
    return notes


def best_of(trials, kinds: tuple[str, ...], maximize: bool):
    done = [t for t in trials if t.state.name == "COMPLETE" and t.user_attrs.get("kind") in kinds]
    if not done:
        return None
    return (max if maximize else min)(done, key=lambda t: t.value)


def comparison_table(rows: list[tuple[str, Any]], metric: str) -> str:
    tests = {label: test_metrics(t.user_attrs.get("run_dir")) for label, t in rows if t is not None}
    keys = list(dict.fromkeys(k for m in tests.values() for k in m))
    head = f"| | trial | methods | method params | val {metric} | " + " | ".join(f"test {k}" for k in keys) + " |"
    lines = [head, "|" + "---|" * (5 + len(keys))]
    for label, t in rows:
        if t is None:
            lines.append("| " + " | ".join([label, "none among the trials", "", "", ""] + [""] * len(keys)) + " |")
            continue
        m = tests[label]
        lines.append(f"| {label} | {t.number} | {t.user_attrs.get('methods')} | {t.user_attrs.get('method_params', '')} "
                     f"| {t.value:.4f} | " + " | ".join(f"{m[k]:.4f}" if k in m else "" for k in keys) + " |")
    return "\n".join(lines)


def write_outputs(study, search, base: dict[str, Any], recipe) -> Path:
    folder = search.folder
    trials = study.get_trials(deepcopy=False)
    write_trials_csv(trials, folder / "trials.csv")
    metric, maximize = recipe.train.metric_for_best, recipe.train.higher_is_better()
    states = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}
    over = sum(bool(t.user_attrs.get("over_budget")) for t in trials)
    not_hybrid = sum(bool(t.user_attrs.get("not_hybrid")) for t in trials)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    summary = (f"{len(trials)} trials: {states['COMPLETE']} complete, {states['PRUNED'] - over - not_hybrid} pruned "
               f"by the pruner, {over} over the budget, {states['FAIL']} failed"
               + (f", {not_hybrid} not hybrids (rejected)" if not_hybrid else "")
               + (f", {states['RUNNING']} still running" if states["RUNNING"] else ""))
    if not complete:
        atomic_write_text(folder / "search_report.md", f"# Search: {recipe.name}\n\n{summary}; no trial completed, "
                          "so there is no best configuration yet (see trials.csv and trials/*/log.txt).\n")
        print(f"{summary}; no trial completed. See {folder / 'trials.csv'}")
        return folder
    best = study.best_trial
    best_run = Path(best.user_attrs["run_dir"])
    link_best(folder, best_run)
    methods = json.loads(best.user_attrs["peft"])
    rerun = trial_recipe(base, methods, best.params["lr"], folder / "best_rerun")
    write_recipe(rerun, folder / "best_recipe.yaml",
                 f"best trial {best.number} of the search in {folder}: validation {metric} {best.value:.6g}")
    plot_notes = write_plots(study, folder, f"validation {metric}")
    rows = [("best hybrid", best_of(trials, ("hybrid",), maximize)),
            ("best single method", best_of(trials, ("single",), maximize)),
            ("head only", best_of(trials, ("head_only",), maximize))]
    plots = "\n".join(f"![{p.stem}](plots/{p.name})" for p in sorted((folder / "plots").glob("*.png")))
    notes = "\n".join(f"- {n}" for n in plot_notes + study.user_attrs.get("left_out", []))
    notes = f"\n## Notes\n\n{notes}\n" if notes else ""
    import yaml
    overrides = f" with `{' '.join(search.overrides)}`" if search.overrides else ""
    budget = f"{search.budget:,} method parameters" if search.budget else "none"
    text = f"""# Search: {recipe.name}

- recipe: `{search.recipe}`{overrides}
- objective: the best validation {metric} of each run ({'maximised' if maximize else 'minimised'})
- kind: {KIND_TEXT[search.kind]}
- sampler: TPE (seed {search.seed}); pruner: {type(study.pruner).__name__}; budget: {budget}
- storage: `{search.storage or 'study.db (SQLite)'}`

{summary}.

## Best trial

Trial {best.number}: {best.user_attrs.get('methods')}, learning rate {best.params['lr']:.3g},
{best.user_attrs.get('method_params', '?')} method parameters; validation {metric} {best.value:.4f}.
Run folder: `best` (= `{best_run}`). Rerun it: `mambatune run {folder / 'best_recipe.yaml'}`.

```yaml
{yaml.safe_dump({"peft": {"methods": methods}}, sort_keys=False).strip()}
```

## Best hybrid against the best single method (the same trials)

Test metrics of each run's kept checkpoint (the best validation step); methods counted as
MambaPEFT names them (LoRAp: LoRA on the x half of in_proj).

{comparison_table(rows, metric)}

## Plots

{plots}
{notes}
Every trial: `trials.csv`; each run: `trials/trial-NNNN/run`, its log `trials/trial-NNNN/log.txt`.
"""
    atomic_write_text(folder / "search_report.md", text)
    print(f"{summary}. Best: trial {best.number} ({best.user_attrs.get('methods')}), validation {metric} "
          f"{best.value:.4f}. Report: {folder / 'search_report.md'}; rerun: mambatune run {folder / 'best_recipe.yaml'}")
    return folder
