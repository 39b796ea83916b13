"""Generic sequence classification over a user's table of (sequence or text, label).

Reads ``data.path`` (CSV / TSV / parquet / JSON lines, .gz, a folder or a glob; see
``domains.tables``), splits it by the shared data keys (``data_source``: a split column, a
test file, a seeded stratified ratio, or ``data.cv_folds`` K-fold), tokenizes bytes,
characters or DNA bases (a pretrained model's own ``tokenizer.json`` decides), trains a Mamba
classifier with the recipe's PEFT method through the shared fine-tune path, scores it
(accuracy, macro-F1; AUROC / AUPRC for two classes, one-vs-rest AUROC for more) next to
baselines fitted in the same run (majority class; character n-gram TF-IDF + logistic
regression) and writes the run folder::

    config.yaml  tokenizer.json  labels.json   what is needed to rebuild the model
    splits.csv   which file row went to which split
    base/        the initial weights of a model trained from scratch (PEFT runs)
    adapter/     the trained parameters (PEFT runs)  |  model/ (full fine-tuning)
    predictions_test.csv  id, true label, predicted label, every class's probability
    checkpoints/ metrics.jsonl plots/ report.md results.json

Inputs longer than ``data.max_length`` tokens are cut (``overflow: truncate``, counted in the
report) or refused (``overflow: error``, naming the row).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from mambatune.core import MambaConfig, MambaForTask, build_head
from mambatune.core import peft
from mambatune.core.atomic import atomic_write_text
from mambatune.core.checkpoints import load_pretrained, save_pretrained
from mambatune.core.training import Precision
from mambatune.domains.tables import (
    FILE, ROW, TableError, canonical_number, read_table, require_columns, to_labels, where_row,
)

from .. import domain_run
from ..data_source import DataSource, Splits, split_rows
from ..recipe import pretrained_overrides
from .text_tokenizer import TextTokenizer, for_checkpoint

PACKAGE_DATA = Path(__file__).parent.parent / "data"  # pipelines/data: the demo table
OVERFLOW = ("truncate", "error")


@dataclass
class DataConfig(DataSource):
    """path: the table (relative paths: the working folder, then the recipe's folder, then the package's data
    folder); text_column: the sequence or text; label_column: the class; id_column: an id carried into the
    predictions (null: the file's row number); tokenizer: byte | char | dna (null: the pretrained model's own,
    else byte); max_length: tokens per input; overflow: truncate (counted) | error. The split keys are
    ``DataSource``'s."""

    path: str | None = "license_snippets.csv"
    text_column: str = "text"
    label_column: str = "label"
    id_column: str | None = None
    tokenizer: str | None = None
    max_length: int = 256
    overflow: str = "truncate"
    val_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.path is None:
            raise ValueError("data.path is required: a CSV / TSV / parquet / JSON-lines file of texts and labels")
        if self.tokenizer not in (None, "byte", "char", "dna"):
            raise ValueError(f"tokenizer must be byte, char, dna or null (the pretrained model's own), got "
                             f"{self.tokenizer!r}")
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")
        if self.overflow not in OVERFLOW:
            raise ValueError(f"overflow must be one of {', '.join(OVERFLOW)}, got {self.overflow!r}")


# -- data ----------------------------------------------------------------------------------------

@dataclass
class Examples:
    """One split: texts, labels (strings) and the ids carried into predictions."""

    texts: list[str]
    labels: list[str]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def search_dirs(recipe_source: str | None) -> list[Path]:
    return ([Path(recipe_source).parent] if recipe_source else []) + [PACKAGE_DATA]


def load_splits(cfg: DataConfig, source: str | None = None) -> tuple[dict[str, Examples], Splits, list[str]]:
    """({split: Examples}, the Splits (for splits.csv and the report), notes on what was changed)."""
    dirs = search_dirs(source)
    table = read_table(cfg.path, encoding=cfg.encoding, search_dirs=dirs)
    where = f"data.path={cfg.path}"
    require_columns(table, {"data.text_column": cfg.text_column, "data.label_column": cfg.label_column,
                            "data.id_column": cfg.id_column}, where)
    test_table = None
    if cfg.test_path:
        test_table = read_table(cfg.test_path, encoding=cfg.encoding, search_dirs=dirs, key="data.test_path")
        require_columns(test_table, {"data.text_column": cfg.text_column, "data.label_column": cfg.label_column,
                                     "data.id_column": cfg.id_column}, f"data.test_path={cfg.test_path}")
        test_table = test_table.select(table.columns) if set(table.columns) <= set(test_table.columns) else test_table
    notes: list[str] = []
    for frame, name in ((table, where), (test_table, f"data.test_path={cfg.test_path}")):
        if frame is None:
            continue
        check_text_column(frame, cfg.text_column, name)
        if isinstance(frame.schema[cfg.label_column], (pl.List, pl.Array)):
            raise TableError(f"{name}: data.label_column {cfg.label_column!r} holds lists ({where_row(frame, 0)}: "
                             f"{frame[cfg.label_column].to_list()[0]!r}); the generic recipe gives each row one class: "
                             "give one label per row")
        labels, changed = to_labels(frame, cfg.label_column, where=name)
        check_class_labels(labels, frame, cfg.label_column, name)
        notes += changed
        if cfg.id_column:
            notes += check_ids(frame, cfg.id_column, name)
        texts = frame[cfg.text_column].to_list()
        empty = [i for i, t in enumerate(texts) if t is None or not str(t).strip()]
        if empty:
            raise TableError(f"{name}: {len(empty)} row(s) have an empty {cfg.text_column!r} (e.g. "
                             f"{where_row(frame, empty[0])}); fill them or remove those rows")
    splits = split_rows(table, cfg, label_column=cfg.label_column, test_df=test_table, where=where)
    out = {}
    for name, frame in splits.frames.items():
        labels, _ = to_labels(frame, cfg.label_column, where=where) if frame.height else ([], [])
        ids = ([str(v) for v in frame[cfg.id_column].to_list()] if cfg.id_column
               else [f"{f}:{r}" for f, r in zip(frame[FILE].to_list(), frame[ROW].to_list())])
        out[name] = Examples([str(t) for t in frame[cfg.text_column].to_list()], labels, ids)
    return out, splits, notes + splits.notes


def check_class_labels(labels: list[str], frame, column: str, where: str) -> None:
    """Labels that are numbers, not all whole (0.37, 2.5), are a regression target, which this recipe does not fit
    (each value would be a class of its own)."""
    numbers = [canonical_number(y) for y in labels]
    if labels and all(n is not None for n in numbers) and any("." in n or "e" in n for n in numbers):
        i = next(k for k, n in enumerate(numbers) if "." in n or "e" in n)
        raise TableError(f"{where}: data.label_column {column!r} holds numbers that are not all whole "
                         f"({where_row(frame, i)}: {labels[i]!r}; {len(set(numbers))} distinct values), a regression "
                         "target; the generic recipe classifies. Give class labels (or bin the values into classes); "
                         "for DNA regression use genomics/promoter_full")


def check_ids(frame, column: str, where: str) -> list[str]:
    """Every row has an id (an error naming the rows without one); repeated ids are counted in the notes."""
    values = ["" if v is None else str(v).strip() for v in frame[column].to_list()]
    blank = [i for i, v in enumerate(values) if not v]
    if blank:
        shown = "; ".join(where_row(frame, i) for i in blank[:5])
        raise TableError(f"{where}: {len(blank)} row(s) have no id in data.id_column {column!r} ({shown}); give every "
                         "row an id, or leave data.id_column unset (rows are then named file:row)")
    repeated = len(values) - len(set(values))
    return [f"column {column!r}: {repeated} repeated id(s) (ids name rows in predictions_test.csv)"] if repeated else []


def check_text_column(frame, column: str, where: str) -> None:
    """The text column holds text: numbers, booleans or lists (JSON, parquet) are not read as their spelling."""
    dtype = frame.schema[column]
    if dtype not in (pl.String, pl.Null):
        first = next((i for i, v in enumerate(frame[column].to_list()) if v is not None), 0)
        raise TableError(f"{where}: data.text_column {column!r} holds {dtype} values ({where_row(frame, first)}: "
                         f"{frame[column][first]!r}), not text; point data.text_column at the column of sequences or "
                         "texts, or write them as strings")


def encode(tokenizer: TextTokenizer, examples: Examples, label_ids: dict[str, int] | None, cfg: DataConfig,
           split: str, counts: dict | None = None, unknown: dict | None = None) -> list[dict]:
    """Encoded examples; inputs over max_length are cut and counted in ``counts`` (or refused); a char
    tokenizer's characters that training never had (read as the unknown id) are counted in ``unknown``."""
    out = []
    for i, (text, y, ident) in enumerate(zip(examples.texts, examples.labels or [None] * len(examples),
                                            examples.ids)):
        name = f"{split} example {ident}"
        try:
            ids = tokenizer.encode(text, name=name)
        except ValueError as err:  # the DNA tokenizer's message names the example already
            raise TableError(str(err) if str(err).startswith(name) else f"{name}: {err}") from None
        if tokenizer.kind == "char" and unknown is not None:
            n_unknown = sum(c not in tokenizer.index for c in text)
            if n_unknown:
                unknown[split] = unknown.get(split, 0) + n_unknown
        if len(ids) > cfg.max_length:
            if cfg.overflow == "error":
                raise TableError(f"{split} example {ident}: {len(ids)} tokens, more than data.max_length="
                                 f"{cfg.max_length}; raise data.max_length or set data.overflow=truncate")
            if counts is not None:
                counts[split] = counts.get(split, 0) + 1
            ids = ids[:cfg.max_length]
        entry = {"input_ids": torch.tensor(ids)}
        if label_ids is not None and y is not None:
            if y not in label_ids:
                known = ", ".join(list(label_ids)[:10]) + (f", ... ({len(label_ids)} in all)" if len(label_ids) > 10
                                                           else "")
                raise TableError(f"{split} example {ident}: label {y!r} was not seen in training (labels: {known}); "
                                 "every class needs training rows: give each class at least 2 rows (with "
                                 "data.cv_folds=K, K rows), or remove the rows of that class")
            entry["labels"] = torch.tensor(label_ids[y])
        out.append(entry)
    return out


def collate(batch: list[dict]) -> dict[str, torch.Tensor]:
    """Right-pads with id 0; attention_mask marks real tokens."""
    length = max(len(e["input_ids"]) for e in batch)
    ids = torch.zeros(len(batch), length, dtype=torch.long)
    mask = torch.zeros(len(batch), length, dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e["input_ids"])
        ids[i, :n] = e["input_ids"]
        mask[i, :n] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    if "labels" in batch[0]:
        out["labels"] = torch.stack([e["labels"] for e in batch])
    return out


def label_metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """accuracy and macro-F1; AUROC / AUPRC (positive = the second label) for two classes; one-vs-rest macro
    AUROC for more, when every class is in ``y``."""
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

    pred = probs.argmax(-1)
    out = {"accuracy": float(accuracy_score(y, pred)),
           "macro_f1": float(f1_score(y, pred, average="macro", labels=list(range(probs.shape[1])),
                                      zero_division=0))}
    present = np.unique(y)
    if probs.shape[1] == 2 and len(present) == 2:
        out["auroc"] = float(roc_auc_score(y, probs[:, 1]))
        out["auprc"] = float(average_precision_score(y, probs[:, 1]))
    elif probs.shape[1] > 2 and len(present) == probs.shape[1]:
        out["auroc"] = float(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    return out


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    return label_metrics(labels.numpy(), torch.softmax(logits.float(), -1).numpy())


# -- model ---------------------------------------------------------------------------------------

def resolve_pretrained(name: str | None) -> str | None:
    """A shipped model's name -> its folder; a folder or hub id as given; a local-looking path that does not
    exist is an error listing the shipped names."""
    if name is None:
        return None
    from ..domain_run import shipped_models
    shipped = shipped_models()
    if name in shipped and not Path(name).exists():
        return str(shipped[name])
    if name == "default":
        raise ValueError("the generic recipe has no default model: set model.pretrained to a shipped model "
                         f"({', '.join(shipped)}), a model folder, or null")
    if not Path(name).exists() and (name.startswith((".", "/", "~")) or name.count("/") != 1):
        raise FileNotFoundError(f"model.pretrained={name!r}: no such folder, and not a shipped model "
                                f"({', '.join(shipped)})")
    return name


def head_spec(recipe, num_labels: int) -> dict:
    spec = dict(recipe.model.head)
    spec.setdefault("num_labels", num_labels)
    return spec


def build_model(recipe, tokenizer: TextTokenizer, num_labels: int, pretrained: str | None) -> tuple[MambaForTask, list[str]]:
    """The base model with a fresh head: pretrained, or new from ``model.config`` sized to the tokenizer."""
    from mambatune.core.checkpoints import load_config, resolve_path

    torch.manual_seed(recipe.model.seed)
    spec = head_spec(recipe, num_labels)
    if pretrained:
        config, _, _ = load_config(resolve_path(pretrained))
        overrides, notes = pretrained_overrides(recipe, config)
        model = load_pretrained(pretrained, head=spec, config_overrides=overrides or None)
        if model.config.vocab_size < tokenizer.vocab_size:
            raise ValueError(f"the pretrained model's vocabulary ({model.config.vocab_size}) is smaller than the "
                             f"{tokenizer.kind} tokenizer's ({tokenizer.vocab_size}); use a model trained on "
                             f"{tokenizer.kind} tokens")
        return model, notes
    cfg = MambaConfig.from_dict({**recipe.model.config, "vocab_size": tokenizer.vocab_size, "pad_token_id": 0})
    kind = spec.pop("kind")
    return MambaForTask(cfg, build_head(kind, cfg.d_model * (2 if cfg.rc_equivariant == "rcps" else 1), **spec)), []


def uses_peft(recipe) -> bool:
    return bool(recipe.peft.methods)


def save_trained(model: MambaForTask, run_dir: Path, recipe, tokenizer: TextTokenizer) -> None:
    if uses_peft(recipe):
        peft.save_adapter(model, run_dir / "adapter")
    else:
        save_pretrained(model, run_dir / "model", meta={"recipe": recipe.name})
        tokenizer.save(run_dir / "model" / "tokenizer.json")


def load_trained(run_dir: str | Path, recipe=None) -> tuple[MambaForTask, TextTokenizer, list[str]]:
    """Rebuilds a run's trained model (base + adapter, or the fully fine-tuned model)."""
    from ..recipe import load_resolved
    run_dir = Path(run_dir)
    recipe = recipe or load_resolved(run_dir)
    tokenizer = TextTokenizer.load(run_dir / "tokenizer.json")
    labels = json.loads((run_dir / "labels.json").read_text())
    if (run_dir / "model").is_dir():
        model = load_pretrained(run_dir / "model")
    else:
        if (run_dir / "base").is_dir():  # a model trained from scratch: its initial weights, head included
            model = load_pretrained(run_dir / "base")
        else:
            pretrained = resolve_pretrained(recipe.model.pretrained)
            from mambatune.core.checkpoints import load_config, resolve_path
            overrides, _ = pretrained_overrides(recipe, load_config(resolve_path(pretrained))[0])
            model = load_pretrained(pretrained, head=head_spec(recipe, len(labels)), config_overrides=overrides or None)
        peft.load_adapter(model, run_dir / "adapter")
    model.eval()
    return model, tokenizer, labels


# -- baselines -----------------------------------------------------------------------------------

def baselines(train: Examples, test: Examples, label_names: list[str]) -> dict[str, dict[str, float]]:
    """Majority class and character n-gram TF-IDF + logistic regression, scored like the model."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    index = {y: i for i, y in enumerate(label_names)}
    y_tr = np.array([index[y] for y in train.labels])
    y_te = np.array([index[y] for y in test.labels])
    k = len(label_names)
    # most frequent training label; ties go to the first label, so the baseline is reproducible
    majority = int(np.bincount(y_tr, minlength=k).argmax())
    probs = np.zeros((len(y_te), k))
    probs[:, majority] = 1.0
    out = {"majority_class": label_metrics(y_te, probs)}
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), min_df=1, sublinear_tf=True)
    clf = LogisticRegression(max_iter=2000).fit(vec.fit_transform(train.texts), y_tr)
    probs = np.zeros((len(y_te), k))
    probs[:, clf.classes_] = clf.predict_proba(vec.transform(test.texts))
    out["char_ngram_logreg"] = label_metrics(y_te, probs)
    return out


# -- the pipeline --------------------------------------------------------------------------------

def write_predictions(path: Path, examples: Examples, probs: np.ndarray, label_names: list[str]) -> None:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "label", "predicted"] + [f"prob_{y}" for y in label_names])
    for ident, y, p in zip(examples.ids, examples.labels, probs):
        w.writerow([ident, y, label_names[int(p.argmax())]] + [f"{float(v):.6g}" for v in p])
    atomic_write_text(path, buf.getvalue())


def run(recipe) -> Path:
    """Trains, evaluates and writes the run folder; returns it. Under torchrun every rank trains;
    only the main rank scores the test set, fits the baselines and writes the files."""
    from ..domain_run import announce_baselines, is_main_process, train_model
    from ..recipe import save_resolved
    start = time.time()
    run_dir = Path(recipe.train.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    on_main = is_main_process()
    if on_main:
        save_resolved(recipe, run_dir)
    cfg = recipe.data
    splits, split_info, notes = load_splits(cfg, recipe.source)
    label_names = sorted(set(splits["train"].labels))
    if len(label_names) < 2:
        raise TableError(f"data.path={cfg.path}: the training split has one class ({label_names[0]!r}); a classifier "
                         "needs at least two")
    label_ids = {y: i for i, y in enumerate(label_names)}
    pretrained = resolve_pretrained(recipe.model.pretrained)
    tokenizer, tok_note = for_checkpoint(cfg.tokenizer, pretrained, splits["train"].texts)
    print(tok_note, flush=True)
    cut: dict[str, int] = {}
    unknown: dict[str, int] = {}
    data = {name: encode(tokenizer, ex, label_ids, cfg, name, cut, unknown) for name, ex in splits.items()}
    if cut:
        notes.append(f"inputs over data.max_length={cfg.max_length} tokens cut to it: "
                     + ", ".join(f"{k} {v}" for k, v in cut.items()))
    if unknown:
        notes.append("characters the training texts do not have, read as the char tokenizer's unknown id: "
                     + ", ".join(f"{k} {v}" for k, v in unknown.items()))
    if on_main:
        tokenizer.save(run_dir / "tokenizer.json")
        atomic_write_text(run_dir / "labels.json", json.dumps(label_names) + "\n")
        split_info.write(run_dir)
        for note in notes:
            print(f"data: {note}", flush=True)

    model, model_notes = build_model(recipe, tokenizer, len(label_names), pretrained)
    notes += model_notes
    if on_main:  # config.yaml now records the model as built (a pretrained model's shape, the tokenizer's vocabulary)
        save_resolved(recipe, run_dir, built=model.config, notes=model_notes)
    if uses_peft(recipe) and not pretrained and on_main:
        save_pretrained(model, run_dir / "base", meta={"note": "initial weights of a model trained from scratch"})
    model, result, summary = train_model(model, recipe.train, data["train"], data["val"] or None, collate,
                                         classification_metrics, recipe.peft)
    if not on_main:
        return run_dir
    save_trained(model, run_dir, recipe, tokenizer)
    test_metrics, probs = score(model, data["test"], recipe.train)
    write_predictions(run_dir / "predictions_test.csv", splits["test"], probs, label_names)
    base = {}
    if recipe.eval.baselines:
        announce_baselines(["majority_class", "char_ngram_logreg"])
        base = baselines(splits["train"], splits["test"], label_names)
    results = {"test": test_metrics, "val": result.last_eval, "baselines": base, "steps": result.steps,
               "best_step": result.best_step, "stopped_early": result.stopped_early,
               "train_seconds": result.seconds, "total_seconds": time.time() - start,
               "sizes": {k: len(v) for k, v in data.items()}, "labels": label_names,
               "positive_class": label_names[1] if len(label_names) == 2 else None,
               "split": split_info.how, "notes": notes, "truncated": cut, "tokenizer": tokenizer.kind,
               "base_model": pretrained}
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2) + "\n")
    write_report(run_dir, recipe, results, summary)
    return run_dir


def write_report(run_dir: Path, recipe, results: dict, summary: str) -> None:
    from mambatune.core.training import read_metrics
    records = read_metrics(run_dir / "metrics.jsonl")
    peak = max((r.get("peak_memory_mb", 0) for r in records), default=0)
    tps = [r["tokens_per_s"] for r in records if "tokens_per_s" in r]
    methods = ", ".join(m.method for m in recipe.peft.methods) or "full fine-tuning"
    rows = [("mamba (" + methods + ")", results["test"])] + list(results["baselines"].items())
    cols = [c for c in ("accuracy", "macro_f1", "auroc", "auprc") if c in results["test"]]
    table = "\n".join(f"| {name} | " + " | ".join(f"{m.get(c, float('nan')):.3f}" for c in cols) + " |"
                      for name, m in rows)
    from ..comparison_figure import plot_comparison
    plot_comparison(run_dir, results, recipe.name)  # plots/comparison.png: our model beside the baselines
    plots = "\n".join(f"![{p.stem}](plots/{p.name})" for p in sorted((run_dir / "plots").glob("*.png")))
    notes = "\n".join(f"- {n}" for n in results.get("notes", [])) or "- nothing was changed or dropped"
    positive = f" AUROC / AUPRC: positive class {results['positive_class']!r}." if results.get("positive_class") and \
        "auroc" in cols else ""
    text = f"""# {recipe.name}

Recipe: `{recipe.source}` · pipeline `{recipe.pipeline}` · method: {methods} · base model:
{results.get('base_model') or 'none (from scratch)'} · tokenizer: {results.get('tokenizer')}

Data: `{recipe.data.path}`; split: {results.get('split')}; examples train / val / test:
{results['sizes']['train']} / {results['sizes']['val']} / {results['sizes']['test']};
{len(results['labels'])} classes ({', '.join(results['labels'])}).

What the data loading changed or counted:
{notes}

## Test set

| model | {' | '.join(cols)} |
|---|{'---|' * len(cols)}
{table}
{positive}
Per-example predictions (every class's probability): `predictions_test.csv`.

Training: {results['steps']} optimizer steps, best step {results['best_step']}
(by validation {recipe.train.metric_for_best}), {'stopped early' if results['stopped_early'] else 'ran to the end'};
{results['train_seconds']:.1f} s; {np.median(tps) if tps else 0:,.0f} tokens/s (median); peak memory {peak:,.0f} MiB.

## Trainable parameters

```
{summary}
```

## Curves

{plots}
"""
    atomic_write_text(run_dir / "report.md", text)


@domain_run.head_from_the_run()
def evaluate(run_dir: str | Path, split: str | None = None) -> dict[str, float]:
    """Scores a finished run on one of its splits (default: the recipe's eval.split)."""
    from ..recipe import load_resolved
    run_dir = Path(run_dir)
    recipe = load_resolved(run_dir)
    model, tokenizer, labels = load_trained(run_dir, recipe)
    split = split or recipe.eval.split
    examples = load_splits(recipe.data, recipe.source)[0][split]
    data = encode(tokenizer, examples, {y: i for i, y in enumerate(labels)}, recipe.data, split)
    logits = predict_logits(model, data)
    metrics = classification_metrics(logits, torch.stack([e["labels"] for e in data]))
    metrics["examples"] = len(data)
    return metrics


@torch.no_grad()
def score(model: MambaForTask, data: list[dict], train_cfg) -> tuple[dict[str, float], np.ndarray]:
    """(mean loss and the metrics, class probabilities) of ``model`` on encoded examples, batched and autocast
    as the Trainer evaluates (``train_cfg``: eval_batch_size or batch_size, precision)."""
    device = next(model.parameters()).device
    batch_size = train_cfg.eval_batch_size or train_cfg.batch_size
    model.eval()
    logits, loss_sum = [], 0.0
    for i in range(0, len(data), batch_size):
        batch = {k: v.to(device) for k, v in collate(data[i:i + batch_size]).items()}
        with Precision(train_cfg.precision, device.type).autocast():
            out = model(**batch)
        logits.append(out.logits.float().cpu())
        loss_sum += float(out.loss) * len(batch["labels"])
    labels = torch.stack([e["labels"] for e in data])
    logits = torch.cat(logits)
    return ({"loss": loss_sum / len(data), **classification_metrics(logits, labels)},
            torch.softmax(logits, -1).numpy())


@torch.no_grad()
def predict_logits(model: MambaForTask, data: list[dict], batch_size: int = 32) -> torch.Tensor:
    out = []
    for i in range(0, len(data), batch_size):
        batch = collate([{"input_ids": e["input_ids"]} for e in data[i:i + batch_size]])
        out.append(model(batch["input_ids"], batch["attention_mask"]).logits.float())
    return torch.cat(out)


@domain_run.head_from_the_run()
def predict(run_dir: str | Path, texts) -> list[dict]:
    """[{"id", "text", "label", "probability", "prob_<class>" ..., "note"}] for each input (``texts``: strings or
    (id, text) pairs); an input over max_length is cut and says so in its note; an empty one keeps its row,
    without a prediction, and its note says so. The counts go to stderr."""
    from ..domain_run import report_skipped
    from ..recipe import load_resolved
    recipe = load_resolved(run_dir)
    model, tokenizer, labels = load_trained(run_dir, recipe)
    pairs = [t if isinstance(t, tuple) else (str(i + 1), t) for i, t in enumerate(texts)]
    data, notes = [], []
    for ident, text in pairs:
        if not str(text).strip():
            notes.append("empty input: not classified")
            continue
        try:
            ids = tokenizer.encode(text, name=f"input {ident}")
        except ValueError as err:  # the DNA tokenizer's message names the input already
            raise TableError(str(err) if str(err).startswith(f"input {ident}") else f"input {ident}: {err}") from None
        n_unknown = sum(c not in tokenizer.index for c in text) if tokenizer.kind == "char" else 0
        notes.append("; ".join(part for part in (
            f"cut from {len(ids)} to {recipe.data.max_length} tokens" if len(ids) > recipe.data.max_length else "",
            f"{n_unknown} character(s) the training texts do not have, read as unknown" if n_unknown else "") if part))
        data.append({"input_ids": torch.tensor(ids[:recipe.data.max_length])})
    probs = iter(torch.softmax(predict_logits(model, data), -1) if data else torch.zeros(0, len(labels)))
    rows = []
    for (ident, text), note in zip(pairs, notes):
        if note.startswith("empty"):
            row = {"id": ident, "text": text, "label": "", "probability": "", **{f"prob_{y}": "" for y in labels}}
        else:
            p = next(probs)
            row = {"id": ident, "text": text, "label": labels[int(p.argmax())], "probability": float(p.max())}
            row.update({f"prob_{y}": float(v) for y, v in zip(labels, p)})
        row["note"] = note
        rows.append(row)
    report_skipped("predict inputs", {"inputs": len(rows), "empty (not classified)": sum(n.startswith("empty")
                                                                                          for n in notes),
                                      "cut to data.max_length": sum(n.startswith("cut") for n in notes),
                                      "with unknown characters": sum("read as unknown" in n for n in notes)})
    return rows


def read_inputs(source: str, recipe) -> list:
    """(id, text) pairs from a table (the recipe's text column, and id column when it has one), a .txt (one per
    line); a string that is not a file is the one input (a path-like string that does not exist is an error)."""
    p = Path(source)
    if not p.exists():
        if "/" in source or p.suffix.lower() in (".csv", ".tsv", ".tab", ".parquet", ".jsonl", ".json", ".txt", ".gz"):
            raise FileNotFoundError(f"input file {source!r} does not exist (to score a literal text that looks like a "
                                    "path, put it in a .txt file)")
        return [source]
    if p.suffix.lower() == ".txt":  # one input per line, named by its line number; blank lines are not inputs
        return [(str(i), line) for i, line in enumerate(p.read_text().splitlines(), start=1) if line.strip()]
    table = read_table(p)
    cfg = recipe.data
    require_columns(table, {"data.text_column": cfg.text_column}, str(p))
    ids = (table[cfg.id_column].to_list() if cfg.id_column and cfg.id_column in table.columns
           else [f"{f}:{r}" for f, r in zip(table[FILE].to_list(), table[ROW].to_list())])
    return [(str(i), "" if t is None else str(t)) for i, t in zip(ids, table[cfg.text_column].to_list())]


@domain_run.head_from_the_run()
def export(run_dir: str | Path, out: str | Path) -> Path:
    """A standalone model folder: LoRA merged into the base weights, our safetensors format, its tokenizer beside."""
    from ..domain_run import plain_model
    model, tokenizer, labels = load_trained(run_dir)
    folder = save_pretrained(plain_model(model), out, meta={"labels": labels, "exported_from": str(run_dir)})
    tokenizer.save(Path(out) / "tokenizer.json")
    return folder
