"""Scoring the documents pipeline's models: metrics of one classifier or of an ensemble (the mean of its
members' probabilities), the LM's loss, and ``predictions_test.csv``. Shared by the run (``tasks``),
the verbs and ``mambatune ensemble``.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import torch

from mambatune.core.atomic import atomic_write_text
from mambatune.domains.documents.metrics import classification_metrics, multilabel_metrics, tune_thresholds
from mambatune.domains.documents.training import collate_lm
from mambatune.domains.tables import FILE, ROW


def word_counts(table) -> np.ndarray:
    return np.array([len(t.split()) for t in table.texts], dtype=np.int64)


def single_label_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    from sklearn.metrics import f1_score
    pred, y = logits.argmax(-1).numpy(), labels.numpy()
    return {"accuracy": float((pred == y).mean()), "macro_f1": float(f1_score(y, pred, average="macro"))}


def multi_label_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    from sklearn.metrics import f1_score
    pred, y = (logits.numpy() >= 0).astype(int), labels.numpy().astype(int)
    return {"micro_f1": float(f1_score(y, pred, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0))}


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


def combine_text(multi: bool) -> str:
    if multi:
        return ("the mean of the members' sigmoid probabilities, with per-class thresholds tuned on the averaged "
                "validation probabilities")
    return "the mean of the members' softmax probabilities (prediction: the most probable label)"


def score_ensemble(logits: list[dict], y: dict, names: list[str], multi: bool, lengths, edges, method: str,
                   members: list[dict]) -> tuple:
    """(test metrics, thresholds, ensemble record, the ensemble's test probabilities) from each member's
    ``{"val", "test"}`` logits: the
    ensemble (``"<method>, ensemble of K"``, the mean of the members' probabilities) first, then each
    member alone (``"<its method> member k"``, scored as a single run scores its model). ``members``:
    per member, what the record keeps (``seed``, ``dir``, ...; ``method`` when it differs)."""
    if len(logits) != len(members) or not logits:
        raise ValueError(f"an ensemble needs one record per member: {len(logits)} members, {len(members)} records")
    probs = [{s: probabilities(m[s], multi) for s in ("val", "test")} for m in logits]
    mean = {s: np.mean([p[s] for p in probs], axis=0) for s in ("val", "test")}
    metrics, thresholds = model_metrics(y, mean["val"], mean["test"], names, multi, lengths, edges)
    test = {f"{method}, ensemble of {len(logits)}": metrics}
    records = []
    for k, (raw, p, info) in enumerate(zip(logits, probs, members)):
        name = f"{info.get('method', method)} member {k}"
        scores = p if multi else raw  # a single run: sigmoid probabilities, or the argmax of its logits
        test[name] = model_metrics(y, scores["val"], scores["test"], names, multi, lengths, edges)[0]
        records.append({"member": k, "name": name, **info})
    return test, thresholds, {"size": len(logits), "method": method, "combine": combine_text(multi),
                              "members": records}, mean["test"]


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


def length_range(tokens) -> dict | None:
    """``results.json`` ``train_lengths``: the training documents' lengths in tokens (before any cut), which
    ``predict`` compares an input with."""
    tokens = np.asarray(tokens)
    if not len(tokens):
        return None
    p05, median, p95 = (int(round(float(np.percentile(tokens, q)))) for q in (5, 50, 95))
    return {"min": int(tokens.min()), "p05": p05, "median": median, "p95": p95, "max": int(tokens.max())}


def training_summary(result) -> dict | None:
    if result is None:
        return None
    return {"steps": result.steps, "best_step": result.best_step, "stopped_early": result.stopped_early,
            "seconds": result.seconds, "last_eval": result.last_eval}
