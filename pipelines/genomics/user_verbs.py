"""``mambatune eval / predict / export`` on a genomics run made on the user's data (``data.path``).

The run folder holds what is needed: ``config.yaml`` (the data keys, so the splits are remade exactly),
``results.json`` (the label kind and classes, a regression target's scale) and the model (``model/``, or
``adapter/`` on ``base/`` or on the pretrained base), each with its ``tokenizer.json``; an ensemble
(``data.ensemble`` > 1, or made by ``mambatune ensemble``) holds one such model per ``member-<k>/``, and every
verb uses the mean of the members' outputs (class probabilities, or a regressor's predictions), as the run
scored them. ``export`` writes each member to ``out/member-<k>/`` and ``out/export.json`` (as the demo tasks'
ensembles do).

- ``eval``: the user's files are read again and split as in the run; the run's model scores the split.
- ``predict``: the records read by ``genomics.inputs`` (a FASTA, a table with the run's sequence column, or
  regions with ``--genome``, cleaned as the run cleaned its sequences); each record gets the predicted label
  and every class's probability (a regression run: the prediction), a ``flag`` when it is far shorter than
  the training sequences, and a ``note``. A record that cannot be scored (empty, not DNA, longer than
  ``data.max_length`` when the run refused long sequences, a region off its contig) keeps its row with a note.
  A VCF run's variants go through the demo's variant path (``genomics.verbs``).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

from mambatune.core.training.distributed import pick_device
from mambatune.domains.genomics import DNATokenizer
from mambatune.domains.genomics.metrics import binary_metrics
from mambatune.domains.genomics.sequence_data import DNAWindowDataset, predict_logits

from .. import domain_run
from ..data_source import split_rows
from .models import base_config
from .members import combine_text
from .scoring import (classifiers, export_ensemble, load_lm, load_trained, member_dirs, short_flags,
                      variant_scores)
from .user_data import load_user_data
from .user_tasks import OUTPUTS, head_spec, label_text, score, to_outputs, user_model
from .user_vep import label_column, read_user_variants


def label_info(results: dict) -> tuple[str, list[str], tuple[float, float]]:
    labels = results["data"]["labels"]
    scale = results.get("target_scale") or {"mean": 0.0, "sd": 1.0}
    return labels["kind"], labels["classes"], (scale["mean"], scale["sd"])


def load_model(run_dir: Path, recipe, results: dict):
    """The run's trained model (see :func:`scoring.load_trained`)."""
    def pretrained_base():
        kind, classes, _ = label_info(results)
        pretrained = results.get("base_model")
        return user_model(recipe, base_config(recipe, DNATokenizer(recipe.data.k), pretrained),
                          head_spec(recipe, kind, len(classes)), pretrained)

    return load_trained(run_dir, pretrained_base)


def models(run_dir: Path, recipe, results: dict) -> list[tuple]:
    """(folder, recipe, results) of each model to load: the run itself, or each member of an ensemble (its
    own model section and base model over the run's results)."""
    return [(folder, member, results | extra) for folder, member, extra in classifiers(run_dir, recipe, results)]


def outputs(run_dir: Path, recipe, results: dict, sequences: list[str]) -> np.ndarray:
    """The run's outputs for ``sequences``: class probabilities (n, classes) or predictions (n,); of an
    ensemble, the mean of its members' (loaded one at a time)."""
    return np.mean([model_outputs(*m, sequences) for m in models(run_dir, recipe, results)], axis=0)


def model_outputs(folder: Path, recipe, results: dict, sequences: list[str]) -> np.ndarray:
    """The outputs of the one model saved in ``folder`` (a run's top or a member) for ``sequences``."""
    kind, classes, scale = label_info(results)
    if not sequences:
        return np.zeros((0,) if kind == "regression" else (0, len(classes)))
    model = load_model(folder, recipe, results).to(pick_device(recipe.train.device))
    data = DNAWindowDataset(sequences, tokenizer=DNATokenizer(recipe.data.k))
    batch = recipe.train.eval_batch_size or recipe.train.batch_size
    return to_outputs(predict_logits(model, data, batch, recipe.data.rc_average), kind, scale)


def ensemble_size(run_dir: Path, recipe) -> dict:
    """``{"members": K}`` for an ensemble's evaluation (as the demo runs' ``eval`` says it), else {}."""
    members = len(member_dirs(run_dir, recipe))
    return {"members": members} if members else {}


def evaluate(run_dir: Path, recipe, results: dict, split: str) -> dict:
    """The run's model on ``split`` of the user's data, split again exactly as in the run."""
    cfg = recipe.data
    name = next(iter(results["test"]))
    if results["data"].get("format") == "vcf":
        if results["data"]["labels"] is None:
            raise ValueError(f"{run_dir} scored an unlabelled VCF: there is no label to evaluate against")
        df, _ = read_user_variants(cfg)
        test_df = read_user_variants(cfg, cfg.test_path)[0] if cfg.test_path else None
        column = label_column(cfg)
        classes = results["data"]["labels"]["classes"]
        part = split_rows(df, cfg, label_column=column, test_df=test_df, where=f"data.path={cfg.path}").frames[split]
        lm = None
        if cfg.task == "vep_zeroshot":
            lm = load_lm(run_dir, recipe, results)
            if lm.config.bidirectional:  # as in the run: a masked LM's score is defined for SNVs only
                part = part.filter(pl.col("kind") == "snv")
        y = np.asarray([classes.index(str(v).strip()) for v in part[column].cast(pl.String).to_list()])
        scores = variant_scores(run_dir, recipe, results, part["ref_win"].to_list(), part["alt_win"].to_list(), lm=lm)
        s = scores.get("p_deleterious", scores.get("score"))
        metrics = binary_metrics(y, s, threshold=0.5 if "p_deleterious" in scores else 0.0, n_boot=cfg.n_boot,
                                 seed=cfg.seed)
        return {"task": cfg.task, "split": split, "model": name, "examples": int(len(y)), "metrics": metrics} | \
            ensemble_size(run_dir, recipe)
    data = load_user_data(cfg)
    kind = results["data"]["labels"]["kind"]
    out = outputs(run_dir, recipe, results, data.sequences[split])
    metrics = score(kind, data.labels[split].values, out, cfg)
    return {"task": cfg.task, "split": split, "model": name, "examples": len(data.sequences[split]),
            "metrics": metrics} | ensemble_size(run_dir, recipe)


def predict(run_dir: Path, recipe, results: dict, inputs) -> list[dict]:
    """One row per record: ``predicted`` and ``p_<class>`` (regression: ``prediction``), a ``flag`` (an input far
    shorter than the training sequences) and a ``note``."""
    kind, classes, _ = label_info(results)
    rows = [dict(r) for r in inputs.rows]
    flags = short_flags(inputs.sequences, recipe, results)
    inputs.counts["flagged_short"] = sum(bool(f) for f in flags)
    domain_run.report_skipped(f"predict {inputs.kind}", dict(Counter(inputs.counts)))
    ok = [i for i, s in enumerate(inputs.sequences) if s is not None]
    out = outputs(run_dir, recipe, results, [inputs.sequences[i] for i in ok])
    columns: dict[str, list] = {}
    if kind == "regression":
        columns["prediction"] = [round(float(v), 6) for v in out]
    else:
        picked = (out >= 0.5).astype(int) if kind == "multilabel" else out.argmax(1) if len(out) else []
        columns["predicted"] = label_text(np.asarray(picked), kind, classes, recipe.data.label_separator)
        for j, c in enumerate(classes):
            columns[f"p_{c}"] = [round(float(v), 6) for v in out[:, j]]
    for row, flag, note in zip(rows, flags, inputs.notes):
        row.update({k: "" for k in columns})
        row["flag"] = flag
        row["note"] = note
    for j, i in enumerate(ok):
        for k, values in columns.items():
            rows[i][k] = values[j]
    return rows


def export(run_dir: Path, recipe, results: dict, out) -> Path:
    """The trained model as ``genomics.verbs.export`` writes it (LoRA merged), with the run's labels and
    tokenizer; a VCF run's pair classifier or LM goes through ``genomics.verbs``."""
    kind, classes, scale = label_info(results)
    meta = {"run_dir": str(run_dir), "recipe": recipe.name, "task": f"{kind} ({recipe.data.path})",
            "labels": classes, "tokenizer": f"DNATokenizer(k={recipe.data.k})", "rc_average": recipe.data.rc_average}
    if kind == "regression":
        meta["target_scale"] = {"mean": scale[0], "sd": scale[1]}
    if member_dirs(run_dir, recipe):
        export_ensemble(run_dir, recipe, results, lambda f, m, res: load_model(f, m, results | res), Path(out),
                        meta, combine_text(recipe, OUTPUTS[kind]))
        return Path(out)
    domain_run.export_model(load_model(run_dir, recipe, results), out, meta)
    if (Path(out) / "model").is_dir():
        DNATokenizer(recipe.data.k).save(Path(out) / "model")
    return Path(out)
