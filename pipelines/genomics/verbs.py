"""``mambatune eval / predict / export`` on a finished genomics run (the Pipeline verbs).

The run's models are rebuilt from its folder by ``genomics.scoring`` (what each task leaves there is
listed in its docstring); ``predict``'s inputs are read by ``genomics.inputs`` (a FASTA, a table of
sequences, regions or a VCF with ``--genome``): every record is one output row, a record that cannot be
scored keeps its row with a ``note`` saying why, and an input far shorter than the sequences the model
was trained on gets a ``flag`` (``short: 24 bp, trained on 600 bp``). A run on the user's files
(``data.path``) goes through ``genomics.user_verbs``.

An ensemble run (``data.ensemble`` > 1, or made by ``mambatune ensemble``): ``eval`` and ``predict``
average the members' class probabilities, ``export`` writes each member to ``out/member-<k>/`` and an
``export.json`` that names the ensemble.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from mambatune.core.atomic import atomic_write_json
from mambatune.domains.genomics import DNATokenizer
from mambatune.domains.genomics.metrics import binary_metrics, multiclass_metrics
from mambatune.domains.genomics.sequence_data import DNAWindowDataset
from mambatune.domains.genomics.vcf import variant_kind

from .. import domain_run
from .data import lm_corpus, promoter_splits, variant_splits
from .inputs import GenomicsInputs
from .members import combine_text
from .models import lm_loss, load_embedding_classifier
from .scoring import (
    LM_TASKS, bits_per_base, class_names, device_of, export_ensemble, load_classifier, load_lm, load_pair_classifier,
    mean_probs, member_dirs, open_run, short_flags, variant_scores,
)
from .user_verbs import evaluate as evaluate_user_run, export as export_user_run, predict as predict_user_run


@domain_run.head_from_the_run()
def evaluate(run_dir, split: str | None = None) -> dict:
    """The run's model rescored on ``split`` with the run's metric functions (its own model only; the
    baselines are in results.json)."""
    run_dir, recipe, results = open_run(run_dir)
    split = domain_run.check_split(split, recipe)
    if recipe.data.path:  # a run on the user's files
        return evaluate_user_run(run_dir, recipe, results, split)
    cfg, tok = recipe.data, DNATokenizer()
    name = next(iter(results["test"]))
    if cfg.task == "promoter":
        x, y = promoter_splits(cfg)[split]
        probs = mean_probs(run_dir, recipe, results, x)  # one model, or the mean of an ensemble's members
        metrics = (binary_metrics(np.asarray(y), probs[:, 1], n_boot=cfg.n_boot, seed=cfg.seed)
                   if cfg.promoter_classes == "binary" else
                   multiclass_metrics(np.asarray(y), probs, n_boot=cfg.n_boot, seed=cfg.seed))
        n = len(y)
    elif cfg.task in ("vep", "vep_zeroshot"):
        v = variant_splits(cfg)[split]
        scores = variant_scores(run_dir, recipe, results, v["ref"], v["alt"])
        s = scores.get("p_deleterious", scores.get("score"))
        metrics = binary_metrics(np.asarray(v["labels"]), s, threshold=0.5 if "p_deleterious" in scores else 0.0,
                                 n_boot=cfg.n_boot, seed=cfg.seed)
        n = len(v["labels"])
    else:
        corpus = lm_corpus(cfg, split)
        nll = lm_loss(load_lm(run_dir, recipe, results).to(device_of(recipe)),
                        DNAWindowDataset(corpus, tokenizer=tok, lm=True))
        metrics = {"nats_per_base": nll, "bits_per_base": nll / np.log(2)}
        n = len(corpus)
    members = len(member_dirs(run_dir, recipe))
    return {"task": cfg.task, "split": split, "model": name, "examples": n, "metrics": metrics} | \
        ({"members": members} if members else {})


@domain_run.head_from_the_run()
def predict(run_dir, inputs: GenomicsInputs) -> list[dict]:
    """One row per input record: class probabilities (promoter), -LLR or P(deleterious) (variants), or
    bits per base (sequences under an LM run); ``note`` says why a record was not scored; sequences get a
    ``flag`` when far shorter than the model's training sequences (``scoring.short_flag``)."""
    run_dir, recipe, results = open_run(run_dir)
    cfg = recipe.data
    if cfg.path and inputs.kind == "sequences" and cfg.task == "promoter":  # a run on the user's sequences
        return predict_user_run(run_dir, recipe, results, inputs)
    rows = [dict(r) for r in inputs.rows]
    flags = short_flags(inputs.sequences, recipe, results) if inputs.kind == "sequences" else None
    if flags:
        inputs.counts["flagged_short"] = sum(bool(f) for f in flags)
    domain_run.report_skipped(f"predict {inputs.kind}", dict(inputs.counts))
    if inputs.kind == "variants":
        ok = [i for i, r in enumerate(inputs.refs) if r is not None]
        lm = load_lm(run_dir, recipe, results) if ok and cfg.task in LM_TASKS else None
        if lm is not None and lm.config.bidirectional:  # a masked LM's marginal is defined for SNVs only
            kept = [i for i in ok if variant_kind(rows[i]["ref"], rows[i]["alt"]) == "snv"]
            for i in set(ok) - set(kept):
                inputs.notes[i] = (f"{variant_kind(rows[i]['ref'], rows[i]['alt'])}: not scored (a masked LM "
                                   "scores SNVs only)")
            if len(kept) < len(ok):
                print(f"predict variants: {len(ok) - len(kept)} non-SNV variants not scored: the run's LM is "
                      "bidirectional (masked), whose score is defined for SNVs only", file=sys.stderr)
            ok = kept
        columns = variant_scores(run_dir, recipe, results, [inputs.refs[i] for i in ok],
                                 [inputs.alts[i] for i in ok], lm=lm) if ok else {}
    else:
        ok = [i for i, s in enumerate(inputs.sequences) if s is not None]
        seqs = [inputs.sequences[i] for i in ok]
        if cfg.task == "promoter":  # one model, or the mean of an ensemble's members
            probs = mean_probs(run_dir, recipe, results, seqs)
            names = class_names(recipe)
            columns = {f"p_{c}": probs[:, j] for j, c in enumerate(names)}
            columns["predicted"] = np.asarray([names[j] for j in probs.argmax(1)], dtype=object)
        elif cfg.task in LM_TASKS:
            model = load_lm(run_dir, recipe, results).to(device_of(recipe))
            columns = {"bits_per_base": bits_per_base(model, seqs)} if ok else {}
        else:
            raise ValueError("a vep run scores variants: give a VCF and --genome")
    for i, (row, note) in enumerate(zip(rows, inputs.notes)):
        row.update({k: "" for k in columns})
        if flags is not None:
            row["flag"] = flags[i]
        row["note"] = note
    for j, i in enumerate(ok):
        for k, values in columns.items():
            v = values[j]
            rows[i][k] = v if isinstance(v, str) else round(float(v), 6)
    return rows


@domain_run.head_from_the_run()
def export(run_dir, out) -> Path:
    """The run's trained model, LoRA merged: ``hf/`` (the backbone, Hugging Face Mamba format), ``head/``
    (a task head in our format), ``model/`` (a whole MambaForTask in our format) and ``export.json``.
    An ensemble exports each member that way to ``out/member-<k>/``, and ``out/export.json`` says it is an
    ensemble of K whose prediction is the mean of the members' class probabilities."""
    run_dir, recipe, results = open_run(run_dir)
    cfg = recipe.data
    if cfg.path and cfg.task == "promoter":  # a classifier / regressor of the user's sequences
        return export_user_run(run_dir, recipe, results, out)
    meta = {"run_dir": str(run_dir), "recipe": recipe.name, "task": cfg.task, "tokenizer": f"DNATokenizer(k={cfg.k})",
            "window": cfg.window, "rc_average": cfg.rc_average}
    if cfg.task == "promoter":
        load, meta["labels"] = load_classifier, class_names(recipe)
    elif cfg.task == "vep" and cfg.vep_method == "finetune":
        load = load_pair_classifier
        meta["head"] = {"kind": "variant_pair", "num_labels": 2, "radius": cfg.vep_radius,
                        "labels": ["neutral", "deleterious"]}
    else:
        load = load_lm
    members = member_dirs(run_dir, recipe)
    if members:
        export_ensemble(run_dir, recipe, results, load, Path(out), meta, combine_text(recipe))
        return Path(out)
    model = load(run_dir, recipe, results)
    manifest = domain_run.export_model(model, out, meta)
    if (Path(out) / "model").is_dir():
        DNATokenizer(cfg.k).save(Path(out) / "model")
    if cfg.task == "vep" and cfg.vep_method == "embedding":
        clf = load_embedding_classifier(run_dir, recipe, model)
        atomic_write_json(Path(out) / "embedding_classifier.json", clf.to_dict())
        manifest["written"].append("embedding_classifier.json")
        atomic_write_json(Path(out) / "export.json", manifest)
    return Path(out)
