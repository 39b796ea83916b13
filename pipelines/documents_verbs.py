"""``mambatune eval / predict / export`` on a finished documents run.

What a run leaves and what the verbs rebuild from it: ``classify`` saves ``labels.json``,
``thresholds.json`` (multi-label: the per-class thresholds tuned on the validation split) and
``model/`` (full) or ``adapter/`` on ``base/`` (from scratch) or on the pretrained base
(``results.json`` ``base_model``); ``pretrain_text`` saves ``model/``. The tokenizer, ``max_length``,
``overflow`` (truncate / chunk + pooling) and batching are the recipe's, as in the run.

``predict`` reads a folder of ``.txt`` / ``.md`` files (recursively; id = the relative path), one
``.txt`` / ``.md`` file (one document), or a table (JSON lines / CSV / TSV / parquet / JSON, ``.gz`` too)
with the recipe's text column (id = the recipe's ``data.id_column`` or an ``id`` column, else the file row). Every document is one output row; an empty
one keeps its row with a ``note`` and no prediction.

An ensemble run (``data.ensemble`` > 1, or made by ``mambatune ensemble``) holds its classifiers in
``member-<k>/`` (each with ``member.json``: its model seed and base model); ``eval`` and ``predict``
average the members' probabilities (softmax; multi-label: sigmoid, then the ensemble's thresholds),
``export`` writes each member to ``out/member-<k>/`` and an ``export.json`` that names the ensemble.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from mambatune.core import peft
from mambatune.core.checkpoints import load_pretrained
from mambatune.core.training.distributed import pick_device
from mambatune.domains.documents import DocumentDataset, DocumentTable, LabelVocabulary, LoadReport
from mambatune.domains.documents.metrics import classification_metrics, multilabel_metrics
from mambatune.domains import tables
from mambatune.domains.documents.tokenizer_file import check_tokenizer, save_tokenizer
from mambatune.domains.documents.training import DocumentClassifier, lm_windows, predict_scores

from . import documents as d
from . import domain_run
from . import ensemble_runs as shared

TEXT_SUFFIXES = (".txt", ".md", ".text")


# -- the run's models ----------------------------------------------------------------------------

def open_run(run_dir):
    recipe, results = domain_run.open_run(run_dir, "documents")
    return Path(run_dir), recipe, results


def load_classifier(run_dir: Path, recipe, results: dict):
    """(DocumentClassifier, tokenizer, label names, multi_label) of a classify run (one classifier)."""
    tok, names, multi = classifier_info(run_dir, recipe, results)
    return load_model(run_dir, recipe, results.get("base_model"), tok, names, multi), tok, names, multi


def classifier_info(run_dir: Path, recipe, results: dict) -> tuple:
    """(tokenizer, label names, multi_label) of a classify run; the recipe's tokenizer must be the one saved with
    the run's model (its tokenizer.json, where the run wrote one)."""
    tok = d.make_tokenizer(recipe.data)
    for folder in (run_dir / "model", run_dir / "adapter", run_dir / "member-0" / "model", run_dir / "member-0" / "adapter"):
        check_tokenizer(tok, folder)
    return tok, json.loads((run_dir / "labels.json").read_text()), bool(results.get("multi_label"))


def load_model(folder: Path, recipe, base_model: str | None, tok, names: list[str], multi: bool):
    """The DocumentClassifier saved in ``folder`` (a run's top, or an ensemble's ``member-<k>/``):
    ``model/``, or ``adapter/`` on ``base/`` or on the pretrained ``base_model`` with the recipe's seeded head."""
    if (folder / "model").is_dir():
        model = load_pretrained(folder / "model")
    elif (folder / "adapter").is_dir():
        if (folder / "base").is_dir():
            model = load_pretrained(folder / "base")
        else:  # the pretrained base with the run's seeded head, as the run built it
            model = d.build_classifier(recipe, tok, len(names), multi, None, base_model)
        peft.load_adapter(model, folder / "adapter")
    else:
        raise FileNotFoundError(f"{folder} has neither model/ nor adapter/: the run did not save a model")
    wrapped = DocumentClassifier(model, recipe.data.chunk_pool).to(pick_device(recipe.train.device))
    return wrapped.eval()


# -- ensembles (data.ensemble > 1, or `mambatune ensemble`): member-<k>/ folders -----------------

def member_dirs(run_dir: Path, recipe) -> list[Path]:
    """An ensemble run's ``member-0`` .. ``member-<K-1>`` folders; [] for a run of one classifier."""
    return shared.member_dirs(run_dir, recipe, applies=recipe.data.task == "classify")


def member_model(member_dir: Path, k: int, recipe, results: dict) -> tuple:
    """(recipe with the member's model section, its base model folder) of ``member-<k>/``."""
    return shared.member_model(member_dir, k, recipe, results)


def member_probabilities(run_dir: Path, recipe, results: dict, data) -> list[np.ndarray]:
    """Each classifier's probabilities (softmax; multi-label: sigmoid) on ``data``: one per member of an
    ensemble, one for a single run. Members are loaded one at a time."""
    tok, names, multi = classifier_info(run_dir, recipe, results)
    out = []
    for k, folder in enumerate(member_dirs(run_dir, recipe) or [run_dir]):
        member_recipe, base = member_model(folder, k, recipe, results) if folder != run_dir else \
            (recipe, results.get("base_model"))
        wrapped = load_model(folder, member_recipe, base, tok, names, multi)
        logits = predict_scores(wrapped, data, recipe.train.batch_size, recipe.data.max_tokens_per_batch) \
            if data is not None else np.zeros((0, len(names)))
        out.append(d.probabilities(logits, multi))
        del wrapped
    return out


def thresholds_of(run_dir: Path, results: dict) -> list[float] | None:
    """The per-class thresholds the run tuned on its validation split (multi-label runs)."""
    if (run_dir / "thresholds.json").is_file():
        return json.loads((run_dir / "thresholds.json").read_text())
    return next(iter(results["test"].values())).get("thresholds")


def load_lm(run_dir: Path, recipe):
    if not (run_dir / "model").is_dir():
        raise FileNotFoundError(f"{run_dir} has no model/: the run did not save its language model")
    return load_pretrained(run_dir / "model").to(pick_device(recipe.train.device)).eval()


def lm_split_windows(recipe, split: str, tok) -> list:
    """The windows the run scored (test) or trained / validated on (train / val), rebuilt the same way."""
    cfg = recipe.data
    tables = d.load_splits(dataclasses.replace(cfg, max_train=None, max_eval=None), recipe.source)
    length = cfg.max_length or 4096
    if split == "test":
        return lm_windows(tables["test"].texts, tok, length, max_windows=cfg.max_eval or 200)
    windows = lm_windows(tables["train"].texts, tok, length)
    order = np.random.default_rng(cfg.seed).permutation(len(windows))
    n_val = max(1, int(round(cfg.lm_val_fraction * len(windows))))
    picked = order[:n_val] if split == "val" else order[n_val:]
    out = [windows[i] for i in picked]
    return out if split == "val" else out[: cfg.max_train]


# -- eval ----------------------------------------------------------------------------------------

def evaluate(run_dir, split: str | None = None) -> dict:
    """The run's model rescored on ``split`` with the run's metric functions (and, multi-label, its
    tuned thresholds); for ``pretrain_text`` the LM loss in bits per byte (or token)."""
    run_dir, recipe, results = open_run(run_dir)
    split = domain_run.check_split(split, recipe)
    cfg = recipe.data
    name = next(iter(results["test"]))
    if cfg.task == "pretrain_text":
        tok = d.make_tokenizer(cfg)
        windows = lm_split_windows(recipe, split, tok)
        nats = d.lm_nats_per_token(load_lm(run_dir, recipe), windows, tok.pad_id)
        unit = "byte" if cfg.tokenizer == "byte" else "token"
        return {"task": cfg.task, "split": split, "model": name, "examples": len(windows),
                "metrics": {f"nats_per_{unit}": nats, f"bits_per_{unit}": nats / np.log(2)}}
    tok, names, multi = classifier_info(run_dir, recipe, results)
    tables = d.load_splits(cfg, recipe.source)
    vocab = LabelVocabulary.from_table(tables["train"])
    data = DocumentDataset(tables[split], tok, vocab=vocab, max_length=cfg.max_length, overflow=cfg.overflow,
                           stride=cfg.chunk_stride, unseen="error" if split == "train" else cfg.unseen_labels)
    members = member_dirs(run_dir, recipe)
    if members:  # an ensemble: the mean of its members' probabilities
        scores = np.mean(member_probabilities(run_dir, recipe, results, data), axis=0)
    else:
        scores = predict_scores(load_classifier(run_dir, recipe, results)[0], data, recipe.train.batch_size,
                                cfg.max_tokens_per_batch)
        scores = d.sigmoid(scores) if multi else scores
    y, lengths, edges = data.label_matrix(), d.word_counts(tables[split]), tuple(cfg.length_edges)
    if multi:
        metrics = multilabel_metrics(y, scores, names, thresholds=thresholds_of(run_dir, results),
                                     lengths=lengths, length_edges=edges)
    else:
        metrics = classification_metrics(y, scores.argmax(1), names, lengths=lengths, length_edges=edges,
                                         scores=scores)
    out = {"task": cfg.task, "split": split, "model": name, "examples": len(data), "metrics": metrics}
    return out | ({"members": len(members)} if members else {})


# -- predict -------------------------------------------------------------------------------------

@dataclass
class DocumentInputs:
    ids: list[str]
    texts: list[str]
    counts: Counter = field(default_factory=Counter)


def read_inputs(source: str, recipe) -> DocumentInputs:
    """Documents from a folder of text files, one text file, or a table with the recipe's text column."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise ValueError(f"{path} has no {' / '.join(TEXT_SUFFIXES)} files")
        out = DocumentInputs([str(f.relative_to(path)) for f in files], [])
        for f in files:
            text, n_bad = decode_text(f.read_bytes())
            out.counts["non_utf8_documents"] += n_bad > 0
            out.texts.append(text)
        return out
    if not path.is_file():
        raise FileNotFoundError(f"input {source} not found; documents predict reads a folder of text files, a "
                                ".txt file, or a JSONL / CSV / TSV / parquet table with a text column")
    if path.suffix.lower() in TEXT_SUFFIXES:
        return DocumentInputs([path.name], [decode_text(path.read_bytes())[0]])
    cfg = recipe.data
    frame = tables.read_table(path, encoding=cfg.encoding)  # any table format, .gz too; errors name file and row
    column = cfg.text_column if cfg.text_column in frame.columns else "text"
    tables.require_columns(frame, {"data.text_column": column}, f"predict input {path}")
    text = pl.col(column)
    if isinstance(frame.schema[column], (pl.List, pl.Array)):  # paragraphs, joined as the run's loader does
        text = text.list.join("\n\n")
    texts = frame.select(text.cast(pl.String))[column].to_list()
    id_column = next((c for c in (cfg.id_column, "id") if c and c in frame.columns), None)
    ids = [str(v) for v in frame[id_column].to_list()] if id_column else [str(r) for r in frame[tables.ROW].to_list()]
    return DocumentInputs(ids, [t or "" for t in texts])


def decode_text(data: bytes) -> tuple[str, int]:
    from mambatune.domains.documents.data import decode_utf8
    return decode_utf8(data, "replace")


def length_note(tokens: int, cfg) -> str:
    if cfg.max_length is None or tokens <= cfg.max_length:
        return ""
    if cfg.overflow == "chunk":
        return f"{tokens} tokens cut into chunks of {cfg.max_length} (features pooled by {cfg.chunk_pool})"
    return f"truncated to {cfg.max_length} of {tokens} tokens"


def predict(run_dir, inputs: DocumentInputs) -> list[dict]:
    """One row per document: id, tokens, the predicted label (multi-label: every label over its tuned
    threshold, joined by ``;``), a probability per label, and a note (truncation, chunks, empty)."""
    run_dir, recipe, results = open_run(run_dir)
    cfg = recipe.data
    ok = [i for i, t in enumerate(inputs.texts) if t.strip()]
    inputs.counts.update(documents=len(inputs.texts), empty_not_classified=len(inputs.texts) - len(ok))
    domain_run.report_skipped("predict documents", dict(inputs.counts))
    if cfg.task == "pretrain_text":
        return predict_lm(run_dir, recipe, inputs, ok)
    tok, names, multi = classifier_info(run_dir, recipe, results)
    label = pl.Series("label", [[] for _ in ok], dtype=pl.List(pl.String)) if multi else \
        pl.Series("label", [names[0]] * len(ok), dtype=pl.String)  # placeholders: the dataset wants labels
    table = DocumentTable(pl.DataFrame({"text": [inputs.texts[i] for i in ok]}).with_columns(label), multi,
                          LoadReport("predict"))
    data = DocumentDataset(table, tok, vocab=LabelVocabulary(names), max_length=cfg.max_length,
                           overflow=cfg.overflow, stride=cfg.chunk_stride, unseen="map") if ok else None
    # one classifier's probabilities, or the mean of an ensemble's members'
    probs = np.mean(member_probabilities(run_dir, recipe, results, data), axis=0)
    if multi:
        thresholds = np.asarray(thresholds_of(run_dir, results) or [0.5] * len(names))
    rows = [{"id": i, "tokens": 0, "label": "", **{f"p_{n}": "" for n in names},
             "note": "empty document: not classified"} for i in inputs.ids]
    for j, i in enumerate(ok):
        tokens = int(data.raw_lengths[j])
        predicted = ";".join(n for n, p, t in zip(names, probs[j], thresholds) if p >= t) if multi \
            else names[int(probs[j].argmax())]
        rows[i].update({"tokens": tokens, "label": predicted, **{f"p_{n}": round(float(p), 6)
                                                                  for n, p in zip(names, probs[j])},
                        "note": length_note(tokens, cfg)})
    return rows


def predict_lm(run_dir: Path, recipe, inputs: DocumentInputs, ok: list[int]) -> list[dict]:
    """Per document: the LM's loss on its windows of ``max_length`` tokens, in bits per byte (or token)."""
    cfg = recipe.data
    tok = d.make_tokenizer(cfg)
    model = load_lm(run_dir, recipe)
    unit = "byte" if cfg.tokenizer == "byte" else "token"
    rows = [{"id": i, "tokens": 0, f"bits_per_{unit}": "", "note": "empty document: not scored"} for i in inputs.ids]
    for i in ok:
        windows = lm_windows([inputs.texts[i]], tok, cfg.max_length or 4096, min_length=2)
        if not windows:
            rows[i]["note"] = "shorter than two tokens: not scored"
            continue
        nats = d.lm_nats_per_token(model, windows, tok.pad_id)
        rows[i].update({"tokens": sum(len(w) for w in windows), f"bits_per_{unit}": round(nats / np.log(2), 6),
                        "note": ""})
    return rows


# -- export --------------------------------------------------------------------------------------

def export(run_dir, out) -> Path:
    """The run's trained model, LoRA merged: ``hf/`` (the backbone, Hugging Face Mamba format), ``head/``,
    ``model/`` (our format) and ``export.json`` (labels, thresholds, tokenizer and length settings);
    a tokenizer file is copied beside them. An ensemble exports each member that way to ``out/member-<k>/``, and
    ``out/export.json`` says it is an ensemble of K whose prediction is the mean of the members'
    probabilities (the thresholds there are the ensemble's, tuned on the averaged probabilities)."""
    run_dir, recipe, results = open_run(run_dir)
    cfg = recipe.data
    meta = {"run_dir": str(run_dir), "recipe": recipe.name, "task": cfg.task, "tokenizer": cfg.tokenizer,
            "max_length": cfg.max_length, "overflow": cfg.overflow, "chunk_pool": cfg.chunk_pool}
    members = member_dirs(run_dir, recipe)
    if members:
        export_ensemble(run_dir, recipe, results, members, Path(out), meta)
    elif cfg.task == "pretrain_text":
        domain_run.export_model(load_lm(run_dir, recipe), out, meta)
    else:
        wrapped, _, names, multi = load_classifier(run_dir, recipe, results)
        meta.update(labels=names, multi_label=multi, thresholds=thresholds_of(run_dir, results) if multi else None)
        domain_run.export_model(wrapped.model, out, meta)
    if cfg.tokenizer != "byte" and Path(cfg.tokenizer).is_file():
        shutil.copyfile(cfg.tokenizer, Path(out) / "tokenizer.json")
    tok = d.make_tokenizer(cfg)
    for folder in [Path(out) / "model", *sorted(Path(out).glob("member-*/model"))]:
        if folder.is_dir():  # the exported model keeps the ids it was trained on
            save_tokenizer(tok, folder)
    return Path(out)


def export_ensemble(run_dir: Path, recipe, results: dict, members: list[Path], out: Path, meta: dict) -> None:
    from mambatune.core.atomic import atomic_write_json

    tok, names, multi = classifier_info(run_dir, recipe, results)
    combine = "mean of the members' " + ("sigmoid probabilities, then the thresholds below" if multi else
                                        "softmax probabilities, then its argmax")
    for k, folder in enumerate(members):
        member_recipe, base = member_model(folder, k, recipe, results)
        model = load_model(folder, member_recipe, base, tok, names, multi).model
        domain_run.export_model(model, out / folder.name, meta | {
            "labels": names, "multi_label": multi, "thresholds": None, "ensemble_member": k,
            "note": f"member {k} of an ensemble of {len(members)}: see ../export.json for how they combine"})
    atomic_write_json(out / "export.json", meta | {
        "exported_from": str(run_dir), "ensemble": len(members), "members": [p.name for p in members],
        "combine": combine, "labels": names, "multi_label": multi,
        "thresholds": thresholds_of(run_dir, results) if multi else None, "written": [p.name for p in members]})
