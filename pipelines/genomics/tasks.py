"""Genomics pipeline: promoter classification, variant-effect prediction, DNA LM pretraining.

``data.task`` picks what a recipe does (recipes in ``recipes/genomics/``):

- ``promoter``: chr20 promoter windows (``data.promoter_classes`` binary or multiclass),
  fine-tuned with the recipe's PEFT method (none = full), RC augmentation in training,
  RC-averaged inference; with ``data.genome`` the windows are ``data.window`` bp (any length,
  e.g. 131,072) read from that FASTA around each demo window's centre (see ``promoter_windows``);
- ``vep_zeroshot``: -LLR of alt vs ref under a causal DNA LM (``model.pretrained``, or
  one pretrained in this run under ``lm/`` when none is given);
- ``vep``: supervised, ``data.vep_method`` ``finetune`` (backbone + pair head, end to end,
  with the PEFT method) or ``embedding`` (logistic regression on frozen ref/alt features);
- ``pretrain_dna``: a causal DNA LM on the training-split windows (or a FASTA) -> ``model/``.

Every task writes the run folder (config.yaml, checkpoints/, metrics.jsonl, plots/ with
ROC and PR curves of all models, report.md, results.json) and fits its baselines in the
same run on the same windows: 6-mer logistic regression, a Markov-chain LM for the
LM tasks, and the same model trained from scratch when the base is pretrained.
``mambatune eval / predict / export`` on the run folder: see ``genomics.verbs``. With ``data.path`` a recipe runs on
the user's files instead (``genomics.user_tasks``, ``genomics.user_vep``).
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np

from mambatune.core.checkpoints import save_pretrained
from mambatune.core.training.distributed import pick_device
from mambatune.domains.genomics import DNATokenizer
from mambatune.domains.genomics.baselines import KmerLogisticRegression
from mambatune.domains.genomics.metrics import binary_metrics, multiclass_metrics, plot_roc_pr
from mambatune.domains.genomics.sequence_data import (
    DNAWindowDataset, MaskedEval, MaskedLMCollate, collate_windows, predict_logits,
)
from mambatune.domains.genomics.user_files import file_format
from mambatune.domains.genomics.vep import (
    MarkovLM, VariantPairDataset, collate_pairs, fit_embedding_classifier, lm_log_likelihood_ratio, pair_features,
)

from .. import domain_run
from ..domain_run import train_model
from .data import lm_corpus, promoter_windows, variant_splits
from .members import member_probs, train_members, write_run_report
from .models import (
    base_config, binary_eval_metrics, classifier, language_model, lm_loss, multiclass_eval_metrics, pair_classifier,
    pair_probs, pretrained_settings, record_model, resolve_pretrained, save_embedding_classifier, scratch_train_config,
    softmax, training_summary,
)
from .user_tasks import run_user_sequences, write_report as write_sequences_report
from .user_vep import run_user_variants, write_report as write_variants_report


def run_promoter(recipe, run_dir: Path, pretrained: str | None) -> dict:
    cfg, tok = recipe.data, DNATokenizer()
    splits, long_windows = promoter_windows(cfg)
    eval_batch = recipe.train.eval_batch_size or recipe.train.batch_size
    num_labels = 2 if cfg.promoter_classes == "binary" else 3
    data = {s: DNAWindowDataset(x, y, tok, rc_augment=cfg.rc_augment and s == "train") for s, (x, y) in splits.items()}
    binary = num_labels == 2
    metrics_fn = binary_eval_metrics if binary else multiclass_eval_metrics
    config = base_config(recipe, tok, pretrained)
    on_main = domain_run.is_main_process()
    # the model (K = 1) or the K members of data.ensemble, one after another, on every rank
    trained = train_members(recipe, run_dir, pretrained, lambda r, p: classifier(r, config, num_labels, p),
                                    data, collate_windows, metrics_fn, save_base=True)
    scratch = None
    if pretrained and cfg.scratch_baseline:  # trained by every rank, like the model
        scratch, _, _ = train_model(classifier(recipe, config, num_labels, None),
                                    scratch_train_config(recipe, run_dir, "scratch"), data["train"], data["val"],
                                    collate_windows, metrics_fn)
    if not on_main:
        return None
    probs, extra = member_probs(recipe, pretrained, trained,
                                        lambda m: softmax(predict_logits(m, data["test"], eval_batch, cfg.rc_average)))
    if scratch is not None:
        probs["same model from scratch (full)"] = softmax(predict_logits(scratch, data["test"], eval_batch, cfg.rc_average))
    if recipe.eval.baselines:
        domain_run.announce_baselines([f"{cfg.kmer}-mer logistic regression"])
        kmer = KmerLogisticRegression(k=cfg.kmer, seed=cfg.seed).fit(*splits["train"])
        probs[f"{cfg.kmer}-mer logistic regression"] = kmer.predict_proba(splits["test"][0])
    y = np.asarray(splits["test"][1])
    out = finish_classification(run_dir, recipe, y, probs, binary, trained[0][1], trained[0][2],
                                {s: len(v[1]) for s, v in splits.items()}, extra)
    if long_windows is not None:
        out["long_windows"] = long_windows
    out["notes"] = pretrained_settings(recipe, pretrained)[1]
    return out


def run_vep(recipe, run_dir: Path, pretrained: str | None) -> dict:
    cfg, tok = recipe.data, DNATokenizer()
    splits = variant_splits(cfg)
    tr, te = splits["train"], splits["test"]
    sizes = {s: len(v["labels"]) for s, v in splits.items()}
    probs, result, summary, extra = {}, None, "", {}
    on_main = domain_run.is_main_process()
    if cfg.vep_method == "finetune":
        data = {s: VariantPairDataset(v["ref"], v["alt"], v["labels"], tok, rc_augment=cfg.rc_augment and s == "train")
                for s, v in splits.items()}
        config = base_config(recipe, tok, pretrained)
        trained = train_members(recipe, run_dir, pretrained, lambda r, p: pair_classifier(r, config, p),
                                        data, collate_pairs, binary_eval_metrics)
        (_, result, summary), scratch = trained[0][:3], None
        if pretrained and cfg.scratch_baseline:  # trained by every rank, like the model
            scratch, _, _ = train_model(pair_classifier(recipe, config, None), scratch_train_config(recipe, run_dir, "scratch"),
                                        data["train"], data["val"], collate_pairs, binary_eval_metrics)
        if not on_main:
            return None
        probs, extra = member_probs(recipe, pretrained, trained,
                                            lambda m: pair_probs(m, data["test"], cfg.rc_average))
        if scratch is not None:
            probs["same model from scratch (full)"] = pair_probs(scratch, data["test"], cfg.rc_average)
    else:
        lm, result, summary, name = lm_for_vep(recipe, run_dir, tok, pretrained)
        if not on_main:
            return None
        feats = {s: pair_features(lm.backbone, v["ref"], v["alt"], tok, radius=cfg.vep_radius, rc_average=cfg.rc_average)
                 for s, v in (("train", tr), ("test", te))}
        clf = fit_embedding_classifier(feats["train"], tr["labels"], seed=cfg.seed)
        save_embedding_classifier(clf, run_dir)  # for `mambatune eval / predict / export`
        probs[f"{name} embeddings + logistic regression"] = clf.predict_proba(feats["test"])
    if recipe.eval.baselines:
        domain_run.announce_baselines([f"{cfg.kmer}-mer logistic regression (ref window)"])
        kmer = KmerLogisticRegression(k=cfg.kmer, seed=cfg.seed).fit(tr["ref"], tr["labels"])
        probs[f"{cfg.kmer}-mer logistic regression (ref window)"] = kmer.predict_proba(te["ref"])
    out = finish_classification(run_dir, recipe, np.asarray(te["labels"]), probs, True, result, summary, sizes, extra)
    out["skipped_not_snv"] = {s: v["n_skipped"] for s, v in splits.items()}
    out["notes"] = pretrained_settings(recipe, pretrained)[1]
    return out


def lm_for_vep(recipe, run_dir: Path, tok: DNATokenizer, pretrained: str | None):
    """A causal DNA LM: the pretrained one, or one pretrained now under ``lm/`` with the train section
    (on every rank under torchrun; the others get None for the model of an FSDP run, see ``train_model``)."""
    if pretrained:
        model = language_model(recipe, tok, pretrained) if domain_run.is_main_process() else None
        if model is not None:
            record_model(recipe, run_dir, model, pretrained)
        return model, None, "", "pretrained LM"
    model, result, summary, _ = pretrain(recipe, run_dir, run_dir / "lm", tok)
    return model, result, summary, "LM pretrained in this run"


def pretrain(recipe, run_dir: Path, out_dir: Path, tok: DNATokenizer):
    """A new DNA LM trained on the LM corpus (``lm_corpus``) and saved to ``out_dir/model``; the run's
    config.yaml (in ``run_dir``) records it as built. Returns (model, TrainResult, summary, corpus)."""
    cfg = recipe.data
    corpus = {s: lm_corpus(cfg, s) for s in ("train", "val", "test")}
    data = {s: DNAWindowDataset(c, tokenizer=tok, rc_augment=cfg.rc_augment and s == "train", lm=True)
            for s, c in corpus.items()}
    model = language_model(recipe, tok, None)
    record_model(recipe, run_dir, model, None)
    train_cfg = dataclasses.replace(recipe.train, output_dir=str(out_dir), metric_for_best="loss")
    # a bidirectional model sees the next token: it learns to fill in masked bases instead (its LM head's
    # loss is the masked-LM one); validation masks the same bases every time
    masked = model.config.bidirectional
    collate = MaskedLMCollate(tok) if masked else collate_windows
    if masked:
        data["val"] = MaskedEval(data["val"], collate, seed=recipe.model.seed)
    model, result, summary = train_model(model, train_cfg, data["train"], data["val"], collate, None)
    if domain_run.is_main_process():
        save_pretrained(model, out_dir / "model", meta={"recipe": recipe.name,
                                                         "objective": "masked LM" if masked else "causal LM",
                                                         "tokenizer": "DNATokenizer(k=1)"})
        tok.save(out_dir / "model")
    return model, result, summary, corpus


def run_vep_zeroshot(recipe, run_dir: Path, pretrained: str | None) -> dict:
    cfg, tok = recipe.data, DNATokenizer()
    if not pretrained:  # every rank trains the LM
        lm, result, summary, corpora = pretrain(recipe, run_dir, run_dir / "lm", tok)
    if not domain_run.is_main_process():
        return None
    if pretrained:
        lm, result, summary = language_model(recipe, tok, pretrained), None, ""
        record_model(recipe, run_dir, lm, pretrained)
        lm.to(pick_device(recipe.train.device))  # no training step moves it: score on the GPU when there is one
        corpus = lm_corpus(cfg, "train")
        name = "pretrained LM (-LLR)"
    else:
        corpus = corpora["train"]
        name = "LM pretrained in this run (-LLR)"
    splits = variant_splits(cfg)
    te = splits["test"]
    # the zero-shot scores (-LLR) of a split's windows: the LM's, and the Markov LM baseline's
    scorers = {name: lambda v: -lm_log_likelihood_ratio(lm, v["ref"], v["alt"], tok, both_strands=cfg.rc_average)}
    if recipe.eval.baselines:
        domain_run.announce_baselines([f"order-{cfg.markov_order} Markov LM",
                                       f"{cfg.kmer}-mer logistic regression (supervised, ref window)"])
        markov = MarkovLM(cfg.markov_order).fit(corpus)
        markov_llr = markov.log_likelihood_ratio
        scorers[f"order-{cfg.markov_order} Markov LM (-LLR)"] = lambda v: -markov_llr(v["ref"], v["alt"])
    scores = {n: score(te) for n, score in scorers.items()}
    if recipe.eval.baselines:
        tr = splits["train"]
        kmer = KmerLogisticRegression(k=cfg.kmer, seed=cfg.seed).fit(tr["ref"], tr["labels"])
        scores[f"{cfg.kmer}-mer logistic regression (supervised, ref window)"] = kmer.predict_proba(te["ref"])[:, 1]
    y = np.asarray(te["labels"])
    metrics = {k: binary_metrics(y, s, threshold=0.0 if "LLR" in k else 0.5, n_boot=cfg.n_boot, seed=cfg.seed)
               for k, s in scores.items()}
    plot_roc_pr(y, scores, run_dir / "plots", title=recipe.name)
    out = {"task": "vep_zeroshot", "test": metrics, "sizes": {s: len(v["labels"]) for s, v in splits.items()},
           "skipped_not_snv": {s: v["n_skipped"] for s, v in splits.items()},
           "lm_training": training_summary(result), "summary": summary,
           "note": "threshold-based metrics (MCC, accuracy, F1) of -LLR scores use threshold 0 (alt less likely)",
           "notes": pretrained_settings(recipe, pretrained)[1]}
    more = [s for s in dict.fromkeys(cfg.zeroshot_splits) if s != "test"]
    if more:
        out["more_splits"] = score_more_splits(cfg, splits, more, scorers, scores, pretrained)
    return out


def score_more_splits(cfg, splits: dict, more: list[str], scorers: dict, test_scores: dict,
                      pretrained: str | None) -> dict:
    """The zero-shot models' metrics on each split of ``more`` and on those splits pooled with test (no
    labels are read to score; the supervised baseline is left out, as it learns from the training split)."""
    by_split, pooled_y, pooled = {}, [np.asarray(splits["test"]["labels"])], {k: [test_scores[k]] for k in scorers}
    for split in more:
        y = np.asarray(splits[split]["labels"])
        print(f"zero-shot scores on the {split} split ({len(y)} SNVs)", flush=True)
        by_split[split] = {}
        for name, score in scorers.items():
            s = score(splits[split])
            pooled[name].append(s)
            by_split[split][name] = binary_metrics(y, s, threshold=0.0, n_boot=cfg.n_boot, seed=cfg.seed)
        pooled_y.append(y)
    y = np.concatenate(pooled_y)
    seen = ("the LM's pretraining windows (chr20 windows clear of the validation and test regions) may hold "
            "training-split variants' reference bases" if pretrained else
            "the LM pretrained in this run read the training-split windows") if "train" in more else ""
    return {"splits": ["test", *more], "n": int(len(y)), "n_positive": int(y.sum()),
            "pooled": {name: binary_metrics(y, np.concatenate(parts), threshold=0.0, n_boot=cfg.n_boot, seed=cfg.seed)
                       for name, parts in pooled.items()},
            "by_split": by_split,
            "note": "Zero-shot scores read no labels, so every labelled split can measure them; " + (
                seen + ", and the Markov LM is fit on the training-split windows (reference bases only, "
                "never labels)" if seen else "the supervised baseline is scored on test only")}


def run_pretrain(recipe, run_dir: Path, pretrained: str | None) -> dict:
    if pretrained:
        raise ValueError("pretrain_dna trains a new model: set model.pretrained=null")
    tok = DNATokenizer()
    model, result, summary, corpus = pretrain(recipe, run_dir, run_dir, tok)
    if not domain_run.is_main_process():
        return None
    data = DNAWindowDataset(corpus["test"], tokenizer=tok, lm=True)
    if model.config.bidirectional:  # masked LM: the loss over a fixed 15% of the test bases, masked
        collate = MaskedLMCollate(tok)
        nll = lm_loss(model, MaskedEval(data, collate, seed=recipe.model.seed), collate=collate)
        name = "mamba masked LM (per masked base; sees both sides, not comparable to next-token rows)"
    else:
        nll, name = lm_loss(model, data), "mamba LM"
    out = {"task": "pretrain_dna", "test": {name: {"nats_per_base": nll, "bits_per_base": nll / np.log(2)}},
           "sizes": {s: len(c) for s, c in corpus.items()}, "lm_training": training_summary(result), "summary": summary,
           "model_dir": str(run_dir / "model"),
           "parameters": sum(p.numel() for p in model.parameters())}
    if recipe.eval.baselines:
        domain_run.announce_baselines([f"order-{recipe.data.markov_order} Markov LM"])
        markov = MarkovLM(recipe.data.markov_order).fit(corpus["train"])
        per_base = [-markov.log_probs(s).mean() for s in corpus["test"]]
        out["test"][f"order-{recipe.data.markov_order} Markov LM"] = {
            "nats_per_base": float(np.mean(per_base)), "bits_per_base": float(np.mean(per_base) / np.log(2))}
    out["test"]["uniform (4 bases)"] = {"nats_per_base": float(np.log(4)), "bits_per_base": 2.0}
    return out


def finish_classification(run_dir, recipe, y, probs: dict, binary: bool, result, summary, sizes,
                          extra: dict | None = None) -> dict:
    """Metrics of every model's test probabilities; ROC / PR curves (not of an ensemble's members: ``extra``
    holds its ``ensemble`` and ``training`` records, see ``members.member_probs``)."""
    cfg, extra = recipe.data, extra or {}
    members = {m["name"] for m in extra.get("ensemble", {}).get("members", [])}
    if binary:
        scores = {k: (p[:, 1] if p.ndim == 2 else p) for k, p in probs.items()}
        metrics = {k: binary_metrics(y, s, n_boot=cfg.n_boot, seed=cfg.seed) for k, s in scores.items()}
        plot_roc_pr(y, {k: s for k, s in scores.items() if k not in members}, run_dir / "plots", title=recipe.name)
    else:
        metrics = {k: multiclass_metrics(y, p, n_boot=cfg.n_boot, seed=cfg.seed) for k, p in probs.items()}
    return {"task": cfg.task, "test": metrics, "sizes": sizes, "training": training_summary(result), "summary": summary,
            **extra}



# -- entry point ---------------------------------------------------------------------------------

RUNNERS = {"promoter": run_promoter, "vep": run_vep, "vep_zeroshot": run_vep_zeroshot, "pretrain_dna": run_pretrain}


def run(recipe) -> Path:
    """Runs the recipe's task and writes the run folder; returns it. With ``data.path`` the task runs on the
    user's files: a VCF through ``user_vep``, sequences (table, FASTA, regions) through ``user_tasks``."""
    pretrained = resolve_pretrained(recipe.model.pretrained)
    cfg = recipe.data
    if not cfg.path:
        return domain_run.run_task(recipe, RUNNERS, pretrained, write_run_report)
    if file_format(cfg.path, cfg.format) == "vcf":
        return domain_run.run_task(recipe, {cfg.task: run_user_variants}, pretrained,
                                   functools.partial(write_run_report, report=write_variants_report))
    if cfg.task != "promoter":
        raise ValueError(f"data.path={cfg.path} is a sequence file: the {cfg.task} recipes read "
                         "variants (a VCF with data.genome); sequence files go to genomics/promoter_lora, "
                         "promoter_full or promoter_head")
    return domain_run.run_task(recipe, {cfg.task: run_user_sequences}, pretrained,
                               functools.partial(write_run_report, report=write_sequences_report))
