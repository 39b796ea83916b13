"""K-fold cross-validation of any table-based recipe in one command.

``mambatune run <recipe> data.cv_folds=K`` runs the recipe K times, fold k with ``data.fold=k``
(its test rows are fold k, see ``data_source.split_rows``) into ``<output_dir>/fold-<k>/``, a
complete run folder each, baselines included. Then, in ``<output_dir>``:

- ``cv_results.csv``: fold, model, metric, value (every numeric test metric of every model);
- ``cv.json``: per model and metric the mean, the sample standard deviation and the K values;
- ``predictions_cv.csv``: every fold's ``predictions_test.csv`` with a ``fold`` column (each row
  predicted by the one model that did not train on it), when the pipeline writes them;
- ``cv_report.md``: the mean +- sd table.

A fold whose folder already holds ``results.json`` from the same recipe is kept (a killed
cross-validation resumes at the first unfinished fold); one made by another recipe is an error.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import math
from pathlib import Path
from typing import Callable

from mambatune.core.atomic import atomic_write_text

from .recipe import load_resolved, same_recipe, save_resolved


def is_cv_folder(run_dir: str | Path) -> bool:
    return (Path(run_dir) / "cv.json").is_file() or (Path(run_dir) / "fold-0").is_dir()


def fold_recipe(recipe, k: int):
    fold = copy.deepcopy(recipe)
    fold.data.fold = k
    fold.train.output_dir = str(Path(recipe.train.output_dir) / f"fold-{k}")
    return fold


def test_metrics(results: dict) -> dict[str, dict[str, float]]:
    """{model: {metric: value}} of a run's results.json, ours first (both layouts the pipelines write)."""
    test = results.get("test") or {}
    if test and all(isinstance(v, dict) for v in test.values()):
        models = dict(test)
    else:
        models = {"mamba": test, **(results.get("baselines") or {})}
    return {name: {m: float(v) for m, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for name, metrics in models.items() if isinstance(metrics, dict)}


def summarise(per_fold: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for fold in per_fold:
        for model, metrics in fold.items():
            for metric, value in metrics.items():
                out.setdefault(model, {}).setdefault(metric, {"values": []})["values"].append(value)
    for metrics in out.values():
        for entry in metrics.values():
            vals = [v for v in entry["values"] if not math.isnan(v)]
            mean = sum(vals) / len(vals) if vals else float("nan")
            sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else float("nan")
            entry.update(mean=mean, sd=sd, n=len(vals))
    return out


def report_table(summary: dict, metrics: list[str]) -> str:
    head = "| model | " + " | ".join(metrics) + " |\n|---|" + "---|" * len(metrics)
    rows = []
    for model, ms in summary.items():
        cells = [f"{ms[m]['mean']:.3f} ± {ms[m]['sd']:.3f}" if m in ms else "" for m in metrics]
        rows.append(f"| {model} | " + " | ".join(cells) + " |")
    return head + "\n" + "\n".join(rows)


def key_metrics(summary: dict, limit: int = 5) -> list[str]:
    preferred = ("auroc", "auprc", "accuracy", "macro_f1", "micro_f1", "pearson", "spearman", "r2", "mse", "mae",
                 "MASE", "sMAPE", "wQL", "bits_per_base", "bits_per_byte")
    ours = next(iter(summary.values()), {})
    chosen = [m for m in preferred if m in ours]
    not_metrics = ("loss", "n", "positives", "examples", "threshold")
    chosen += [m for m in ours if m not in chosen and not m.endswith(("_lo", "_hi")) and m not in not_metrics]
    return chosen[:limit]


def gather_predictions(out: Path, folds: int) -> int:
    """Writes predictions_cv.csv from the folds' predictions_test.csv; returns its rows (0: none written)."""
    rows, fields = [], ["fold"]
    for k in range(folds):
        path = out / f"fold-{k}" / "predictions_test.csv"
        if not path.is_file():
            return 0
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields += [f for f in reader.fieldnames or [] if f not in fields]
            rows += [{"fold": k, **r} for r in reader]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "predictions_cv.csv", buf.getvalue())
    return len(rows)


def run_folds(recipe, run_one: Callable) -> Path:
    """Runs every fold (see the module docstring) and writes the summary files; returns the folder."""
    from mambatune.core.training.distributed import is_main_process

    folds = recipe.data.cv_folds
    out = Path(recipe.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    on_main = is_main_process()
    if on_main:
        save_resolved(recipe, out)
    for k in range(folds):
        fold = fold_recipe(recipe, k)
        fold_dir = Path(fold.train.output_dir)
        if (fold_dir / "results.json").is_file():
            if not same_recipe(fold, load_resolved(fold_dir)):
                raise ValueError(f"{fold_dir} holds a finished run of another recipe; set train.output_dir to a new "
                                 "folder (or remove that one) to cross-validate this recipe")
            print(f"cross-validation: fold {k + 1} of {folds} already finished in {fold_dir}, kept", flush=True)
            continue
        print(f"cross-validation: fold {k + 1} of {folds} -> {fold_dir}", flush=True)
        run_one(fold)
    if not on_main:
        return out
    per_fold = [test_metrics(json.loads((out / f"fold-{k}" / "results.json").read_text())) for k in range(folds)]
    summary = summarise(per_fold)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["fold", "model", "metric", "value"])
    for k, fold in enumerate(per_fold):
        for model, metrics in fold.items():
            for metric, value in metrics.items():
                writer.writerow([k, model, metric, value])
    atomic_write_text(out / "cv_results.csv", buf.getvalue())
    split_how = json.loads((out / "fold-0" / "results.json").read_text()).get("split", "")
    n_pred = gather_predictions(out, folds)
    atomic_write_text(out / "cv.json", json.dumps({"folds": folds, "seed": recipe.data.seed, "split": split_how,
                                                   "models": summary}, indent=2, default=float) + "\n")
    metrics = key_metrics(summary)
    text = f"""# {recipe.name}: {folds}-fold cross-validation

Recipe: `{recipe.source}` · data: `{getattr(recipe.data, 'path', None) or 'built-in'}` · seed {recipe.data.seed}.
Each fold's test rows were predicted by a model (and baselines) that did not see them; each fold
is a complete run folder (`fold-0/` ... `fold-{folds - 1}/`).

## Test metrics, mean ± sd over {folds} folds (sample sd)

{report_table(summary, metrics)}

Per fold: `cv_results.csv`; every model and metric: `cv.json`.
{f"Out-of-fold predictions ({n_pred} rows): `predictions_cv.csv`." if n_pred else ""}
"""
    atomic_write_text(out / "cv_report.md", text)
    return out


def console_summary(run_dir: Path) -> str:
    """A short table of the cross-validation's mean +- sd for the console."""
    cv = json.loads((Path(run_dir) / "cv.json").read_text())
    summary = cv["models"]
    metrics = key_metrics(summary)
    width = max(len(m) for m in summary) + 2
    lines = [f"{cv['folds']}-fold cross-validation, test metrics (mean ± sd):",
             " " * width + "".join(f"{m:>18s}" for m in metrics)]
    for model, ms in summary.items():
        cells = "".join(f"{ms[m]['mean']:>10.3f} ± {ms[m]['sd']:<5.3f}" if m in ms else " " * 18 for m in metrics)
        lines.append(f"{model:<{width}s}{cells}")
    lines.append(f"run folder: {run_dir} (cv_report.md, cv_results.csv, fold-*/)")
    return "\n".join(lines)
