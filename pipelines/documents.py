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
by their mean probabilities (see ``documents_ensemble``, which also combines separate runs).
``mambatune eval / predict / export`` on it: see ``documents_verbs``.
"""
from __future__ import annotations

import dataclasses
import sys
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch

from mambatune.core import MambaConfig, MambaForTask, build_head
from mambatune.core import peft
from mambatune.core.atomic import atomic_write_text
from mambatune.core.checkpoints import load_pretrained, save_pretrained
from mambatune.domains.documents import DocumentDataset, class_weights
from mambatune.domains.tables import FILE, ROW
from mambatune.domains.documents.tokenizer_file import check_tokenizer, save_tokenizer
from mambatune.domains.documents.baselines import run_baselines
from mambatune.domains.documents.metrics import (
    classification_metrics, multilabel_metrics, save_confusion_matrix, tune_thresholds,
)
from mambatune.domains.documents.training import (
    BatchCollate, BucketedBatches, DocumentClassifier, collate_lm, lm_windows, predict_scores,
)

from . import domain_run
from . import ensemble_runs as shared
from .documents_data import TASKS, DataConfig, load_data, load_splits, make_tokenizer  # noqa: F401 (the pipeline's API)
from .domain_run import train_model

DEFAULT_TEXT_MODEL = "runs/pretrain_text/model"  # where `mambatune run documents/pretrain_text` leaves its model
# pretrained on a GPU by this project's recipe and shipped in the package (recipe and log beside it)
SHIPPED_TEXT_MODEL = Path(sys.modules["mambatune.domains.documents"].__file__).parent / "pretrained" / "text-mamba-140k"
BEHAVIOUR_KEYS = ("backend",)


def word_counts(table) -> np.ndarray:
    return np.array([len(t.split()) for t in table.texts], dtype=np.int64)


# -- models --------------------------------------------------------------------------------------

def resolve_pretrained(path: str | None) -> str | None:
    """``default``: $MAMBATUNE_TEXT_MODEL, else the shipped text model, else runs/pretrain_text/model."""
    return domain_run.resolve_pretrained(path, "MAMBATUNE_TEXT_MODEL", DEFAULT_TEXT_MODEL, "documents/pretrain_text", "text model",
                                      shipped=SHIPPED_TEXT_MODEL)


def behaviour_overrides(recipe) -> dict | None:
    return {k: v for k, v in recipe.model.config.items() if k in BEHAVIOUR_KEYS} or None


def new_config(recipe, tokenizer) -> MambaConfig:
    return MambaConfig.from_dict({**recipe.model.config, "vocab_size": tokenizer.vocab_size,
                                  "pad_token_id": tokenizer.pad_id})


def build_classifier(recipe, tokenizer, num_labels: int, multi_label: bool, weights, pretrained):
    torch.manual_seed(recipe.model.seed)
    spec = dict(recipe.model.head)
    spec["kind"] = "multilabel" if multi_label else "classification"
    spec.setdefault("num_labels", num_labels)
    if weights is not None:
        spec["pos_weight" if multi_label else "class_weights"] = [float(w) for w in weights]
    if pretrained:
        check_tokenizer(tokenizer, pretrained)
        model = load_pretrained(pretrained, head=spec, config_overrides=behaviour_overrides(recipe))
        if model.config.vocab_size < tokenizer.vocab_size:
            raise ValueError(f"the pretrained model's vocabulary ({model.config.vocab_size}) is smaller than the "
                             f"tokenizer's ({tokenizer.vocab_size}); use a model trained with this tokenizer")
        return model
    config = new_config(recipe, tokenizer)
    kind = spec.pop("kind")
    return MambaForTask(config, build_head(kind, config.d_model, **spec))


def method_name(recipe, pretrained) -> str:
    methods = "+".join(m.method for m in recipe.peft.methods) or "full"
    return f"mamba {'pretrained' if pretrained else 'from scratch'} ({methods})"


def single_label_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    from sklearn.metrics import f1_score
    pred, y = logits.argmax(-1).numpy(), labels.numpy()
    return {"accuracy": float((pred == y).mean()), "macro_f1": float(f1_score(y, pred, average="macro"))}


def multi_label_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    from sklearn.metrics import f1_score
    pred, y = (logits.numpy() >= 0).astype(int), labels.numpy().astype(int)
    return {"micro_f1": float(f1_score(y, pred, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0))}


# -- tasks ---------------------------------------------------------------------------------------

def run_classify(recipe, run_dir: Path, pretrained: str | None) -> dict:
    cfg = recipe.data
    loaded = load_data(cfg, recipe.source)
    tables = loaded.tables
    tok = make_tokenizer(cfg)
    length = dict(max_length=cfg.max_length, overflow=cfg.overflow, stride=cfg.chunk_stride)
    train_ds = DocumentDataset(tables["train"], tok, **length)
    multi = train_ds.multi_label
    if not multi and train_ds.num_labels < 2:
        raise ValueError("the training split has fewer than two labels; a classifier needs at least two")
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
        from .documents_ensemble import score_ensemble
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
           "training": training, "summary": summary}
    if ensemble:
        out["ensemble"] = ensemble
    return out


def model_metrics(y: dict, val: np.ndarray, test: np.ndarray, names: list[str], multi: bool, lengths, edges) -> tuple:
    """(test metrics, thresholds) of one model's or an ensemble's scores. Multi-label: ``val`` / ``test`` are
    probabilities and the per-class thresholds are tuned on ``val``; single-label: the argmax of ``test``
    (logits or probabilities) is the prediction and the thresholds are None."""
    if multi:
        thresholds = tune_thresholds(y["val"], val)
        return multilabel_metrics(y["test"], test, names, thresholds=thresholds, lengths=lengths,
                                  length_edges=edges), thresholds
    return classification_metrics(y["test"], test.argmax(1), names, lengths=lengths, length_edges=edges,
                                  scores=test), None


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


@torch.no_grad()
def lm_nats_per_token(model, windows: list[torch.Tensor], pad_id: int, batch_size: int = 8) -> float:
    model.eval()
    device = next(model.parameters()).device
    collate = collate_lm(pad_id)
    total, n = 0.0, 0
    for start in range(0, len(windows), batch_size):
        batch = {k: v.to(device) for k, v in collate(windows[start:start + batch_size]).items()}
        count = int(batch["attention_mask"][:, 1:].sum())
        total += float(model(**batch).loss) * count
        n += count
    return total / max(n, 1)


# -- outputs -------------------------------------------------------------------------------------

def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def probabilities(logits: np.ndarray, multi: bool) -> np.ndarray:
    """Per-class probabilities: sigmoid (multi-label) or softmax over the classes (single-label)."""
    if multi:
        return sigmoid(logits)
    if len(logits) == 0:
        return logits
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def document_ids(frame: pl.DataFrame) -> list[str]:
    """What names each document: the ``id`` column the loader made (``data.id_column``, an ``id`` column, or
    the file row), the licence key of the built-in data, else the row number (1-based)."""
    for column in ("id", "key"):
        if column in frame.columns:
            return [str(v) for v in frame[column].to_list()]
    return [str(i + 1) for i in range(frame.height)]


def write_test_predictions(run_dir: Path, table, names: list[str], probs: np.ndarray, multi: bool,
                           thresholds) -> None:
    """``predictions_test.csv``: one row per test document (its id, the file and row it came from when it
    came from a file, words, true and predicted label(s), whether they agree, a probability per label),
    for looking at what the model gets wrong. Multi-label: labels joined by ``;``, predicted = every
    label over its tuned threshold."""
    frame = table.frame
    if len(probs) != frame.height:
        raise ValueError(f"{len(probs)} predictions for {frame.height} test documents")
    if multi:
        cut = np.asarray(thresholds if thresholds is not None else [0.5] * len(names))
        chosen = [[n for n, p, t in zip(names, row, cut) if p >= t] for row in probs]
        true_sets = [sorted(map(str, v or [])) for v in frame["label"].to_list()]
        correct = [sorted(c) == t for c, t in zip(chosen, true_sets)]
        predicted, truth = [";".join(c) for c in chosen], [";".join(t) for t in true_sets]
    else:
        predicted = [names[int(i)] for i in probs.argmax(1)] if len(probs) else []
        truth = [str(v) for v in frame["label"].to_list()]
        correct = [a == b for a, b in zip(truth, predicted)]
    columns = {"id": document_ids(frame)}
    if FILE in frame.columns and ROW in frame.columns:
        columns |= {"file": frame[FILE].to_list(), "row": frame[ROW].to_list()}
    columns |= {"words": word_counts(table).tolist(), "label": truth, "predicted": predicted, "correct": correct}
    columns |= {f"p_{n}": np.round(probs[:, j], 6).tolist() for j, n in enumerate(names)}
    atomic_write_text(run_dir / "predictions_test.csv", pl.DataFrame(columns).write_csv())


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def save_trained(model, run_dir: Path, recipe, tok) -> None:
    """``model/`` (or ``adapter/``) with the tokenizer.json its ids come from."""
    folder = run_dir / ("adapter" if recipe.peft.methods else "model")
    if recipe.peft.methods:
        peft.save_adapter(model, folder)
    else:
        save_pretrained(model, folder, meta={"recipe": recipe.name})
    save_tokenizer(tok, folder)


def training_summary(result) -> dict | None:
    if result is None:
        return None
    return {"steps": result.steps, "best_step": result.best_step, "stopped_early": result.stopped_early,
            "seconds": result.seconds, "last_eval": result.last_eval}


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
    text = f"""# {recipe.name}

Recipe: `{recipe.source}` · task `{cfg.task}` · data {cfg.describe()} · base model:
`{domain_run.base_model_text(recipe, results)}` · method: {methods}
{split}
{body}

{tail}"""
    atomic_write_text(run_dir / "report.md", text)


def write_run_report(run_dir: Path, recipe, results: dict) -> None:
    """The report (see ``ensemble_runs.write_run_report``)."""
    shared.write_run_report(run_dir, recipe, results, write_report)


# -- entry points --------------------------------------------------------------------------------

RUNNERS = {"classify": run_classify, "pretrain_text": run_pretrain_text}


def run(recipe) -> Path:
    """Runs the recipe's task and writes the run folder; returns it."""
    return domain_run.run_task(recipe, RUNNERS, resolve_pretrained(recipe.model.pretrained), write_run_report)


# the CLI verbs on a finished run (eval, predict, export) live beside this module
evaluate, predict, export, read_inputs = domain_run.verbs_of("mambatune.pipelines.documents_verbs")
