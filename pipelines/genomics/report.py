"""report.md of a genomics run: the test table with bootstrap intervals, the windows used, a zero-shot run's
scores on more splits, and the shared tail (training, parameters, curves)."""
from __future__ import annotations

from pathlib import Path

from mambatune.core.atomic import atomic_write_text

from .. import domain_run
from .. import ensemble_runs as shared


def fmt(m: dict, key: str) -> str:
    if key not in m:
        return "–"
    ci = m.get(f"{key}_ci")
    return f"{m[key]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{m[key]:.3f}"


def metrics_table(models: dict[str, dict], cols: list[str]) -> str:
    """A markdown table: one row per model, a column per metric (with its interval when there is one)."""
    rows = [f"| {name} | " + " | ".join(fmt(m, c) for c in cols) + " |" for name, m in models.items()]
    return "\n".join([f"| model | {' | '.join(cols)} |", "|" + "---|" * (len(cols) + 1), *rows])


def write_report(run_dir: Path, recipe, results: dict) -> None:
    cfg = recipe.data
    test = results["test"]
    keys = next(iter(test.values())).keys()
    if "nats_per_base" in keys:
        cols = ["bits_per_base", "nats_per_base"]
    elif "auroc" in keys:
        cols = ["auroc", "auprc", "mcc", "accuracy", "f1"]
    else:
        cols = ["accuracy", "macro_f1", "mcc", "auroc_macro"]
    tail = domain_run.report_tail(run_dir, results, results.get("training") or results.get("lm_training"),
                                  "No training in this run (pretrained model scored as is).", "Curves")
    text = f"""# {recipe.name}

Recipe: `{recipe.source}` · task `{cfg.task}` · base model: `{domain_run.base_model_text(recipe, results)}`

Windows: {windows_text(cfg, results)}
(`data.window`; the baselines see the same windows); RC augmentation in training: {cfg.rc_augment};
RC-averaged inference: {cfg.rc_average}. Examples per split: {results['sizes']}.{shared.ensemble_text(results, 'models')}
{notes_text(results)}
## Test set (95 % bootstrap intervals, {cfg.n_boot} resamples)

{metrics_table(test, cols)}
{more_splits_text(results, cols, cfg.n_boot)}
{tail}"""
    atomic_write_text(run_dir / "report.md", text)


def notes_text(results: dict) -> str:
    """The run's notes (e.g. the recipe's shape keys a pretrained model did not use), one per line."""
    notes = results.get("notes") or []
    return "\nNotes:\n" + "".join(f"- {n}\n" for n in notes) if notes else ""


def more_splits_text(results: dict, cols: list[str], n_boot: int) -> str:
    more = results.get("more_splits")
    if not more:
        return ""
    by = "; ".join(f"{split} ({results['sizes'].get(split, '?')} SNVs): " +
                   ", ".join(f"{name.split(' (')[0]} AUROC {m['auroc']:.3f}" for name, m in models.items())
                   for split, models in more["by_split"].items())
    return f"""
## Zero-shot scores on {' + '.join(more['splits'])} ({more['n']} SNVs, {more['n_positive']} deleterious; \
{n_boot} resamples)

{metrics_table(more['pooled'], cols)}

By split: {by}. {more['note']}.
"""


def windows_text(cfg, results: dict) -> str:
    long = results.get("long_windows")
    if long:
        return (f"{cfg.window:,} bp read from `{long['genome']}` around each demo window's centre; "
                f"{long['dropped_train_overlap']} of {long['train_windows_before']} training windows dropped "
                f"because at this length they overlap a validation or test window; "
                f"{long['val_overlapping_test']} validation windows overlap a test window (kept); "
                f"{long['padded_windows']} windows padded with N past a contig end")
    return f"cropped to the central {cfg.window} bp" if cfg.window else "full length"
