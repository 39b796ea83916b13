"""``mambatune eval / predict / export`` on a genomics run made on the user's data (``data.path``).

The run folder holds what is needed: ``config.yaml`` (the data keys, so the splits are remade exactly),
``results.json`` (the label kind and classes, a regression target's scale) and the model (``model/``, or
``adapter/`` on ``base/`` or on the pretrained base), each with its ``tokenizer.json``.

- ``eval``: the user's files are read again and split as in the run; the run's model scores the split.
- ``predict``: a FASTA, a table with the run's sequence column (CSV / TSV / parquet / JSON lines), or
  regions with ``--genome``; each record gets the predicted label and every class's probability (a
  regression run: the prediction). A record that cannot be scored (empty, not DNA, longer than
  ``data.max_length`` when the run refused long sequences) keeps its row with a note.
  A VCF run's variants go through the demo's variant path (``genomics_verbs``), which reads VCFs already.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

from mambatune.core import peft
from mambatune.core.checkpoints import load_pretrained
from mambatune.domains.genomics import DNATokenizer
from mambatune.domains.genomics.sequence_data import DNAWindowDataset, predict_logits
from mambatune.domains.genomics.user_data import clean_sequences
from mambatune.domains.genomics.user_files import file_format, read_fasta_table, read_region_table, region_sequences
from mambatune.domains.tables import FILE, ROW, TableError, read_table

from . import domain_run
from . import genomics as g
from . import genomics_user_tasks as tasks


def label_info(results: dict) -> tuple[str, list[str], tuple[float, float]]:
    labels = results["data"]["labels"]
    scale = results.get("target_scale") or {"mean": 0.0, "sd": 1.0}
    return labels["kind"], labels["classes"], (scale["mean"], scale["sd"])


def load_model(run_dir: Path, recipe, results: dict):
    """The run's trained model: ``model/``, or ``adapter/`` on ``base/`` (a new model) or on the pretrained base."""
    if (run_dir / "model").is_dir():
        return load_pretrained(run_dir / "model")
    if not (run_dir / "adapter").is_dir():
        raise FileNotFoundError(f"{run_dir} has neither model/ nor adapter/: the run did not save a model")
    if (run_dir / "base").is_dir():
        model = load_pretrained(run_dir / "base")
    else:
        kind, classes, _ = label_info(results)
        pretrained = results.get("base_model")
        tok = DNATokenizer(recipe.data.k)
        model = tasks.user_model(recipe, g.base_config(recipe, tok, pretrained),
                                 tasks.head_spec(recipe, kind, len(classes)), pretrained)
    peft.load_adapter(model, run_dir / "adapter")
    return model


def outputs(run_dir: Path, recipe, results: dict, sequences: list[str]) -> np.ndarray:
    kind, classes, scale = label_info(results)
    if not sequences:
        return np.zeros((0,) if kind == "regression" else (0, len(classes)))
    model = load_model(run_dir, recipe, results).to(g.pick_device(recipe.train.device))
    data = DNAWindowDataset(sequences, tokenizer=DNATokenizer(recipe.data.k))
    batch = recipe.train.eval_batch_size or recipe.train.batch_size
    return tasks.to_outputs(predict_logits(model, data, batch, recipe.data.rc_average), kind, scale)


def evaluate(run_dir: Path, recipe, results: dict, split: str) -> dict:
    """The run's model on ``split`` of the user's data, split again exactly as in the run."""
    cfg = recipe.data
    name = next(iter(results["test"]))
    if results["data"].get("format") == "vcf":
        from . import genomics_user_vep as vep
        from . import genomics_verbs as verbs
        from mambatune.domains.genomics.metrics import binary_metrics
        from mambatune.pipelines.data_source import split_rows

        if results["data"]["labels"] is None:
            raise ValueError(f"{run_dir} scored an unlabelled VCF: there is no label to evaluate against")
        df, _ = vep.read_user_variants(cfg)
        test_df = vep.read_user_variants(cfg, cfg.test_path)[0] if cfg.test_path else None
        column = vep.label_column(cfg)
        classes = results["data"]["labels"]["classes"]
        part = split_rows(df, cfg, label_column=column, test_df=test_df, where=f"data.path={cfg.path}").frames[split]
        y = np.asarray([classes.index(str(v).strip()) for v in part[column].cast(pl.String).to_list()])
        scores = verbs.variant_scores(run_dir, recipe, results, part["ref_win"].to_list(), part["alt_win"].to_list())
        s = scores.get("p_deleterious", scores.get("score"))
        metrics = binary_metrics(y, s, threshold=0.5 if "p_deleterious" in scores else 0.0, n_boot=cfg.n_boot,
                                 seed=cfg.seed)
        return {"task": cfg.task, "split": split, "model": name, "examples": int(len(y)), "metrics": metrics}
    from .genomics_user_data import load_user_data

    data = load_user_data(cfg)
    kind = results["data"]["labels"]["kind"]
    out = outputs(run_dir, recipe, results, data.sequences[split])
    metrics = tasks.score(kind, data.labels[split].values, out, cfg)
    return {"task": cfg.task, "split": split, "model": name, "examples": len(data.sequences[split]),
            "metrics": metrics}


def read_inputs(source: str, recipe, genome: str | None = None):
    """The records of ``source`` as ``genomics_verbs.GenomicsInputs`` (kind ``sequences``), cleaned as the
    run cleaned its sequences; a record that cannot be scored keeps its row, with a note."""
    from .genomics_verbs import GenomicsInputs

    cfg = recipe.data
    fmt = file_format(source, "auto")
    if fmt == "vcf":
        from . import genomics_verbs as verbs
        return verbs.read_inputs(source, recipe, genome=genome)
    if not Path(source).exists():
        raise FileNotFoundError(f"input {source} not found; predict reads a FASTA, a table with column "
                                f"{cfg.sequence_column!r}, or regions (BED / narrowPeak) with --genome")
    if fmt == "fasta":
        df, column = read_fasta_table(source, header_label="none", encoding=cfg.encoding), "sequence"
    elif fmt == "regions" or (fmt == "table" and cfg.format == "regions"):
        if not genome:
            raise ValueError(f"{source} gives coordinates: pass --genome <reference FASTA> to read its sequences")
        window = None if cfg.flank is not None else cfg.window
        df, _ = region_sequences(read_region_table(source, cfg.encoding), genome, window=window, flank=cfg.flank,
                                 on_invalid="skip", where=source)
        column = "sequence"
    else:
        df, column = read_table(source, encoding=cfg.encoding), cfg.sequence_column
        if column not in df.columns:
            raise TableError(f"{source}: no column {column!r} (the run's data.sequence_column); its columns are "
                             f"{', '.join(c for c in df.columns if c not in (FILE, ROW))}")
    key = next((c for c in (cfg.id_column, "id", "name") if c and c in df.columns), None)  # a FASTA id, a BED name
    ids = [str(v) for v in df[key].to_list()] if key else [f"{f}:{r}" for f, r in zip(df[FILE].to_list(),
                                                                                   df[ROW].to_list())]
    out = GenomicsInputs("sequences", [])
    for i in range(df.height):
        out.rows.append({"id": ids[i]})
        try:
            (seq,), counts = clean_sequences(df[i:i + 1], column, where=source, max_length=cfg.max_length,
                                             too_long=cfg.too_long)
        except TableError as err:
            out.sequences.append(None)
            out.notes.append(f"not scored: {err}")
            out.counts["not_scored"] += 1
            continue
        out.rows[-1]["length"] = len(seq)
        out.sequences.append(seq)
        out.notes.append(changed_note(counts))
        out.counts.update({k: 1 for k, v in (("non_acgtn_mapped_to_n", counts.with_replaced),
                                             ("cropped", counts.cropped)) if v})
    out.counts["records"] = df.height
    out.counts["scored"] = sum(s is not None for s in out.sequences)
    return out


def changed_note(counts) -> str:
    parts = []
    if counts.replaced:
        parts.append(f"{sum(counts.replaced.values())} non-ACGTN character(s) read as N")
    if counts.cropped:
        parts.append("cropped to its central data.max_length bases")
    return "; ".join(parts)


def predict(run_dir: Path, recipe, results: dict, inputs) -> list[dict]:
    """One row per record: ``predicted`` and ``p_<class>`` (regression: ``prediction``), and a ``note``."""
    kind, classes, _ = label_info(results)
    rows = [dict(r) for r in inputs.rows]
    domain_run.report_skipped(f"predict {inputs.kind}", dict(Counter(inputs.counts)))
    ok = [i for i, s in enumerate(inputs.sequences) if s is not None]
    out = outputs(run_dir, recipe, results, [inputs.sequences[i] for i in ok])
    columns: dict[str, list] = {}
    if kind == "regression":
        columns["prediction"] = [round(float(v), 6) for v in out]
    else:
        picked = (out >= 0.5).astype(int) if kind == "multilabel" else out.argmax(1) if len(out) else []
        columns["predicted"] = tasks.label_text(np.asarray(picked), kind, classes, recipe.data.label_separator)
        for j, c in enumerate(classes):
            columns[f"p_{c}"] = [round(float(v), 6) for v in out[:, j]]
    for row, note in zip(rows, inputs.notes):
        row.update({k: "" for k in columns})
        row["note"] = note
    for j, i in enumerate(ok):
        for k, values in columns.items():
            rows[i][k] = values[j]
    return rows


def export(run_dir: Path, recipe, results: dict, out) -> Path:
    """The trained model as ``genomics_verbs.export`` writes it (LoRA merged), with the run's labels and
    tokenizer; a VCF run's pair classifier or LM goes through ``genomics_verbs``."""
    kind, classes, scale = label_info(results)
    meta = {"run_dir": str(run_dir), "recipe": recipe.name, "task": f"{kind} ({recipe.data.path})",
            "labels": classes, "tokenizer": f"DNATokenizer(k={recipe.data.k})", "rc_average": recipe.data.rc_average}
    if kind == "regression":
        meta["target_scale"] = {"mean": scale[0], "sd": scale[1]}
    domain_run.export_model(load_model(run_dir, recipe, results), out, meta)
    if (Path(out) / "model").is_dir():
        DNATokenizer(recipe.data.k).save(Path(out) / "model")
    return Path(out)
