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
``mambatune eval / predict / export`` on the run folder: see ``genomics_verbs``.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl
import torch

from mambatune.core import MambaConfig, MambaForTask, build_head
from mambatune.core import peft
from mambatune.core.checkpoints import load_pretrained, save_pretrained
from mambatune.core.training.distributed import pick_device
from mambatune.domains.genomics import DNATokenizer, load_promoters, load_variants
from mambatune.domains.genomics.vocab import adopt_checkpoint_vocabulary, checkpoint_tokenizer
from mambatune.domains.genomics.baselines import KmerLogisticRegression
from mambatune.domains.genomics.metrics import binary_metrics, multiclass_metrics, plot_roc_pr
from mambatune.domains.genomics.sequence_data import (
    DNAWindowDataset, GenomeWindows, MaskedEval, MaskedLMCollate, center_crop, collate_windows, predict_logits,
)
from mambatune.domains.genomics.vep import (
    MarkovLM, VariantPairClassifier, VariantPairDataset, collate_pairs, fit_embedding_classifier,
    lm_log_likelihood_ratio, pair_features, variant_pairs,
)

from . import domain_run
from . import genomics_ensemble as ens
from .domain_run import train_model
from .genomics_config import TASKS, DataConfig
from .genomics_windows import genome_windows, long_promoter_table

DEFAULT_DNA_MODEL = "runs/pretrain_dna/model"  # where `mambatune run genomics/pretrain_dna` leaves its model
# pretrained on a GPU by this project's recipe and shipped in the package (recipe and log beside it)
SHIPPED_DNA_MODEL = Path(sys.modules["mambatune.domains.genomics"].__file__).parent / "pretrained" / "dna-mamba-120k"
BEHAVIOUR_KEYS = ("backend",)  # model.config keys that apply to a pretrained model (the rest is its shape)


# -- data ----------------------------------------------------------------------------------------

def subsample(df, n: int | None, seed: int):
    return df if n is None or len(df) <= n else df.sample(n, seed=seed, shuffle=True)


def promoter_splits(cfg: DataConfig) -> dict[str, tuple[Sequence[str], list[int]]]:
    """{split: (windows, labels)}: see :func:`promoter_windows`."""
    return promoter_windows(cfg)[0]


def promoter_windows(cfg: DataConfig) -> tuple[dict[str, tuple[Sequence[str], list[int]]], dict | None]:
    """The promoter windows of each split and, with ``genome``, how the long windows were made.

    Without ``genome``: the demo's 2,000 bp windows cropped to their central ``window`` bp.
    With ``genome``: ``window`` bp (any length) read lazily from the FASTA (:class:`GenomeWindows`),
    centred where each demo window is centred, strand-aware, N beyond contig ends. The demo split
    keeps its regions apart at 2,000 bp only, so a training window that at this length overlaps a
    validation or test window is dropped, before subsampling; the second value counts them
    (``dropped_train_overlap``), with validation windows that overlap test windows (kept) and
    windows that reach past a contig end."""
    table = load_promoters(cfg.promoter_classes)
    info = None
    demo_length = int((table["end"] - table["start"]).max())
    if not cfg.genome and cfg.window and cfg.window > demo_length:
        raise ValueError(f"data.window={cfg.window} is longer than the demo's {demo_length:,} bp windows: set "
                         "data.genome=<a GRCh37 chr20 FASTA> to read windows of that length around their centres")
    if cfg.genome:
        table, info = long_promoter_table(table, cfg)
    out = {}
    for split in ("train", "val", "test"):
        df = subsample(table.filter(pl.col("split") == split), cfg.max_train if split == "train" else cfg.max_eval,
                       cfg.seed)
        if cfg.genome:
            windows = GenomeWindows(cfg.genome, df["chrom"].to_list(), df["_centre"].to_list(), cfg.window,
                                    df["strand"].to_list() if "strand" in df.columns else None)
        else:
            windows = [center_crop(s, cfg.window) for s in df["sequence"].to_list()]
        out[split] = (windows, df["label"].to_list())
    return out, info


def variant_splits(cfg: DataConfig) -> dict[str, dict]:
    """{split: {"ref", "alt" (windows), "labels", "n_skipped" (not SNVs)}} of the combivep variants."""
    out = {}
    for split in ("train", "val", "test"):
        df = load_variants(split)
        snv = df.filter((df["ref"].str.len_chars() == 1) & (df["alt"].str.len_chars() == 1))
        snv = subsample(snv, cfg.max_train if split == "train" else cfg.max_eval, cfg.seed)
        ref, alt = variant_pairs(snv["ref_seq"].to_list(), snv["ref"].to_list(), snv["alt"].to_list(), cfg.window)
        out[split] = {"ref": ref, "alt": alt, "labels": snv["label"].to_list(), "n_skipped": len(df) - len(snv)}
    return out


def lm_corpus(cfg: DataConfig, split: str) -> list[str]:
    """Pretraining windows of ``window`` bp (default 1,000): a FASTA's windows (training split only:
    ``genome`` set) or the demo windows of ``split`` (promoters of every class and variant windows)
    cut into non-overlapping pieces. Only windows of one split, so evaluation windows stay unseen."""
    length = cfg.window or 1000
    if cfg.genome and split == "train":
        return genome_windows(cfg, length)
    seqs = load_promoters("multiclass", split)["sequence"].to_list() + load_variants(split)["ref_seq"].to_list()
    pieces = [s[i:i + length] for s in seqs for i in range(0, len(s) - length + 1, length)]
    pieces = [p for p in pieces if p.upper().count("N") <= 0.1 * length]
    if split != "train" and cfg.max_eval:
        pieces = pieces[: cfg.max_eval]
    if split == "train" and cfg.max_train:
        pieces = pieces[: cfg.max_train]
    return pieces


# -- models --------------------------------------------------------------------------------------

def resolve_pretrained(path: str | None) -> str | None:
    """``default``: $MAMBATUNE_DNA_MODEL, else the shipped DNA model, else runs/pretrain_dna/model."""
    return domain_run.resolve_pretrained(path, "MAMBATUNE_DNA_MODEL", DEFAULT_DNA_MODEL, "genomics/pretrain_dna", "DNA model",
                                      shipped=SHIPPED_DNA_MODEL)


def new_config(recipe, tokenizer: DNATokenizer) -> MambaConfig:
    cfg = dict(recipe.model.config)
    cfg.update(vocab_size=tokenizer.vocab_size, pad_token_id=0)
    if cfg.get("rc_equivariant", "none") != "none":
        cfg.setdefault("complement_map", tokenizer._complement_ids.tolist())
    return MambaConfig.from_dict(cfg)


def base_config(recipe, tokenizer: DNATokenizer, pretrained: str | None) -> MambaConfig:
    """The architecture: the pretrained model's (so a scratch baseline is the same model) or model.config."""
    if pretrained:
        from mambatune.core.checkpoints import load_config
        config = load_config(pretrained)[0]
        if config.vocab_size < tokenizer.vocab_size:
            raise ValueError(f"the pretrained model's vocabulary ({config.vocab_size}) is smaller than the DNA "
                             f"tokenizer's ({tokenizer.vocab_size})")
        d = config.to_dict()
        d.update({k: v for k, v in recipe.model.config.items() if k in BEHAVIOUR_KEYS})
        return MambaConfig.from_dict(d)
    return new_config(recipe, tokenizer)


def behaviour_overrides(recipe) -> dict | None:
    return {k: v for k, v in recipe.model.config.items() if k in BEHAVIOUR_KEYS} or None


def dna_model(pretrained: str, k: int = 1, **kwargs) -> MambaForTask:
    """``load_pretrained`` for DNA: the checkpoint's saved tokenizer (``tokenizer.json``) must be DNA tokens
    of ``k`` (else a clear error, ``checkpoint_tokenizer``); a checkpoint trained with another tokenizer's ids
    (Caduceus) gets its token rows permuted to :class:`DNATokenizer`'s (``domains.genomics.vocab``), and the
    run says so."""
    tokenizer = checkpoint_tokenizer(pretrained, k)
    model = load_pretrained(pretrained, **kwargs)
    mapping = adopt_checkpoint_vocabulary(model, pretrained, tokenizer)
    if mapping is not None and domain_run.is_main_process():
        bases = ", ".join(f"{t}:{mapping[t]}" for t in "ACGTN")
        print(f"{pretrained}: Caduceus token ids mapped to ours (its ids {bases})")
    return model


def classifier(recipe, config: MambaConfig, num_labels: int, pretrained: str | None) -> MambaForTask:
    torch.manual_seed(recipe.model.seed)
    spec = dict(recipe.model.head)
    spec.setdefault("num_labels", num_labels)
    if pretrained:
        return dna_model(pretrained, head=spec, config_overrides=behaviour_overrides(recipe))
    kind = spec.pop("kind")
    return MambaForTask(config, build_head(kind, config.d_model * (2 if config.rc_equivariant == "rcps" else 1), **spec))


def pair_classifier(recipe, config: MambaConfig, pretrained: str | None) -> VariantPairClassifier:
    torch.manual_seed(recipe.model.seed)
    if pretrained:
        backbone = dna_model(pretrained, config_overrides=behaviour_overrides(recipe)).backbone
    else:
        backbone = MambaForTask(config).backbone
    return VariantPairClassifier(backbone, 2, recipe.data.vep_radius, float(recipe.model.head.get("dropout", 0.0)))


def language_model(recipe, tokenizer: DNATokenizer, pretrained: str | None) -> MambaForTask:
    if pretrained:
        model = dna_model(pretrained, config_overrides=behaviour_overrides(recipe))
        if getattr(model.head, "kind", None) != "lm":
            model = dna_model(pretrained, head={"kind": "lm"}, config_overrides=behaviour_overrides(recipe))
        return model
    torch.manual_seed(recipe.model.seed)
    return MambaForTask(new_config(recipe, tokenizer))


def binary_eval_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score
    y = labels.numpy()
    p = torch.softmax(logits, -1)[:, 1].numpy()
    return {"auroc": float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else float("nan"),
            "accuracy": float(((p >= 0.5) == y).mean())}


def multiclass_eval_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    from sklearn.metrics import f1_score
    pred, y = logits.argmax(-1).numpy(), labels.numpy()
    return {"accuracy": float((pred == y).mean()), "macro_f1": float(f1_score(y, pred, average="macro"))}


def scratch_train_config(recipe, run_dir: Path, name: str):
    return dataclasses.replace(recipe.train, output_dir=str(run_dir / name))


# -- tasks ---------------------------------------------------------------------------------------

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
    trained = ens.train_members(recipe, run_dir, pretrained, lambda r, p: classifier(r, config, num_labels, p),
                                data, collate_windows, metrics_fn, save_base=True)
    scratch = None
    if pretrained and cfg.scratch_baseline:  # trained by every rank, like the model
        scratch, _, _ = train_model(classifier(recipe, config, num_labels, None),
                                    scratch_train_config(recipe, run_dir, "scratch"), data["train"], data["val"],
                                    collate_windows, metrics_fn)
    if not on_main:
        return None
    probs, extra = ens.member_probs(recipe, pretrained, trained,
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
        trained = ens.train_members(recipe, run_dir, pretrained, lambda r, p: pair_classifier(r, config, p), data,
                                    collate_pairs, binary_eval_metrics)
        (_, result, summary), scratch = trained[0][:3], None
        if pretrained and cfg.scratch_baseline:  # trained by every rank, like the model
            scratch, _, _ = train_model(pair_classifier(recipe, config, None), scratch_train_config(recipe, run_dir, "scratch"),
                                        data["train"], data["val"], collate_pairs, binary_eval_metrics)
        if not on_main:
            return None
        probs, extra = ens.member_probs(recipe, pretrained, trained,
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
        from .genomics_verbs import save_embedding_classifier
        save_embedding_classifier(clf, run_dir)  # for `mambatune eval / predict / export`
        probs[f"{name} embeddings + logistic regression"] = clf.predict_proba(feats["test"])
    if recipe.eval.baselines:
        domain_run.announce_baselines([f"{cfg.kmer}-mer logistic regression (ref window)"])
        kmer = KmerLogisticRegression(k=cfg.kmer, seed=cfg.seed).fit(tr["ref"], tr["labels"])
        probs[f"{cfg.kmer}-mer logistic regression (ref window)"] = kmer.predict_proba(te["ref"])
    out = finish_classification(run_dir, recipe, np.asarray(te["labels"]), probs, True, result, summary, sizes, extra)
    out["skipped_not_snv"] = {s: v["n_skipped"] for s, v in splits.items()}
    return out


def pair_probs(model, data: VariantPairDataset, rc_average: bool) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(data), 32):
            batch = collate_pairs([data[i] for i in range(start, min(start + 32, len(data)))])
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            logits = model(ids, mask).logits.float()
            if rc_average:
                rc = data.tokenizer.reverse_complement_ids(ids.reshape(-1, ids.shape[-1])).reshape(ids.shape)
                logits = (logits + model(rc, mask).logits.float()) / 2
            out.append(torch.softmax(logits, -1).cpu().numpy())
    return np.concatenate(out)


def lm_for_vep(recipe, run_dir: Path, tok: DNATokenizer, pretrained: str | None):
    """A causal DNA LM: the pretrained one, or one pretrained now under ``lm/`` with the train section
    (on every rank under torchrun; the others get None for the model of an FSDP run, see ``train_model``)."""
    if pretrained:
        model = language_model(recipe, tok, pretrained) if domain_run.is_main_process() else None
        return model, None, "", "pretrained LM"
    model, result, summary, _ = pretrain(recipe, run_dir / "lm", tok)
    return model, result, summary, "LM pretrained in this run"


def pretrain(recipe, out_dir: Path, tok: DNATokenizer):
    cfg = recipe.data
    corpus = {s: lm_corpus(cfg, s) for s in ("train", "val", "test")}
    data = {s: DNAWindowDataset(c, tokenizer=tok, rc_augment=cfg.rc_augment and s == "train", lm=True)
            for s, c in corpus.items()}
    model = language_model(recipe, tok, None)
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
        lm, result, summary, corpora = pretrain(recipe, run_dir / "lm", tok)
    if not domain_run.is_main_process():
        return None
    if pretrained:
        lm, result, summary = language_model(recipe, tok, pretrained), None, ""
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
           "note": "threshold-based metrics (MCC, accuracy, F1) of -LLR scores use threshold 0 (alt less likely)"}
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
    model, result, summary, corpus = pretrain(recipe, run_dir, tok)
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


@torch.no_grad()
def lm_loss(model: MambaForTask, data, batch_size: int = 32, collate=collate_windows) -> float:
    """Mean next-token cross-entropy (nats per base) over the windows; with a masked LM's data and collate
    (:class:`MaskedEval`, :class:`MaskedLMCollate`), the mean over the masked bases."""
    model.eval()
    device = next(model.parameters()).device
    total, n = 0.0, 0
    for start in range(0, len(data), batch_size):
        batch = collate([data[i] for i in range(start, min(start + batch_size, len(data)))])
        batch = {k: v.to(device) for k, v in batch.items()}
        loss = model(**batch).loss
        if model.config.bidirectional:
            count = int((batch["labels"] != -100).sum())
        else:
            count = int(batch["attention_mask"][:, 1:].sum())
        total += float(loss) * count
        n += count
    return total / n


# -- outputs -------------------------------------------------------------------------------------

def softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits, -1).numpy()


def main_name(recipe, pretrained: str | None) -> str:
    methods = "+".join(m.method for m in recipe.peft.methods) or "full"
    return f"mamba {'pretrained' if pretrained else 'from scratch'} ({methods})"


def save_trained(model, run_dir: Path, recipe) -> None:
    """The trained model (``model/``) or adapter (``adapter/``), with the tokenizer it reads beside it."""
    if recipe.peft.methods:
        folder = run_dir / "adapter"
        peft.save_adapter(model, folder)
    elif isinstance(model, MambaForTask):
        folder = run_dir / "model"
        save_pretrained(model, folder, meta={"recipe": recipe.name})
    else:
        from safetensors.torch import save_file
        folder = run_dir / "model"
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    DNATokenizer(recipe.data.k).save(folder)


def training_summary(result) -> dict | None:
    if result is None:
        return None
    return {"steps": result.steps, "best_step": result.best_step, "stopped_early": result.stopped_early,
            "seconds": result.seconds, "last_eval": result.last_eval}


def finish_classification(run_dir, recipe, y, probs: dict, binary: bool, result, summary, sizes,
                          extra: dict | None = None) -> dict:
    """Metrics of every model's test probabilities; ROC / PR curves (not of an ensemble's members: ``extra``
    holds its ``ensemble`` and ``training`` records, see ``genomics_ensemble.member_probs``)."""
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


# -- entry points --------------------------------------------------------------------------------

RUNNERS = {"promoter": run_promoter, "vep": run_vep, "vep_zeroshot": run_vep_zeroshot, "pretrain_dna": run_pretrain}


def run(recipe) -> Path:
    """Runs the recipe's task and writes the run folder; returns it. With ``data.path`` the task runs on the
    user's files (``genomics_user_tasks``)."""
    if recipe.data.path:
        from . import genomics_user_tasks
        return genomics_user_tasks.run(recipe, resolve_pretrained(recipe.model.pretrained))
    return domain_run.run_task(recipe, RUNNERS, resolve_pretrained(recipe.model.pretrained), ens.write_run_report)


# the CLI verbs on a finished run (eval, predict, export) live beside this module
evaluate, predict, export, read_inputs = domain_run.verbs_of("mambatune.pipelines.genomics_verbs")
