"""report.md of a documents run: the test table (ours, then the same-run TF-IDF baselines; by length),
how long documents were handled, the split and every note on the data and the model."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mambatune.core.atomic import atomic_write_text

from .. import domain_run
from .. import ensemble_runs as shared


def fmt(value) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"


def classify_table(results: dict, long_bucket: str) -> str:
    """The test table; two-class tasks add AUROC and AUPRC (the second label positive)."""
    binary = any("auroc" in m for m in results["test"].values())
    rows = []
    for name, m in results["test"].items():
        long = m.get("by_length", {}).get(long_bucket, {})
        ranking = f" {fmt(m.get('auroc'))} | {fmt(m.get('auprc'))} |" if binary else ""
        rows.append(f"| {name} | {fmt(m['accuracy'])} | {fmt(m['micro_f1'])} | {fmt(m['macro_f1'])} |{ranking} "
                    f"{fmt(long.get('macro_f1'))} | {fmt(long.get('accuracy'))} | {long.get('n', 0)} |")
    extra, rule = (" AUROC | AUPRC |", "---|---|") if binary else ("", "")
    head = (f"| model | accuracy | micro-F1 | macro-F1 |{extra} macro-F1 {long_bucket} words | accuracy {long_bucket} "
            f"words | docs {long_bucket} |\n|---|---|---|---|{rule}---|---|---|")
    note = (f"\n\nAUROC / AUPRC: {results['labels'][1]!r} is the positive class." if binary else "")
    return head + "\n" + "\n".join(rows) + note


def write_report(run_dir: Path, recipe, results: dict) -> None:
    cfg = recipe.data
    tail = domain_run.report_tail(run_dir, results, results.get("training"))
    if results["task"] == "classify":
        long_bucket = f">={cfg.length_edges[-1]}"
        lh = results["length_handling"]
        handling = "; ".join(f"{s}: {v['n_truncated']} truncated ({v['n_tokens_dropped']:,} tokens dropped), "
                             f"{v['n_chunked']} chunked, {v['n_unseen_documents']} with unseen labels"
                             for s, v in lh.items())
        task = 'multi-label (BCE, per-class thresholds tuned on val)' if results['multi_label'] else 'single-label'
        sizes = f"{len(results['labels'])} labels · documents per split {results['sizes']}"
        body = f"""Task: {task} · {sizes}.{shared.ensemble_text(results, "classifiers")}

Length: max_length {cfg.max_length} {'bytes' if cfg.tokenizer == 'byte' else 'tokens'}, overflow `{cfg.overflow}`
({handling}). The TF-IDF baselines read the full texts.

## Test set

{classify_table(results, long_bucket)}

By-length macro-F1 averages over the classes present in that bucket; lengths in words."""
    else:
        rows = "\n".join(f"| {k} | " + " | ".join(f"{v:.3f}" for v in m.values()) + " |"
                         for k, m in results["test"].items())
        cols = list(next(iter(results["test"].values())))
        body = f"""Causal LM on the training split's texts only ({results['sizes']}); parameters
{results['parameters']:,}; model in `{results['model_dir']}`.

## Test windows

| model | {' | '.join(cols)} |
|---|{'---|' * len(cols)}
{rows}"""
    methods = "+".join(m.method for m in recipe.peft.methods) or "full"
    data = results.get("data") or {}
    notes = "".join(f"\n- {n}" for n in data.get("notes", []))
    where = " (rows per split in `splits.csv`)" if (run_dir / "splits.csv").is_file() else ""
    split = f"\nSplit: {data['split']}{where}.{notes}\n" if data.get("split") else ""
    unused = "".join(f"\n- {n}" for n in results.get("model_notes") or [])
    model_notes = f"\nModel: the pretrained model keeps its shape; config.yaml records it.{unused}\n" if unused else ""
    text = f"""# {recipe.name}

Recipe: `{recipe.source}` · task `{cfg.task}` · data {cfg.describe()} · base model:
`{domain_run.base_model_text(recipe, results)}` · method: {methods}
{split}{model_notes}
{body}

{tail}"""
    atomic_write_text(run_dir / "report.md", text)


def write_run_report(run_dir: Path, recipe, results: dict) -> None:
    """The report (see ``ensemble_runs.write_run_report``)."""
    shared.write_run_report(run_dir, recipe, results, write_report)
