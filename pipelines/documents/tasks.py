"""Long-document pipeline: document classification and byte-level LM pretraining.

``data.task`` picks what a recipe does (recipes in ``recipes/documents/``):

- ``classify``: single-label classification, or multi-label when the label column holds
  lists (BCE, per-class thresholds tuned on the validation split). Full / LoRA / head-only
  through the recipe's ``peft`` section; documents up to ``data.max_length`` tokens
  (bytes by default), longer ones truncated (counted) or cut into chunks whose pooled
  features are pooled per document (``data.overflow=chunk``); length-bucketed batches;
  optional class weights. TF-IDF + linear SVM and TF-IDF + logistic regression are fitted
  in the same run on the same split (full texts) and scored with the same metrics;
- ``pretrain_text``: a byte-level causal LM on the windows of the **training split's**
  texts only (no validation or test text is trained on; a slice of the training windows
  is held out for its validation loss) -> ``model/``, the base of ``classify`` runs with
  ``model.pretrained=default``.

The run folder: config.yaml, labels.json, thresholds.json (multi-label), checkpoints/,
metrics.jsonl, plots/ (curves and confusion matrices), model/ or adapter/ (+ base/ for a PEFT run
from scratch), report.md, results.json, predictions_test.csv (per test document: true and predicted
label, a probability per label). With ``data.ensemble`` K > 1 it trains K classifiers, each in
``member-<k>/`` (its model/ or adapter/ + base/, checkpoints/, metrics.jsonl, plots/), scored together
by their mean probabilities (see ``ensemble``, which also combines separate runs).
``mambatune eval / predict / export`` on it: see ``verbs``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from mambatune.core import MambaForTask
from mambatune.core import peft
from mambatune.core.atomic import atomic_write_text
from mambatune.core.checkpoints import save_pretrained
from mambatune.domains.documents import DocumentDataset, class_weights
from mambatune.domains.documents.baselines import run_baselines
from mambatune.domains.documents.metrics import save_confusion_matrix
from mambatune.domains.documents.tokenizer_file import save_tokenizer
from mambatune.domains.tables import FILE, where_row
from mambatune.domains.documents.training import BatchCollate, BucketedBatches, DocumentClassifier, collate_lm, \
    lm_windows, predict_scores

from .. import domain_run
from .. import ensemble_runs as shared
from ..domain_run import train_model
from ..recipe import save_resolved
from .data import load_data, make_tokenizer
from .models import build_classifier, method_name, model_overrides, new_config, resolve_pretrained, save_trained
from .report import write_run_report
from .scores import (
    length_range, lm_nats_per_token, model_metrics, multi_label_metrics, probabilities, score_ensemble, sigmoid,
    single_label_metrics, slug, training_summary, word_counts, write_test_predictions,
)


def check_unseen_labels(table, known, split: str, cfg) -> None:
    """An evaluation document whose label the training split never has: an error naming the labels and rows
    (data.unseen_labels=map scores them as wrong instead, counted)."""
    frame = table.frame
    labels = frame["label"].to_list()
    unseen = [[x for x in (v if table.multi_label else [v]) if x not in known] for v in labels]
    rows = [i for i, u in enumerate(unseen) if u]
    if not rows:
        return
    shown = "; ".join(f"{', '.join(map(repr, unseen[i]))} ({where_row(frame, i) if FILE in frame.columns else i + 1})"
                      for i in rows[:5])
    folds = (f"; with data.cv_folds={cfg.cv_folds} a class with fewer than {cfg.cv_folds} documents is missing from "
             "some fold's training split" if cfg.fold is not None else "")
    raise ValueError(f"data {cfg.describe()}: {len(rows)} {split} document(s) have a label never seen in training "
                     f"({shown}){folds}. Give each class more documents, remove those, or set "
                     "data.unseen_labels=map (scored as wrong, counted)")


def run_classify(recipe, run_dir: Path, pretrained: str | None) -> dict:
    cfg = recipe.data
    _, model_notes = model_overrides(recipe, pretrained)  # an override the pretrained model contradicts: stop here
    loaded = load_data(cfg, recipe.source)
    tables = loaded.tables
    tok = make_tokenizer(cfg)
    length = dict(max_length=cfg.max_length, overflow=cfg.overflow, stride=cfg.chunk_stride)
    train_ds = DocumentDataset(tables["train"], tok, **length)
    multi = train_ds.multi_label
    if not multi and train_ds.num_labels < 2:
        seen = ", ".join(repr(n) for n in train_ds.vocab.names()) or "none"
        raise ValueError(f"data {cfg.describe()}: the training split has one label ({seen}, in column "
                         f"{cfg.label_column!r}); a classifier needs at least two classes: check data.label_column, "
                         "or add documents of another class")
    if cfg.unseen_labels == "error":
        for split in ("val", "test"):
            check_unseen_labels(tables[split], train_ds.vocab.index, split, cfg)
    data = {"train": train_ds, **{s: DocumentDataset(tables[s], tok, vocab=train_ds.vocab, unseen=cfg.unseen_labels,
                                                     **length) for s in ("val", "test")}}
    names = train_ds.vocab.names()
    on_main = domain_run.is_main_process()
    if on_main:
        atomic_write_text(run_dir / "labels.json", json.dumps(names) + "\n")
        loaded.write(run_dir)
    weights = None if cfg.class_weights == "none" else class_weights(train_ds, scheme=cfg.class_weights)
    batch, max_tokens = recipe.train.batch_size, cfg.max_tokens_per_batch
    known_val = [i for i, t in enumerate(data["val"].targets) if multi or t >= 0]
    val_batches = BucketedBatches(data["val"], recipe.train.eval_batch_size or batch, max_tokens, shuffle=False,
                                  indices=known_val) if known_val else None
    # one Trainer item is one length-bucketed batch of documents
    train_cfg = dataclasses.replace(recipe.train, batch_size=1, eval_batch_size=1)
    members = []  # (model, TrainResult, summary, seed) on the main rank
    for k in range(cfg.ensemble):  # one classifier, or an ensemble's members one after another (every rank)
        member_dir, member_recipe, member_train = run_dir, recipe, train_cfg
        if cfg.ensemble > 1:
            member_dir = run_dir / f"member-{k}"
            member_recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model,
                                                                                  seed=recipe.model.seed + k))
            member_train = dataclasses.replace(train_cfg, output_dir=str(member_dir), seed=train_cfg.seed + k)
            if on_main:
                print(f"ensemble member {k + 1}/{cfg.ensemble}: model seed {recipe.model.seed + k}, "
                      f"batch seed {cfg.seed + k}", flush=True)
        model = build_classifier(member_recipe, tok, len(names), multi, weights, pretrained)
        if on_main and k == 0:  # config.yaml records the model as built (a pretrained model's shape)
            record_model(recipe, run_dir, model.config, model_notes)
        if recipe.peft.methods:
            if not pretrained and on_main:
                save_pretrained(model, member_dir / "base",
                                meta={"note": "initial weights of a model trained from scratch"})
                save_tokenizer(tok, member_dir / "base")
            peft.apply(model, recipe.peft)
        train_batches = BucketedBatches(train_ds, batch, max_tokens, shuffle=True, seed=cfg.seed + k)
        wrapped, result, summary = train_model(DocumentClassifier(model, cfg.chunk_pool), member_train,
                                               train_batches, val_batches, BatchCollate(tok.pad_id),
                                               multi_label_metrics if multi else single_label_metrics)
        if on_main:
            save_trained(wrapped.model, member_dir, recipe, tok)
            if cfg.ensemble > 1:
                shared.write_member_info(member_dir, member_recipe, pretrained, batch_seed=cfg.seed + k)
                device = next(wrapped.parameters()).device
                wrapped.cpu()  # scored once every member is trained
            members.append((wrapped, result, summary, recipe.model.seed + k))
    if not on_main:  # under torchrun the main rank scores, fits the baselines and writes the rest
        return None
    y = {s: data[s].label_matrix() for s in ("train", "val", "test")}
    lengths = word_counts(tables["test"])
    edges = tuple(cfg.length_edges)
    main = method_name(recipe, pretrained)
    ensemble = None
    if cfg.ensemble == 1:
        wrapped, result, summary, _ = members[0]
        scores = {s: predict_scores(wrapped, data[s], batch, max_tokens) for s in ("val", "test")}
        if multi:
            scores = {s: sigmoid(v) for s, v in scores.items()}
        metrics, thresholds = model_metrics(y, scores["val"], scores["test"], names, multi, lengths, edges)
        test_probs = scores["test"] if multi else probabilities(scores["test"], multi=False)
        test = {main: metrics}
        training = training_summary(result)
    else:
        logits = []
        for wrapped, *_ in members:
            wrapped.to(device)
            logits.append({s: predict_scores(wrapped, data[s], batch, max_tokens) for s in ("val", "test")})
            wrapped.cpu()
        seeds = [m[3] for m in members]
        records = [{"seed": seed, "batch_seed": cfg.seed + k, "dir": f"member-{k}"} for k, seed in enumerate(seeds)]
        test, thresholds, ensemble, test_probs = score_ensemble(logits, y, names, multi, lengths, edges, main, records)
        training = shared.training_record([training_summary(m[1]) for m in members], seeds)
        summary = members[0][2]
    write_test_predictions(run_dir, tables["test"], names, test_probs, multi, thresholds)
    if multi:
        atomic_write_text(run_dir / "thresholds.json", json.dumps(thresholds.tolist()) + "\n")  # for predict / eval
    if recipe.eval.baselines:
        domain_run.announce_baselines(["TF-IDF + linear SVM", "TF-IDF + logistic regression"])
        base = run_baselines(tables["train"].texts, y["train"], tables["test"].texts, y["test"], names,
                             val_texts=tables["val"].texts, val_y=y["val"], test_lengths=lengths, length_edges=edges,
                             seed=cfg.seed)
        test.update({{"tfidf_svm": "TF-IDF + linear SVM", "tfidf_logreg": "TF-IDF + logistic regression"}[k]: v
                     for k, v in base.items()})
    if not multi:
        members_only = {m["name"] for m in ensemble["members"]} if ensemble else set()
        for name, m in test.items():
            if name not in members_only:
                save_confusion_matrix(m["confusion_matrix"], names, run_dir / "plots" / f"confusion_{slug(name)}.png",
                                      title=f"{name}: test confusion matrix")
    out = {"task": "classify", "multi_label": multi, "labels": names, "test": test,
           "sizes": {s: len(d) for s, d in data.items()},
           "length_handling": {s: dataclasses.asdict(d.report) | {"unseen_labels": dict(d.report.unseen_labels)}
                               for s, d in data.items()},
           "load_reports": {s: str(t.report) for s, t in tables.items()},
           "data": {"source": cfg.describe(), "split": loaded.how, "notes": loaded.notes},
           "training": training, "summary": summary, "model_notes": model_notes,
           "train_lengths": length_range(train_ds.raw_lengths)}
    if ensemble:
        out["ensemble"] = ensemble
    return out


def run_pretrain_text(recipe, run_dir: Path, pretrained: str | None) -> dict:
    if pretrained:
        raise ValueError("pretrain_text trains a new model: set model.pretrained=null")
    if recipe.model.config.get("bidirectional"):
        raise ValueError("pretrain_text trains a causal (next-byte) LM, which a bidirectional model would read off "
                         "its input; set model.config.bidirectional=false (masked-LM pretraining exists for DNA only: "
                         "genomics/pretrain_dna)")
    cfg = recipe.data
    loaded = load_data(dataclasses.replace(cfg, max_train=None, max_eval=None), recipe.source)
    tables = loaded.tables
    if domain_run.is_main_process():
        loaded.write(run_dir)
    tok = make_tokenizer(cfg)
    length = cfg.max_length or 4096
    # training-split texts only; the LM's validation windows are a held-out slice of them
    windows = lm_windows(tables["train"].texts, tok, length)
    order = np.random.default_rng(cfg.seed).permutation(len(windows))
    n_val = max(1, int(round(cfg.lm_val_fraction * len(windows))))
    val = [windows[i] for i in order[:n_val]]
    train_windows = [windows[i] for i in order[n_val:]][: cfg.max_train]
    test = lm_windows(tables["test"].texts, tok, length, max_windows=cfg.max_eval or 200)
    torch.manual_seed(recipe.model.seed)
    model = MambaForTask(new_config(recipe, tok))
    if domain_run.is_main_process():
        record_model(recipe, run_dir, model.config, [])
    train_cfg = dataclasses.replace(recipe.train, metric_for_best="loss")
    model, result, summary = train_model(model, train_cfg, train_windows, val, collate_lm(tok.pad_id), None)
    if not domain_run.is_main_process():
        return None
    save_pretrained(model, run_dir / "model", meta={"recipe": recipe.name, "objective": "causal LM",
                                                     "tokenizer": "ByteTokenizer" if cfg.tokenizer == "byte"
                                                     else cfg.tokenizer, "trained_on": "training split only"})
    save_tokenizer(tok, run_dir / "model")
    nats = lm_nats_per_token(model, test, tok.pad_id)
    counts = np.bincount(torch.cat(train_windows).numpy(), minlength=tok.vocab_size) + 1.0
    unigram = -np.log(counts / counts.sum())[torch.cat(test).numpy()].mean()
    unit = "byte" if cfg.tokenizer == "byte" else "token"
    metrics = {"mamba LM": nats, "unigram (training counts)": float(unigram)}
    return {"task": "pretrain_text",
            "test": {k: {f"nats_per_{unit}": v, f"bits_per_{unit}": v / np.log(2)} for k, v in metrics.items()},
            "sizes": {"train_windows": len(train_windows), "val_windows": len(val), "test_windows": len(test),
                      "window": length},
            "data": {"source": cfg.describe(), "split": loaded.how, "notes": loaded.notes},
            "training": training_summary(result), "summary": summary, "model_dir": str(run_dir / "model"),
            "parameters": sum(p.numel() for p in model.parameters())}


def record_model(recipe, run_dir: Path, built, notes: list[str]) -> None:
    """config.yaml with ``model.config`` as built (the pretrained model's shape, the tokenizer's vocabulary)
    and the recipe's keys the model did not use, which are also printed."""
    save_resolved(recipe, run_dir, built=built, notes=notes)
    for note in notes:
        print(f"model: {note}", flush=True)


# -- entry point ---------------------------------------------------------------------------------

RUNNERS = {"classify": run_classify, "pretrain_text": run_pretrain_text}


def run(recipe) -> Path:
    """Runs the recipe's task and writes the run folder; returns it."""
    return domain_run.run_task(recipe, RUNNERS, resolve_pretrained(recipe.model.pretrained), write_run_report)
