"""The VEP recipes (``genomics/vep_lora``, ``genomics/vep_zeroshot``) on a user's VCF and reference genome.

``data.path`` names a VCF (``.vcf`` / ``.vcf.gz``; a folder or glob of them), ``data.genome`` the reference
FASTA its coordinates refer to. Records are read and normalised against the genome by
``domains.genomics.vcf.read_vcf`` (multi-allelic records split; REF mismatches fixed when the fix is
certain, else dropped; duplicates dropped; every case counted). Labels, binary, come from one of:

- ``data.label_info=<KEY>``: an INFO field (``KEY=1``);
- ``data.labels_path``: a side table joined on the VCF ID column (``data.id_column``, default ``id``), or,
  when the table has ``chrom``, ``pos``, ``ref`` and ``alt`` columns, on those (alleles as in the VCF;
  'chr20' and '20' are one contig);
- neither: no labels. Only ``vep_zeroshot`` can run then: every SNV is scored (-LLR of alt vs ref under the
  pretrained DNA LM, and an order-``markov_order`` Markov LM fit on the variants' reference windows),
  written to ``predictions_test.csv``; no metric is computed.

Windows: ``data.window`` bp (default 1,001) centred on the variant, read from the genome (N past a contig
end); the models score SNVs (other kinds are counted and left out). With labels the variants are split
like any table (``data.split_column``, ``data.group_column`` e.g. chrom, ``data.cv_folds``, ...).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

from mambatune.core.atomic import atomic_write_text
from mambatune.domains.genomics import DNATokenizer, Genome, GenomeError, read_vcf
from mambatune.domains.genomics.baselines import baseline_scores, tuned_baseline
from mambatune.domains.genomics.metrics import binary_metrics, plot_roc_pr
from mambatune.domains.genomics.user_data import label_space
from mambatune.domains.genomics.user_files import VCF_SUFFIXES, attach_labels, files_of
from mambatune.domains.genomics.vcf import variant_windows
from mambatune.domains.genomics.vocab import checkpoint_tokenizer
from mambatune.domains.genomics.vep import (
    MarkovLM, VariantPairDataset, collate_pairs, fit_embedding_classifier, lm_log_likelihood_ratio, pair_features,
    variant_pairs,
)
from mambatune.core.training.distributed import pick_device
from mambatune.domains.tables import FILE, ROW, TableError, read_table

from .. import domain_run
from .. import ensemble_runs as shared
from ..data_source import split_rows
from .members import member_probs, train_members
from .models import (
    base_config, binary_eval_metrics, language_model, pair_classifier, pair_probs, pretrained_settings,
    record_model, scratch_train_config, training_summary,
)
from .report import metrics_table
from .user_data import fingerprint_rows

FLANK = 500  # variant windows are read as 1,001 bp, then cropped to data.window


def read_user_variants(cfg, path: str | None = None) -> tuple[pl.DataFrame, dict]:
    """The SNVs of the VCF(s) at ``path`` (default ``data.path``) with their windows (``ref_win``, ``alt_win``)
    and labels (``label``, when there are labels), and the counts of what reading, normalising and
    filtering did."""
    path = path or cfg.path
    where = f"data.path={path}" if path == cfg.path else f"data.test_path={path}"
    if not cfg.genome:
        raise TableError(f"{where}: variants are read against a reference genome: set data.genome=<FASTA, plain or "
                         "bgzip> (the assembly the VCF's positions refer to)")
    try:
        genome = Genome(cfg.genome)
    except GenomeError as err:
        raise TableError(f"data.genome: {err}") from None
    counts: Counter = Counter()
    frames = []
    for f in files_of(path, VCF_SUFFIXES, "VCF file"):
        df, rep = read_vcf(f, genome=genome, label_info_key=cfg.label_info, on_invalid=cfg.on_invalid)
        counts.update(rep.counts)
        frames.append(df.with_columns(pl.lit(f.name).alias(FILE),
                                      pl.Series(ROW, range(1, df.height + 1), dtype=pl.Int64)))
    df = pl.concat(frames, how="diagonal_relaxed")
    if cfg.labels_path:
        df, notes = side_labels(df, cfg, where)
    else:
        notes = []
    snv = df.filter(pl.col("kind") == "snv")
    counts["left_out_not_snv"] = df.height - snv.height
    if snv.height == 0:
        raise TableError(f"{where}: no SNV left to score ({dict(counts)}); the VEP recipes score single-base "
                         "variants")
    wide = variant_windows(snv, genome, flank=FLANK)
    genome.close()
    ref, alt = variant_pairs(wide["ref_seq"].to_list(), wide["ref"].to_list(), wide["alt"].to_list(), cfg.window)
    counts["windows_padded_with_n_past_contig_end"] = int((wide["padded"] > 0).sum())
    out = snv.with_columns(pl.Series("ref_win", ref), pl.Series("alt_win", alt))
    return out, {"counts": dict(sorted(counts.items())), "notes": notes}


def side_labels(df: pl.DataFrame, cfg, where: str) -> tuple[pl.DataFrame, list[str]]:
    """Labels from ``data.labels_path``, joined on chrom/pos/ref/alt when the table has them, else on the id."""
    side = read_table(cfg.labels_path, encoding=cfg.encoding)
    if all(c in side.columns for c in ("chrom", "pos", "ref", "alt")):
        def key(frame):
            return (frame["chrom"].cast(pl.String).str.strip_chars().str.replace("^chr", "") + ":"
                    + frame["pos"].cast(pl.String).str.strip_chars() + ":"
                    + frame["ref"].cast(pl.String).str.to_uppercase() + ":" + frame["alt"].cast(pl.String).str.to_uppercase())
        side = side.with_columns(key(side).alias("_variant"))
        joined, notes = attach_labels(df.with_columns(key(df).alias("_variant")), side, key="_variant",
                                      column=cfg.label_column, where=where)
        return joined.drop("_variant"), notes
    return attach_labels(df, side, key=cfg.id_column or "id", column=cfg.label_column, where=where)


def has_labels(cfg, df: pl.DataFrame) -> bool:
    return bool(cfg.label_info or cfg.labels_path) and cfg.label_column is not None and \
        (cfg.label_column in df.columns or "label" in df.columns)


def label_column(cfg) -> str:
    return "label" if cfg.label_info else cfg.label_column


# -- the task ------------------------------------------------------------------------------------

def run_user_variants(recipe, run_dir: Path, pretrained: str | None) -> dict | None:
    cfg = recipe.data
    if cfg.task not in ("vep", "vep_zeroshot"):
        raise ValueError(f"data.path={cfg.path} is a VCF: variants go to the VEP recipes (genomics/vep_lora, "
                         f"genomics/vep_zeroshot), not a {cfg.task} recipe")
    df, info = read_user_variants(cfg)
    tok = checkpoint_tokenizer(pretrained, cfg.k) if pretrained else DNATokenizer(cfg.k)
    if not has_labels(cfg, df):
        if cfg.task != "vep_zeroshot":
            raise TableError(f"data.path={cfg.path}: the variants have no labels; a supervised VEP run needs them "
                             "(data.label_info=<INFO key> or data.labels_path=<table>), or run genomics/vep_zeroshot "
                             "to score them without labels")
        return zero_shot_unlabelled(recipe, run_dir, pretrained, tok, df, info)
    parts, data, splits = labelled_parts(cfg, df, info)
    if domain_run.is_main_process():
        splits.write(run_dir)
    data["notes"] += pretrained_settings(recipe, pretrained)[1]
    if cfg.task == "vep_zeroshot":
        scores = zero_shot_scores(recipe, run_dir, pretrained, tok, parts["test"], parts["train"]["ref"])
        result, summary, extra = None, "", {}
    else:
        scores, result, summary, extra = supervised_scores(recipe, run_dir, pretrained, tok, parts)
        if scores is None:
            return None
    if recipe.eval.baselines:
        domain_run.announce_baselines(["k-mer logistic regression (ref window, k by inner CV)"])
        model, chosen, _ = tuned_baseline("kmer", "binary", parts["train"]["ref"], parts["train"]["labels"],
                                          ks=tuple(cfg.kmer_choices), seed=cfg.seed)
        scores["k-mer logistic regression (supervised, ref window, k by inner CV)"] = \
            baseline_scores(model, "binary", parts["test"]["ref"])[:, 1]
        data["notes"].append(f"k-mer baseline: k={chosen['k']}, C={chosen['C']:g} (inner CV on the training split)")
    y = np.asarray(parts["test"]["labels"])
    metrics = {k: binary_metrics(y, s, threshold=0.0 if "LLR" in k else 0.5, n_boot=cfg.n_boot, seed=cfg.seed)
               for k, s in scores.items()}
    members = {m["name"] for m in (extra.get("ensemble") or {}).get("members", [])}
    plot_roc_pr(y, {k: s for k, s in scores.items() if k not in members}, run_dir / "plots", title=recipe.name)
    write_predictions(run_dir / "predictions_test.csv", parts["test"]["frame"], scores, data["labels"]["classes"], y)
    return {"task": cfg.task, "data": data, "test": metrics, "sizes": data["sizes"],
            "training": training_summary(result), "summary": summary, **extra}


def labelled_parts(cfg, df: pl.DataFrame, info: dict) -> tuple[dict, dict, object]:
    """(parts, data record, Splits) of labelled variants ``df`` (+ ``data.test_path``'s): per split the ref
    and alt windows, the labels (0 / 1) and the rows; the record results.json keeps of the data, with a
    fingerprint of each split (``mambatune ensemble`` checks that runs read the same variants)."""
    column = label_column(cfg)
    test_df = None
    if cfg.test_path:
        test_df, test_info = read_user_variants(cfg, cfg.test_path)
        info["counts"] = {k: info["counts"].get(k, 0) + test_info["counts"].get(k, 0)
                          for k in sorted(set(info["counts"]) | set(test_info["counts"]))}
    space = label_space([df, test_df], column, kind="binary", positive=cfg.positive_label,
                        where=f"data.path={cfg.path}")
    splits = split_rows(df, cfg, label_column=column, test_df=test_df, where=f"data.path={cfg.path}")
    parts = {s: {"ref": f["ref_win"].to_list(), "alt": f["alt_win"].to_list(),
                 "labels": space.encode(f, column, cfg.label_separator, "data.path").values.tolist(), "frame": f}
             for s, f in splits.frames.items()}
    fingerprint = {s: fingerprint_rows(zip(p["frame"]["chrom"].cast(pl.String).to_list(), p["frame"]["pos"].to_list(),
                                           p["ref"], p["alt"], p["labels"])) for s, p in parts.items()}
    data = {"format": "vcf", "sizes": {s: len(p["labels"]) for s, p in parts.items()}, "split": splits.how,
            "fingerprint": fingerprint, "labels": {"kind": "binary", "classes": space.classes, "how": space.how},
            "variants": info["counts"], "notes": splits.notes + space.notes + info["notes"]}
    return parts, data, splits


def zero_shot_scores(recipe, run_dir: Path, pretrained: str | None, tok, part: dict, markov_corpus: list[str]) -> dict:
    """-LLR of each variant under the pretrained LM (recorded in config.yaml as built) and under a Markov LM fit
    on ``markov_corpus``."""
    cfg = recipe.data
    if not pretrained:
        raise ValueError("zero-shot scoring of a user's VCF needs a pretrained DNA LM: set model.pretrained (e.g. "
                         "default or dna-mamba-1m)")
    lm = language_model(recipe, tok, pretrained).to(pick_device(recipe.train.device))
    record_model(recipe, run_dir, lm, pretrained)
    out = {"pretrained LM (-LLR)": -lm_log_likelihood_ratio(lm, part["ref"], part["alt"], tok,
                                                             both_strands=cfg.rc_average)}
    if recipe.eval.baselines:
        markov = MarkovLM(cfg.markov_order).fit(markov_corpus)
        out[f"order-{cfg.markov_order} Markov LM (-LLR)"] = -markov.log_likelihood_ratio(part["ref"], part["alt"])
    return out


def supervised_scores(recipe, run_dir: Path, pretrained: str | None, tok, parts: dict):
    """(test scores by model, TrainResult, summary, ensemble records): the pair classifier fine-tuned
    (vep_method=finetune; or its ``data.ensemble`` members, whose mean comes first, see
    ``members.member_probs``) with its scratch twin, or logistic regression on frozen LM features
    (embedding). None on other ranks."""
    cfg = recipe.data
    if cfg.vep_method == "embedding":
        lm = language_model(recipe, tok, pretrained) if pretrained else None
        if lm is None:
            raise ValueError("vep_method=embedding reads a pretrained LM's features: set model.pretrained")
        record_model(recipe, run_dir, lm, pretrained)
        feats = {s: pair_features(lm.backbone, parts[s]["ref"], parts[s]["alt"], tok, radius=cfg.vep_radius,
                                  rc_average=cfg.rc_average) for s in ("train", "test")}
        clf = fit_embedding_classifier(feats["train"], parts["train"]["labels"], seed=cfg.seed)
        return {"pretrained LM embeddings + logistic regression": clf.predict_proba(feats["test"])[:, 1]}, None, "", {}
    data = {s: VariantPairDataset(p["ref"], p["alt"], p["labels"], tok, rc_augment=cfg.rc_augment and s == "train")
            for s, p in parts.items()}
    config = base_config(recipe, tok, pretrained)
    trained = train_members(recipe, run_dir, pretrained, lambda r, p: pair_classifier(r, config, p), data,
                            collate_pairs, binary_eval_metrics)
    scratch = None
    if pretrained and cfg.scratch_baseline:
        scratch, _, _ = domain_run.train_model(pair_classifier(recipe, config, None),
                                               scratch_train_config(recipe, run_dir, "scratch"), data["train"],
                                               data["val"], collate_pairs, binary_eval_metrics)
    if not domain_run.is_main_process():
        return None, None, "", {}
    probs, extra = member_probs(recipe, pretrained, trained, lambda m: pair_probs(m, data["test"], cfg.rc_average))
    scores = {name: p[:, 1] for name, p in probs.items()}
    if scratch is not None:
        scores["same model from scratch (full)"] = pair_probs(scratch, data["test"], cfg.rc_average)[:, 1]
    return scores, trained[0][1], trained[0][2], extra


def zero_shot_unlabelled(recipe, run_dir: Path, pretrained: str | None, tok, df: pl.DataFrame, info: dict) -> dict:
    """Scores every SNV of an unlabelled VCF; results hold the counts and score summaries, no metrics."""
    if not domain_run.is_main_process():
        return None
    part = {"ref": df["ref_win"].to_list(), "alt": df["alt_win"].to_list()}
    scores = zero_shot_scores(recipe, run_dir, pretrained, tok, part, part["ref"])
    write_predictions(run_dir / "predictions_test.csv", df, scores, None, None)
    summary = {name: {"n": int(len(s)), "mean": float(np.mean(s)), "sd": float(np.std(s)),
                      "min": float(np.min(s)), "max": float(np.max(s))} for name, s in scores.items()}
    notes = info["notes"] + ["no labels (no data.label_info or data.labels_path): every SNV scored, no metric; the "
                             "Markov LM is fit on the scored variants' reference windows (no labels are read)"] + \
        pretrained_settings(recipe, pretrained)[1]
    return {"task": recipe.data.task, "data": {"format": "vcf", "sizes": {"scored": df.height}, "split": "none: all "
            "variants scored", "labels": None, "variants": info["counts"], "notes": notes},
            "test": summary, "sizes": {"scored": df.height}, "training": None, "summary": ""}


def write_predictions(path: Path, frame: pl.DataFrame, scores: dict, classes: list[str] | None, y) -> None:
    """``predictions_test.csv``: id (the VCF ID, else file:row), chrom, pos, ref, alt, the label (when known)
    and each model's score (probability of the positive class, or -LLR for zero-shot models)."""
    ids = [v if v not in (None, ".") else f"{f}:{r}" for v, f, r in
           zip(frame["id"].to_list(), frame[FILE].to_list(), frame[ROW].to_list())]
    cols = {"id": ids, "chrom": frame["chrom"], "pos": frame["pos"], "ref": frame["ref"], "alt": frame["alt"]}
    if y is not None:
        cols["label"] = [classes[int(v)] for v in y]
    for name, s in scores.items():
        cols[f"score: {name}"] = np.asarray(s, dtype=float)
    atomic_write_text(path, pl.DataFrame(cols).write_csv())


def write_report(run_dir: Path, recipe, results: dict) -> None:
    cfg, d = recipe.data, results["data"]
    labelled = d["labels"] is not None
    table = metrics_table(results["test"], ["auroc", "auprc", "mcc", "accuracy", "f1"] if labelled else
                                 ["n", "mean", "sd", "min", "max"])
    notes = "\n".join(f"- {n}" for n in d["notes"]) or "- none"
    heading = (f"Test set (95 % bootstrap intervals, {cfg.n_boot} resamples)" if labelled else
               "Scores (no labels: no metric)")
    tail = domain_run.report_tail(run_dir, results, results.get("training"),
                                  "No training in this run (pretrained model scored as is).", "Curves")
    text = f"""# {recipe.name}

Recipe: `{recipe.source}` · task `{cfg.task}` · variants: `{cfg.path}` on `{cfg.genome}` · base model:
`{domain_run.base_model_text(recipe, results)}`

Labels: {d['labels'] or 'none'}. Split: {d['split']}; variants per split: {d['sizes']}.
Windows: {cfg.window or 2 * FLANK + 1} bp centred on each SNV. Reading and normalising: {d['variants']}.{shared.ensemble_text(results, 'models')}

Notes:
{notes}

## {heading}

{table}

Scores per variant: `predictions_test.csv`.

{tail}"""
    atomic_write_text(run_dir / "report.md", text)

