"""The VEP recipes (``genomics/vep_lora``, ``genomics/vep_zeroshot``) on a user's VCF and reference genome.

``data.path`` names a VCF (``.vcf`` / ``.vcf.gz``; a folder or glob of them), ``data.genome`` the reference
FASTA its coordinates refer to. Records are read and normalised against the genome by
``domains.genomics.vcf.read_vcf`` (multi-allelic records split; REF mismatches fixed when the fix is
certain, else dropped; duplicates dropped; every case counted). Labels, binary, come from one of:

- ``data.label_info=<KEY>``: an INFO field (``KEY=1``);
- ``data.labels_path``: a side table joined on the VCF ID column (``data.id_column``, default ``id``), or,
  when the table has ``chrom``, ``pos``, ``ref`` and ``alt`` columns, on those (alleles as in the VCF;
  'chr20' and '20' are one contig);
- neither: no labels. Only ``vep_zeroshot`` can run then: every variant is scored (-LLR of alt vs ref under
  the pretrained DNA LM, and an order-``markov_order`` Markov LM fit on the variants' reference windows),
  written to ``predictions_test.csv``; no metric is computed.

Windows: ``data.window`` bp (default 1,001; at most 1,001) read from the genome (N past a contig end). An
SNV's are centred on it. ``vep_zeroshot`` scores indels, MNVs and complex variants too, on equal-length
haplotype windows (``vep.haplotype_windows``, as ``mambatune predict`` does): the same ``window // 2``
bases before the variant, then REF or ALT and the genome's next bases; a masked (bidirectional) LM scores
SNVs only (its marginal is defined for one base), the other kinds are counted and left out. The supervised
recipe (``vep_lora``) scores SNVs only: its classifier reads aligned windows of SNVs (other kinds counted,
left out). With labels the variants are split like any table (``data.split_column``, ``data.group_column``
e.g. chrom, ``data.cv_folds``, ...); the zero-shot metrics are given over all scored variants and per kind
group (SNVs, other kinds).
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
from mambatune.domains.genomics.vcf import VariantError, variant_windows
from mambatune.domains.genomics.vocab import checkpoint_tokenizer
from mambatune.domains.genomics.vep import (
    MarkovLM, VariantPairDataset, collate_pairs, fit_embedding_classifier, haplotype_windows, lm_log_likelihood_ratio,
    pair_features, variant_pairs,
)
from mambatune.core.training.distributed import pick_device
from mambatune.domains.tables import FILE, ROW, TableError, canonical_number, read_table

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
KIND_GROUPS = ("snv", "not_snv")  # zero-shot metrics are also given per group: does an indel's score carry signal?
MIN_PER_KIND = 10  # fewer variants of a kind group than this: no metric for the group, a note instead


def read_user_variants(cfg, path: str | None = None) -> tuple[pl.DataFrame, dict]:
    """The variants of the VCF(s) at ``path`` (default ``data.path``) with their windows (``ref_win``,
    ``alt_win``), ``kind`` and labels (``label``, when there are labels), and the counts of what reading,
    normalising and filtering did. A ``vep_zeroshot`` run keeps every kind (haplotype windows for those
    that are not SNVs); a supervised run keeps SNVs."""
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
        try:
            df, rep = read_vcf(f, genome=genome, label_info_key=cfg.label_info, on_invalid=cfg.on_invalid)
        except VariantError as err:  # the domain's advice, in recipe keys
            raise TableError(str(err).replace("pass on_invalid='skip'", "set data.on_invalid=skip")) from None
        counts.update(rep.counts)
        frames.append(df.with_columns(pl.lit(f.name).alias(FILE),
                                      pl.Series(ROW, range(1, df.height + 1), dtype=pl.Int64)))
    df = pl.concat(frames, how="diagonal_relaxed")
    if cfg.labels_path:
        df, notes = side_labels(df, cfg, where)
    else:
        notes = []
    counts.update(f"read_{k}" for k in df["kind"].to_list())
    if cfg.task != "vep_zeroshot":
        kept = df.filter(pl.col("kind") == "snv")
        counts["left_out_not_snv"] = df.height - kept.height
    else:
        kept = df
    if kept.height == 0:
        raise TableError(f"{where}: no variant left to score ({dict(counts)}); {why_none_left(counts, genome)}")
    ref, alt, padded = variant_window_pairs(kept, genome, cfg.window)
    genome.close()
    counts["windows_padded_with_n_past_contig_end"] = padded
    out = kept.with_columns(pl.Series("ref_win", ref, dtype=pl.String), pl.Series("alt_win", alt, dtype=pl.String))
    return out, {"counts": dict(sorted(counts.items())), "notes": notes}


def why_none_left(counts: Counter, genome: Genome, key: str = "data.genome") -> str:
    """What most likely emptied a VCF, from the counts of reading and normalising it, and how to fix it
    (``key``: the setting that named the genome)."""
    contigs = ", ".join(list(genome.contigs)[:10])
    if not counts["records"]:
        return "the file holds no variant records (only header lines?)"
    if counts["dropped_unknown_contig"]:
        return (f"{counts['dropped_unknown_contig']} record(s) name contigs that {key} lacks (its contigs: "
                f"{contigs}): is it the assembly the VCF refers to?")
    if counts["dropped_ref_mismatch"] or counts["dropped_out_of_bounds"]:
        return (f"{counts['dropped_ref_mismatch'] + counts['dropped_out_of_bounds']} record(s) have a REF that does "
                f"not match {key} at their POS, or lie past a contig end: is it the assembly the VCF refers "
                "to (e.g. GRCh37 vs GRCh38)?")
    if counts["left_out_not_snv"]:
        return ("the supervised VEP recipes score single-base variants and these are other kinds "
                "(genomics/vep_zeroshot scores every kind)")
    return "every record was skipped (see the counts); fix the records, or set data.on_invalid=error to stop at the first"


def variant_window_pairs(df: pl.DataFrame, genome: Genome, window: int | None) -> tuple[list[str], list[str], int]:
    """(ref windows, alt windows, how many read N past a contig end) of the variants ``df``, in its order, all
    ``min(window, 1001)`` bp: an SNV's centred on it (the 1,001 bp window cropped), any other kind's the
    equal-length haplotype windows (``haplotype_windows``), which an SNV's are too away from contig ends."""
    length = min(window or 2 * FLANK + 1, 2 * FLANK + 1)
    ref, alt = [None] * df.height, [None] * df.height
    snv = [i for i, k in enumerate(df["kind"].to_list()) if k == "snv"]
    padded = 0
    if snv:
        wide = variant_windows(df[snv], genome, flank=FLANK)
        pairs = variant_pairs(wide["ref_seq"].to_list(), wide["ref"].to_list(), wide["alt"].to_list(), length)
        for j, i in enumerate(snv):
            ref[i], alt[i] = pairs[0][j], pairs[1][j]
        padded += int((wide["padded"] > 0).sum())
    for i, (chrom, pos, r, a) in enumerate(zip(*(df[c].to_list() for c in ("chrom", "pos", "ref", "alt")))):
        if ref[i] is not None:
            continue
        wide_length = 2 * (length + len(r) + len(a)) + 1  # room for length // 2 before and length after REF
        w = genome.window(chrom, pos - 1, wide_length)
        ref[i], alt[i] = haplotype_windows(w.sequence, wide_length // 2, r, a, length)
        padded += int(w.pad_left + w.pad_right > 0)
    return ref, alt, padded


def side_labels(df: pl.DataFrame, cfg, where: str) -> tuple[pl.DataFrame, list[str]]:
    """Labels from ``data.labels_path``, joined on chrom/pos/ref/alt when the table has them, else on the id."""
    side = read_table(cfg.labels_path, encoding=cfg.encoding)
    if all(c in side.columns for c in ("chrom", "pos", "ref", "alt")):
        def key(frame):
            return (frame["chrom"].cast(pl.String).str.strip_chars().str.replace("^chr", "") + ":"
                    + pl.Series([canonical_number(str(v).strip()) or str(v).strip() for v in frame["pos"].to_list()],
                                dtype=pl.String)
                    + ":"
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
        scores, keep, data["notes"] = zero_shot_scores(recipe, run_dir, pretrained, tok, parts["test"],
                                                       parts["train"]["ref"], data["notes"])
        parts["test"] = subset(parts["test"], keep)
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
    kinds = parts["test"]["frame"]["kind"].to_list()
    extra = {**extra, "scored": scored_counts(kinds)}
    if cfg.task == "vep_zeroshot":
        extra["test_by_kind"] = metrics_by_kind(y, scores, kinds, cfg.n_boot, cfg.seed)
    members = {m["name"] for m in (extra.get("ensemble") or {}).get("members", [])}
    plot_roc_pr(y, {k: s for k, s in scores.items() if k not in members}, run_dir / "plots", title=recipe.name)
    write_predictions(run_dir / "predictions_test.csv", parts["test"]["frame"], scores, data["labels"]["classes"], y)
    return {"task": cfg.task, "data": data, "test": metrics, "sizes": data["sizes"],
            "training": training_summary(result), "summary": summary, **extra}


def subset(part: dict, keep: np.ndarray) -> dict:
    """``part`` (windows, labels, rows of one split) restricted to the rows where ``keep`` is True."""
    if keep.all():
        return part
    idx = np.flatnonzero(keep).tolist()
    return {k: (v[idx] if isinstance(v, pl.DataFrame) else [v[i] for i in idx]) for k, v in part.items()}


def kind_group(kind: str) -> str:
    return "snv" if kind == "snv" else "not_snv"


def scored_counts(kinds: list[str]) -> dict[str, int]:
    """How many variants were scored: ``scored_snv``, ``scored_not_snv`` and per kind (``scored_deletion``, ...)."""
    counts = Counter(f"scored_{kind_group(k)}" for k in kinds)
    counts.update(f"scored_{k}" for k in kinds if k != "snv")
    return {"scored_snv": counts.pop("scored_snv", 0), "scored_not_snv": counts.pop("scored_not_snv", 0),
            **dict(sorted(counts.items()))}


def metrics_by_kind(y: np.ndarray, scores: dict, kinds: list[str], n_boot: int, seed: int) -> dict:
    """Per kind group (``snv``, ``not_snv``): each model's metrics over that group's variants, as over all of
    them; or ``{"note": why not}`` for a group of fewer than ``MIN_PER_KIND`` variants or of one class."""
    group = np.asarray([kind_group(k) for k in kinds])
    out = {}
    for g in KIND_GROUPS:
        rows = np.flatnonzero(group == g)
        classes = len(np.unique(y[rows]))
        if len(rows) < MIN_PER_KIND or classes < 2:
            why = (f"too few variants ({len(rows)} < {MIN_PER_KIND})" if len(rows) < MIN_PER_KIND else
                   f"one class only ({len(rows)} variants)" if len(rows) else "none")
            out[g] = {"n": int(len(rows)), "note": f"no metric: {why}"}
            continue
        out[g] = {k: binary_metrics(y[rows], np.asarray(s)[rows], threshold=0.0 if "LLR" in k else 0.5,
                                    n_boot=n_boot, seed=seed) for k, s in scores.items()}
    return out


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
    seen = label_space([df, test_df], column, kind="auto", where=f"data.path={cfg.path}")
    if seen.kind != "binary":
        classes = f": {', '.join(seen.classes[:10])}" if seen.classes else ""
        raise TableError(f"data.path={cfg.path}: the variants' labels (column {column!r}) are {seen.kind} "
                         f"({seen.how}{classes}); a VEP run learns two classes (e.g. 0 / 1, benign / pathogenic): "
                         "give each variant one of two labels")
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


def zero_shot_scores(recipe, run_dir: Path, pretrained: str | None, tok, part: dict, markov_corpus: list[str],
                     notes: list[str]) -> tuple[dict, np.ndarray, list[str]]:
    """(-LLR of each kept variant under the pretrained LM, recorded in config.yaml as built, and under a
    Markov LM fit on ``markov_corpus``; which of ``part``'s variants were kept; ``notes`` with what was left
    out). A causal LM keeps every kind (SNVs and the others' haplotype windows alike); a masked LM keeps SNVs."""
    cfg = recipe.data
    if not pretrained:
        raise ValueError("zero-shot scoring of a user's VCF needs a pretrained DNA LM: set model.pretrained (e.g. "
                         "default or dna-mamba-1m)")
    lm = language_model(recipe, tok, pretrained).to(pick_device(recipe.train.device))
    record_model(recipe, run_dir, lm, pretrained)
    kinds = part["frame"]["kind"].to_list()
    keep = np.ones(len(kinds), dtype=bool)
    if lm.config.bidirectional:
        keep = np.asarray([k == "snv" for k in kinds], dtype=bool)
        left = int((~keep).sum())
        notes = notes + [f"the LM is masked (bidirectional): its score is defined for one base, so SNVs only are "
                         f"scored; {left} other variant(s) (indels, MNVs, complex) left out (left_out_not_snv_masked_lm)"]
        if not keep.any():
            raise TableError("the LM is masked (bidirectional) and scores SNVs only, but no SNV is left to score")
    ref = [r for r, k in zip(part["ref"], keep) if k]
    alt = [a for a, k in zip(part["alt"], keep) if k]
    out = {"pretrained LM (-LLR)": -lm_log_likelihood_ratio(lm, ref, alt, tok, both_strands=cfg.rc_average)}
    if recipe.eval.baselines:
        # the same windows as the LM: an indel's haplotype windows are equally long, so both LLRs sum as many terms
        markov = MarkovLM(cfg.markov_order).fit(markov_corpus)
        out[f"order-{cfg.markov_order} Markov LM (-LLR)"] = -markov.log_likelihood_ratio(ref, alt)
    return out, keep, notes


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
    """Scores every variant of an unlabelled VCF (SNVs only under a masked LM); results hold the counts and
    score summaries, no metrics."""
    if not domain_run.is_main_process():
        return None
    part = {"ref": df["ref_win"].to_list(), "alt": df["alt_win"].to_list(), "frame": df}
    scores, keep, notes = zero_shot_scores(recipe, run_dir, pretrained, tok, part, part["ref"], info["notes"])
    df = subset(part, keep)["frame"]
    write_predictions(run_dir / "predictions_test.csv", df, scores, None, None)
    summary = {name: {"n": int(len(s)), "mean": float(np.mean(s)), "sd": float(np.std(s)),
                      "min": float(np.min(s)), "max": float(np.max(s))} for name, s in scores.items()}
    notes = notes + ["no labels (no data.label_info or data.labels_path): every variant scored, no metric; the "
                     "Markov LM is fit on the scored variants' reference windows (no labels are read)"] + \
        pretrained_settings(recipe, pretrained)[1]
    return {"task": recipe.data.task, "data": {"format": "vcf", "sizes": {"scored": df.height}, "split": "none: all "
            "variants scored", "labels": None, "variants": info["counts"], "notes": notes},
            "test": summary, "sizes": {"scored": df.height}, "scored": scored_counts(df["kind"].to_list()),
            "training": None, "summary": ""}


def write_predictions(path: Path, frame: pl.DataFrame, scores: dict, classes: list[str] | None, y) -> None:
    """``predictions_test.csv``: id (the VCF ID, else file:row), chrom, pos, ref, alt, kind (snv, mnv,
    insertion, deletion, complex), the label (when known) and each model's score (probability of the
    positive class, or -LLR for zero-shot models)."""
    ids = [v if v not in (None, ".") else f"{f}:{r}" for v, f, r in
           zip(frame["id"].to_list(), frame[FILE].to_list(), frame[ROW].to_list())]
    cols = {"id": ids, "chrom": frame["chrom"], "pos": frame["pos"], "ref": frame["ref"], "alt": frame["alt"],
            "kind": frame["kind"]}
    if y is not None:
        cols["label"] = [classes[int(v)] for v in y]
    for name, s in scores.items():
        cols[f"score: {name}"] = np.asarray(s, dtype=float)
    atomic_write_text(path, pl.DataFrame(cols).write_csv())


def write_report(run_dir: Path, recipe, results: dict) -> None:
    cfg, d = recipe.data, results["data"]
    labelled = d["labels"] is not None
    cols = ["auroc", "auprc", "mcc", "accuracy", "f1"] if labelled else ["n", "mean", "sd", "min", "max"]
    table = metrics_table(results["test"], cols)
    notes = "\n".join(f"- {n}" for n in d["notes"]) or "- none"
    heading = (f"Test set (95 % bootstrap intervals, {cfg.n_boot} resamples)" if labelled else
               "Scores (no labels: no metric)")
    tail = domain_run.report_tail(run_dir, results, results.get("training"),
                                  "No training in this run (pretrained model scored as is).", "Curves")
    if cfg.task == "vep_zeroshot":
        windows = (f"{min(cfg.window or 2 * FLANK + 1, 2 * FLANK + 1)} bp: an SNV's centred on it; an indel's, "
                   "MNV's or complex variant's equal-length haplotype windows (the same bases before the variant, "
                   "then REF or ALT and the genome's next bases), under a causal LM (a masked LM scores SNVs only)")
    else:
        windows = f"{min(cfg.window or 2 * FLANK + 1, 2 * FLANK + 1)} bp centred on each SNV (SNVs only)"
    scored = f" Scored: {results['scored']}." if results.get("scored") else ""
    text = f"""# {recipe.name}

Recipe: `{recipe.source}` · task `{cfg.task}` · variants: `{cfg.path}` on `{cfg.genome}` · base model:
`{domain_run.base_model_text(recipe, results)}`

Labels: {d['labels'] or 'none'}. Split: {d['split']}; variants per split: {d['sizes']}.{scored}
Windows: {windows}. Reading and normalising: {d['variants']}.{shared.ensemble_text(results, 'models')}

Notes:
{notes}

## {heading}

{table}
{kind_tables(results.get("test_by_kind"), cols)}
Scores per variant: `predictions_test.csv` (with each variant's `kind`).

{tail}"""
    atomic_write_text(run_dir / "report.md", text)


def kind_tables(by_kind: dict | None, cols: list[str]) -> str:
    """The per-kind-group sections of the report (zero-shot runs with labels), or ''."""
    if not by_kind:
        return ""
    titles = {"snv": "SNVs", "not_snv": "Other kinds (indels, MNVs, complex)"}
    parts = []
    for group, models in by_kind.items():
        body = (f"{models['n']} variant(s): {models['note']}." if "note" in models else metrics_table(models, cols))
        parts.append(f"\n### {titles[group]}\n\n{body}\n")
    return "".join(parts)
