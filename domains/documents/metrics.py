"""Classification metrics for documents (scikit-learn), overall and by length.

Single-label: :func:`classification_metrics` on integer class ids; a true id of
-1 (an 'unseen' label, see :mod:`.dataset`) counts as a miss in accuracy and
micro-F1 and is reported as its own row. Multi-label: :func:`tune_thresholds`
picks a per-class threshold on the validation split, and
:func:`multilabel_metrics` applies them to test scores.

Every function returns plain dicts of floats/ints/lists (JSON-ready).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

DEFAULT_BUCKETS = (0, 500, 2000)
UNSEEN_NAME = "<unseen>"


def bucket_names(edges=DEFAULT_BUCKETS) -> list[str]:
    """``(0, 500, 2000)`` -> ``["<500", "500-1999", ">=2000"]``; lengths in the caller's unit."""
    edges = list(edges)
    names = []
    for lo, hi in zip(edges, edges[1:] + [None]):
        if hi is None:
            names.append(f">={lo}")
        elif lo == edges[0]:
            names.append(f"<{hi}")
        else:
            names.append(f"{lo}-{hi - 1}")
    return names


def bucket_of(lengths, edges=DEFAULT_BUCKETS) -> np.ndarray:
    """Bucket index per length (edges[i] <= length < edges[i+1])."""
    return np.clip(np.searchsorted(np.asarray(edges), np.asarray(lengths), side="right") - 1, 0, len(edges) - 1)


def _core_scores(y_true, y_pred, labels) -> dict:
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else float("nan"),
        "micro_f1": float(f1_score(y_true, y_pred, labels=labels, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
    }


def binary_ranking_metrics(y_true, scores) -> dict:
    """AUROC and AUPRC of a two-class task, the second class (``label_names[1]``) positive.

    y_true: (docs,) ids 0 / 1 (-1, unseen, left out); scores: (docs, 2) logits, probabilities or
    decision values (the positive class's margin ``scores[:, 1] - scores[:, 0]`` is ranked), or (docs,)
    positive-class scores. NaN when the test labels hold one class only."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y_true, scores = np.asarray(y_true), np.asarray(scores, dtype=np.float64)
    margin = scores[:, 1] - scores[:, 0] if scores.ndim == 2 else scores
    known = y_true >= 0
    y, margin = y_true[known], np.nan_to_num(margin[known], posinf=1e300, neginf=-1e300)
    if len(np.unique(y)) < 2:
        return {"auroc": float("nan"), "auprc": float("nan")}
    return {"auroc": float(roc_auc_score(y, margin)), "auprc": float(average_precision_score(y, margin))}


def classification_metrics(y_true, y_pred, label_names: list[str], lengths=None,
                           length_edges=DEFAULT_BUCKETS, scores=None) -> dict:
    """Accuracy, micro/macro-F1, per-class report and confusion matrix; by length bucket too.

    y_true, y_pred: (docs,) int class ids in ``range(len(label_names))`` (y_true may be -1).
    Macro-F1 averages over every class of ``label_names`` overall; inside a length
    bucket, over the classes that occur there (true or predicted), since a
    class absent from a bucket has no meaningful F1 there.
    lengths: (docs,) document lengths (words or tokens) for ``by_length``.
    scores: (docs, classes) scores behind ``y_pred``; with two classes they add ``auroc`` / ``auprc``
    (:func:`binary_ranking_metrics`, the second label positive).
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    k = len(label_names)
    if (y_pred < 0).any() or (y_pred >= k).any() or (y_true >= k).any() or (y_true < -1).any():
        raise ValueError(f"class ids must be in 0..{k - 1} (y_true may also be -1 for unseen labels)")
    labels = list(range(k))
    out = _core_scores(y_true, y_pred, labels)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    out["per_class"] = {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                               "support": int(s[i])} for i, name in enumerate(label_names)}
    n_unseen = int((y_true == -1).sum())
    out["n_unseen"] = n_unseen
    if n_unseen:
        out["per_class"][UNSEEN_NAME] = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": n_unseen}
    out["labels"] = list(label_names)
    if scores is not None and k == 2:
        out |= binary_ranking_metrics(y_true, scores) | {"positive_label": label_names[1]}
    out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.shape != y_true.shape:
            raise ValueError(f"lengths {lengths.shape} and y_true {y_true.shape} differ in shape")
        which = bucket_of(lengths, length_edges)
        out["by_length"] = {}
        for b, name in enumerate(bucket_names(length_edges)):
            m = which == b
            present = sorted((set(y_true[m].tolist()) | set(y_pred[m].tolist())) - {-1})
            out["by_length"][name] = _core_scores(y_true[m], y_pred[m], present) if m.any() else {"n": 0}
    return out


def save_confusion_matrix(matrix, label_names: list[str], path: str | Path, title: str = "",
                          normalize: bool = True, model: str | None = None, run_name: str = "") -> Path:
    """Write a confusion matrix (rows: true, columns: predicted) as a PNG; returns the path.

    ``title`` names the classifier shown (e.g. ``mamba`` or a baseline); the figure's heading names the run
    (``run_name``, else the run folder above ``path``) and ``model`` (default: what that folder records)."""
    from mambatune.core.training.figures import figure_title, pyplot, run_dir_of, save_figure

    plt = pyplot()
    cm = np.asarray(matrix, dtype=np.float64)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    k = len(label_names)
    fig, ax = plt.subplots(figsize=(max(6.0, 3.0 + 0.55 * k), max(4.5, 2.4 + 0.5 * k)), dpi=100, layout="constrained")
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("share of the true class" if normalize else "examples", fontsize=8)
    ax.set_xticks(range(k), label_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), label_names, fontsize=8)
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    what = title if "confusion" in title else (f"confusion matrix of {title}" if title else "confusion matrix")
    ax.set_title(what + (" (colour: row share; numbers: counts)" if normalize else " (counts)"), fontsize=9)
    path = Path(path)
    fig.suptitle(figure_title(run_dir_of(path), model, name=run_name), fontsize=9)
    return save_figure(fig, path, dpi=100)


def tune_thresholds(y_true, scores, grid=None) -> np.ndarray:
    """Per-class thresholds maximising each class's F1 on validation data.

    y_true: (docs, classes) 0/1; scores: (docs, classes) probabilities or logits.
    ``grid`` defaults to the distinct scores of each class (exact search). A class
    with no positive in validation keeps threshold 0.5 for probabilities
    (scores in [0, 1]) or 0.0 for logits.
    """
    y_true, scores = np.asarray(y_true), np.asarray(scores, dtype=np.float64)
    if y_true.shape != scores.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and scores {scores.shape} must both be (docs, classes)")
    default = 0.5 if scores.min() >= 0 and scores.max() <= 1 else 0.0
    thresholds = np.full(scores.shape[1], default)
    for c in range(scores.shape[1]):
        pos = y_true[:, c].astype(bool)
        if not pos.any():
            continue
        candidates = np.unique(scores[:, c]) if grid is None else np.asarray(grid, dtype=np.float64)
        best, best_f1 = thresholds[c], -1.0
        for t in candidates:
            pred = scores[:, c] >= t
            tp = (pred & pos).sum()
            f1 = 2 * tp / (pred.sum() + pos.sum())
            if f1 > best_f1:
                best, best_f1 = t, f1
        thresholds[c] = best
    return thresholds


def multilabel_metrics(y_true, scores, label_names: list[str], thresholds=None, lengths=None,
                       length_edges=DEFAULT_BUCKETS) -> dict:
    """Micro/macro-F1, subset accuracy and per-class report for multi-label predictions.

    y_true: (docs, classes) 0/1; scores: (docs, classes); a class is predicted
    where ``score >= threshold`` (per class; default 0.5 for probabilities, 0 for logits).
    """
    y_true, scores = np.asarray(y_true).astype(np.int64), np.asarray(scores, dtype=np.float64)
    if y_true.shape != scores.shape or y_true.shape[1] != len(label_names):
        raise ValueError(f"y_true {y_true.shape} and scores {scores.shape} must be (docs, {len(label_names)})")
    if thresholds is None:
        thresholds = 0.5 if scores.min() >= 0 and scores.max() <= 1 else 0.0
    y_pred = (scores >= np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (scores.shape[1],))).astype(np.int64)

    def scores_of(t, p):
        return {"n": int(len(t)),
                "accuracy": float(accuracy_score(t, p)) if len(t) else float("nan"),
                "micro_f1": float(f1_score(t, p, average="micro", zero_division=0)),
                "macro_f1": float(f1_score(t, p, average="macro", zero_division=0))}

    out = scores_of(y_true, y_pred)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    out["per_class"] = {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                               "support": int(s[i])} for i, name in enumerate(label_names)}
    out["labels"] = list(label_names)
    out["thresholds"] = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (scores.shape[1],)).tolist()
    if lengths is not None:
        which = bucket_of(np.asarray(lengths), length_edges)
        out["by_length"] = {name: (scores_of(y_true[which == b], y_pred[which == b]) if (which == b).any()
                                   else {"n": 0}) for b, name in enumerate(bucket_names(length_edges))}
    return out
