"""``mambatune eval / predict / export`` on a finished documents run.

What a run leaves and what the verbs rebuild from it: ``classify`` saves ``labels.json``,
``thresholds.json`` (multi-label: the per-class thresholds tuned on the validation split) and
``model/`` (full) or ``adapter/`` on ``base/`` (from scratch) or on the pretrained base
(``results.json`` ``base_model``); ``pretrain_text`` saves ``model/``. The tokenizer, ``max_length``,
``overflow`` (truncate / chunk + pooling) and batching are the recipe's, as in the run.

``predict`` reads a folder of ``.txt`` / ``.md`` files (recursively; id = the relative path), one
``.txt`` / ``.md`` file (one document), or a table (JSON lines / CSV / TSV / parquet / JSON, ``.gz`` too)
with a text column and an id column (options, else the run's own ``data.text_column`` / ``data.id_column``,
else ``text`` / ``id``; no id column: the file row). Every input is one output row, in input order: an empty
one keeps its row with a ``note`` and no prediction; one far outside the training lengths is scored and
flagged (``flag``: cut to ``max_length``, or far shorter / longer than the training documents).

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

from .. import domain_run
from .. import ensemble_runs as shared
from .data import load_splits, make_tokenizer
from .models import build_classifier
from .scores import lm_nats_per_token, probabilities, sigmoid, word_counts

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
    tok = make_tokenizer(recipe.data)
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
            model = build_classifier(recipe, tok, len(names), multi, None, base_model)
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
        out.append(probabilities(logits, multi))
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
    tables = load_splits(dataclasses.replace(cfg, max_train=None, max_eval=None), recipe.source)
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

@domain_run.head_from_the_run()
def evaluate(run_dir, split: str | None = None) -> dict:
    """The run's model rescored on ``split`` with the run's metric functions (and, multi-label, its
    tuned thresholds); for ``pretrain_text`` the LM loss in bits per byte (or token)."""
    run_dir, recipe, results = open_run(run_dir)
    split = domain_run.check_split(split, recipe)
    cfg = recipe.data
    name = next(iter(results["test"]))
    if cfg.task == "pretrain_text":
        tok = make_tokenizer(cfg)
        windows = lm_split_windows(recipe, split, tok)
        nats = lm_nats_per_token(load_lm(run_dir, recipe), windows, tok.pad_id)
        unit = "byte" if cfg.tokenizer == "byte" else "token"
        return {"task": cfg.task, "split": split, "model": name, "examples": len(windows),
                "metrics": {f"nats_per_{unit}": nats, f"bits_per_{unit}": nats / np.log(2)}}
    tok, names, multi = classifier_info(run_dir, recipe, results)
    tables = load_splits(cfg, recipe.source)
    vocab = LabelVocabulary.from_table(tables["train"])
    data = DocumentDataset(tables[split], tok, vocab=vocab, max_length=cfg.max_length, overflow=cfg.overflow,
                           stride=cfg.chunk_stride, unseen="error" if split == "train" else cfg.unseen_labels)
    members = member_dirs(run_dir, recipe)
    if members:  # an ensemble: the mean of its members' probabilities
        scores = np.mean(member_probabilities(run_dir, recipe, results, data), axis=0)
    else:
        scores = predict_scores(load_classifier(run_dir, recipe, results)[0], data, recipe.train.batch_size,
                                cfg.max_tokens_per_batch)
        scores = sigmoid(scores) if multi else scores
    y, lengths, edges = data.label_matrix(), word_counts(tables[split]), tuple(cfg.length_edges)
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
    """What ``predict`` scores: an id and a text per input, a note per input (what was changed, e.g. a missing
    id), and counts for stderr."""

    ids: list[str]
    texts: list[str]
    counts: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.notes = self.notes or [""] * len(self.ids)


def read_inputs(source: str, recipe, text_column: str | None = None, id_column: str | None = None) -> DocumentInputs:
    """Documents from a folder of text files, one text file, or a table (CSV / TSV / JSON lines / parquet /
    JSON, ``.gz`` too) with a text column and an id column: ``text_column`` / ``id_column`` when given (must
    exist), else the run's own (``data.text_column`` / ``data.id_column``) or ``text`` / ``id``. Every row is
    an input; a row without text keeps its place (``predict`` notes it), one without an id is named by its
    row number."""
    path = Path(source)
    if path.is_dir():
        every = sorted(p for p in path.rglob("*") if p.is_file())
        files = [p for p in every if p.suffix.lower() in TEXT_SUFFIXES]
        if not files:
            raise ValueError(f"{path} has no {' / '.join(TEXT_SUFFIXES)} files")
        out = DocumentInputs([f.relative_to(path).as_posix() for f in files], [])
        out.counts[f"other_files_not_read (not {' / '.join(TEXT_SUFFIXES)})"] = len(every) - len(files)
        for f in files:
            text, n_bad = decode_text(f.read_bytes())
            out.counts["non_utf8_documents"] += n_bad > 0
            out.texts.append(text)
            out.notes.append(f"{n_bad} invalid UTF-8 byte sequence(s) replaced" if n_bad else "")
        return out
    if not path.is_file():
        raise FileNotFoundError(f"input {source} not found; documents predict reads a folder of text files, a "
                                ".txt file, or a JSONL / CSV / TSV / parquet table with a text column")
    if path.suffix.lower() in TEXT_SUFFIXES:
        text, n_bad = decode_text(path.read_bytes())
        return DocumentInputs([path.name], [text], notes=[f"{n_bad} invalid UTF-8 byte sequence(s) replaced"
                                                          if n_bad else ""])
    return read_table_inputs(path, recipe.data, text_column, id_column)


def read_table_inputs(path: Path, cfg, text_column: str | None, id_column: str | None) -> DocumentInputs:
    """A table of documents (see :func:`read_inputs`); errors name the file and its columns."""
    frame = tables.read_table(path, encoding=cfg.encoding)  # any table format, .gz too; errors name file and row
    where = f"predict input {path}"
    present = [c for c in frame.columns if c not in (tables.FILE, tables.ROW)]
    if text_column is not None:
        tables.require_columns(frame, {"the text column (--text-column)": text_column}, where)
        column = text_column
    else:
        column = next((c for c in (cfg.text_column, "text") if c in frame.columns), None)
        if column is None:
            raise tables.TableError(f"{where}: no text column: the run read {cfg.text_column!r} and there is no "
                                    f"'text' column either; its columns are {', '.join(present)}. Name the column "
                                    "of the documents (--text-column), or rename it")
    if id_column is not None:
        tables.require_columns(frame, {"the id column (--id-column)": id_column}, where)
    else:
        id_column = next((c for c in (cfg.id_column, "id") if c and c in frame.columns and c != column), None)
    text = pl.col(column)
    if isinstance(frame.schema[column], (pl.List, pl.Array)):  # paragraphs, joined as the run's loader does
        text = text.list.join("\n\n")
    texts = frame.select(text.cast(pl.String))[column].to_list()
    rows = [str(r) for r in frame[tables.ROW].to_list()]
    out = DocumentInputs(rows, [t or "" for t in texts])
    if id_column is not None:
        for i, v in enumerate(frame[id_column].to_list()):
            if v is None or not str(v).strip():
                out.notes[i] = f"no {id_column!r}: named by its row ({tables.where_row(frame, i)})"
                out.counts["rows_without_id"] += 1
            else:
                out.ids[i] = str(v).strip()
    return out


def decode_text(data: bytes) -> tuple[str, int]:
    from mambatune.domains.documents.data import decode_utf8
    return decode_utf8(data, "replace")


FAR = 2  # an input is flagged when its length is more than FAR times outside the training lengths' 5-95% range


def length_flag(tokens: int, cfg, trained: dict | None) -> str:
    """Why an input is far from what the model was trained on: longer than ``max_length`` (cut: the model reads
    its start only), or, against the training documents' lengths (``results.json`` ``train_lengths``, tokens as
    the model read them), more than :data:`FAR` times shorter than the 5th or longer than the 95th percentile."""
    if cfg.max_length is not None and tokens > cfg.max_length and cfg.overflow == "truncate":
        return f"long: {tokens:,} tokens, cut to {cfg.max_length:,}"
    if not trained:
        return ""
    cap = cfg.max_length if cfg.overflow == "truncate" and cfg.max_length is not None else None
    low, high = (min(trained[k], cap) if cap else trained[k] for k in ("p05", "p95"))
    if tokens * FAR < low:
        return f"short: {tokens:,} tokens; 95% of training documents had at least {low:,}"
    if tokens > FAR * high:
        return f"long: {tokens:,} tokens; 95% of training documents had at most {high:,}"
    return ""


def length_note(tokens: int, cfg) -> str:
    if cfg.max_length is None or tokens <= cfg.max_length or cfg.overflow != "chunk":
        return ""
    return f"{tokens:,} tokens cut into chunks of {cfg.max_length} (features pooled by {cfg.chunk_pool})"


@domain_run.head_from_the_run()
def predict(run_dir, inputs: DocumentInputs) -> list[dict]:
    """One row per input, in input order: id, tokens, the predicted label (multi-label: every label over its
    tuned threshold, joined by ``;``), a probability per label, a ``flag`` for an input far outside the
    training lengths (:func:`length_flag`), and a ``note`` (not classified and why, chunks, changes)."""
    run_dir, recipe, results = open_run(run_dir)
    cfg = recipe.data
    ok = [i for i, t in enumerate(inputs.texts) if t.strip()]
    inputs.counts.update(documents=len(inputs.texts), empty_not_classified=len(inputs.texts) - len(ok))
    if cfg.task == "pretrain_text":
        domain_run.report_skipped("predict documents", dict(inputs.counts))
        return predict_lm(run_dir, recipe, inputs, ok)
    tok, names, multi = classifier_info(run_dir, recipe, results)
    label = pl.Series("label", [[] for _ in ok], dtype=pl.List(pl.String)) if multi else \
        pl.Series("label", [names[0]] * len(ok), dtype=pl.String)  # placeholders: the dataset wants labels
    table = DocumentTable(pl.DataFrame({"text": [inputs.texts[i] for i in ok]}, schema={"text": pl.String})
                          .with_columns(label), multi, LoadReport("predict"))
    data = DocumentDataset(table, tok, vocab=LabelVocabulary(names), max_length=cfg.max_length,
                           overflow=cfg.overflow, stride=cfg.chunk_stride, unseen="map") if ok else None
    # one classifier's probabilities, or the mean of an ensemble's members'
    probs = np.mean(member_probabilities(run_dir, recipe, results, data), axis=0)
    if multi:
        thresholds = np.asarray(thresholds_of(run_dir, results) or [0.5] * len(names))
    rows = [{"id": i, "tokens": 0, "label": "", **{f"p_{n}": "" for n in names}, "flag": "",
             "note": join_notes("empty document: not classified", note)} for i, note in zip(inputs.ids, inputs.notes)]
    trained = results.get("train_lengths")
    for j, i in enumerate(ok):
        tokens = int(data.raw_lengths[j])
        predicted = ";".join(n for n, p, t in zip(names, probs[j], thresholds) if p >= t) if multi \
            else names[int(probs[j].argmax())]
        flag = length_flag(tokens, cfg, trained)
        inputs.counts["flagged_length"] += bool(flag)
        rows[i].update({"tokens": tokens, "label": predicted, **{f"p_{n}": round(float(p), 6)
                                                                  for n, p in zip(names, probs[j])},
                        "flag": flag, "note": join_notes(length_note(tokens, cfg), inputs.notes[i])})
    domain_run.report_skipped("predict documents", dict(inputs.counts))
    return rows


def join_notes(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def predict_lm(run_dir: Path, recipe, inputs: DocumentInputs, ok: list[int]) -> list[dict]:
    """Per document: the LM's loss on its windows of ``max_length`` tokens, in bits per byte (or token)."""
    cfg = recipe.data
    tok = make_tokenizer(cfg)
    model = load_lm(run_dir, recipe)
    unit = "byte" if cfg.tokenizer == "byte" else "token"
    rows = [{"id": i, "tokens": 0, f"bits_per_{unit}": "", "note": join_notes("empty document: not scored", note)}
            for i, note in zip(inputs.ids, inputs.notes)]
    for i in ok:
        windows = lm_windows([inputs.texts[i]], tok, cfg.max_length or 4096, min_length=2)
        if not windows:
            rows[i]["note"] = "shorter than two tokens: not scored"
            continue
        nats = lm_nats_per_token(model, windows, tok.pad_id)
        rows[i].update({"tokens": sum(len(w) for w in windows), f"bits_per_{unit}": round(nats / np.log(2), 6),
                        "note": inputs.notes[i]})
    return rows


# -- export --------------------------------------------------------------------------------------

@domain_run.head_from_the_run()
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
    tok = make_tokenizer(cfg)
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
