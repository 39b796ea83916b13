"""Classification metrics for genomics tasks, with bootstrap confidence intervals, and ROC/PR plots.

All metrics come from scikit-learn; intervals are percentile bootstrap (95 % by
default) over examples, resampled with a fixed seed so a run is reproducible.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn import metrics as skm


def _binary_point(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    pred = (score >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    return {
        "auroc": skm.roc_auc_score(y, score) if both else float("nan"),
        "auprc": skm.average_precision_score(y, score) if both else float("nan"),
        "mcc": skm.matthews_corrcoef(y, pred),
        "accuracy": skm.accuracy_score(y, pred),
        "f1": skm.f1_score(y, pred, zero_division=0),
    }


def _check(y_true, scores, what: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if len(y) != len(s):
        raise ValueError(f"{what}: {len(y)} labels but {len(s)} scores")
    if len(y) == 0:
        raise ValueError(f"{what}: no examples to score")
    if not np.isfinite(s).all():
        raise ValueError(f"{what}: {int((~np.isfinite(s)).sum())} scores are NaN or Inf")
    return y, s


def bootstrap(fn, n: int, n_boot: int, seed: int, alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every value ``fn(idx)`` returns, over ``n_boot`` resamples of n examples."""
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        for k, v in fn(idx).items():
            samples.setdefault(k, []).append(v)
    out = {}
    for k, vals in samples.items():
        arr = np.asarray(vals, dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        out[k] = (float(np.quantile(arr, alpha / 2)), float(np.quantile(arr, 1 - alpha / 2))) if len(arr) else (float("nan"),) * 2
    return out


def binary_metrics(y_true, scores, threshold: float = 0.5, n_boot: int = 1000, seed: int = 0) -> dict:
    """AUROC, AUPRC, MCC, accuracy and F1 of scores (probability of class 1), each with a 95 % bootstrap interval.

    Returns ``{"auroc": 0.91, "auroc_ci": (0.88, 0.94), ..., "n": 230, "positives": 110}``."""
    y, s = _check(y_true, scores, "binary_metrics")
    point = _binary_point(y, s, threshold)
    ci = bootstrap(lambda idx: _binary_point(y[idx], s[idx], threshold), len(y), n_boot, seed) if n_boot else {}
    out: dict = {"n": int(len(y)), "positives": int((y == 1).sum())}
    for k, v in point.items():
        out[k] = float(v)
        if k in ci:
            out[f"{k}_ci"] = ci[k]
    return out


def multiclass_metrics(y_true, probs, n_boot: int = 1000, seed: int = 0) -> dict:
    """Accuracy, macro-F1, MCC and macro one-vs-rest AUROC of class probabilities (n, classes), with intervals."""
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"multiclass_metrics: probs must be (n={len(y)}, classes), got {p.shape}")

    def point(idx):
        yy, pp = y[idx], p[idx]
        pred = pp.argmax(1)
        auroc = float("nan")
        if len(np.unique(yy)) == p.shape[1]:
            auroc = skm.roc_auc_score(yy, pp / pp.sum(1, keepdims=True), multi_class="ovr", average="macro")
        return {"accuracy": skm.accuracy_score(yy, pred), "macro_f1": skm.f1_score(yy, pred, average="macro", zero_division=0),
                "mcc": skm.matthews_corrcoef(yy, pred), "auroc_macro": auroc}

    base = point(np.arange(len(y)))
    ci = bootstrap(point, len(y), n_boot, seed) if n_boot else {}
    out: dict = {"n": int(len(y))}
    for k, v in base.items():
        out[k] = float(v)
        if k in ci:
            out[f"{k}_ci"] = ci[k]
    return out


def _with_intervals(point, n: int, n_boot: int, seed: int) -> dict:
    base = point(np.arange(n))
    ci = bootstrap(point, n, n_boot, seed) if n_boot else {}
    out: dict = {"n": int(n)}
    for k, v in base.items():
        out[k] = float(v)
        if k in ci:
            out[f"{k}_ci"] = ci[k]
    return out


def multilabel_metrics(y_true, probs, threshold: float = 0.5, n_boot: int = 1000, seed: int = 0) -> dict:
    """Multi-hot targets (n, classes) and per-class probabilities: macro and micro AUROC (over the classes
    with both outcomes in the sample), macro AUPRC, micro / macro F1 at ``threshold`` and the exact-match
    ratio, with 95 % bootstrap intervals."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != y.shape or p.ndim != 2:
        raise ValueError(f"multilabel_metrics: targets {y.shape} and probabilities {p.shape} must both be (n, classes)")

    def point(idx):
        yy, pp = y[idx], p[idx]
        pred = (pp >= threshold).astype(int)
        both = [j for j in range(y.shape[1]) if 0 < yy[:, j].sum() < len(yy)]
        nan = float("nan")
        return {"auroc_macro": skm.roc_auc_score(yy[:, both], pp[:, both], average="macro") if both else nan,
                "auroc_micro": skm.roc_auc_score(yy[:, both], pp[:, both], average="micro") if both else nan,
                "auprc_macro": skm.average_precision_score(yy[:, both], pp[:, both], average="macro") if both else nan,
                "f1_micro": skm.f1_score(yy, pred, average="micro", zero_division=0),
                "f1_macro": skm.f1_score(yy, pred, average="macro", zero_division=0),
                "exact_match": float((pred == yy).all(1).mean())}

    return _with_intervals(point, len(y), n_boot, seed)


def regression_metrics(y_true, pred, n_boot: int = 1000, seed: int = 0) -> dict:
    """Pearson and Spearman correlation, R^2, MSE and MAE of predictions, with 95 % bootstrap intervals."""
    from scipy import stats

    y, s = _check(y_true, pred, "regression_metrics")
    y = y.astype(np.float64)

    def point(idx):
        yy, ss = y[idx], s[idx]
        flat = np.ptp(yy) == 0 or np.ptp(ss) == 0
        return {"pearson": float("nan") if flat else stats.pearsonr(yy, ss)[0],
                "spearman": float("nan") if flat else stats.spearmanr(yy, ss)[0],
                "r2": skm.r2_score(yy, ss), "mse": skm.mean_squared_error(yy, ss),
                "mae": skm.mean_absolute_error(yy, ss)}

    return _with_intervals(point, len(y), n_boot, seed)


def plot_roc_pr(y_true, scores_by_model: dict[str, np.ndarray], out_dir: str | Path, title: str = "",
                model: str | None = None, split: str = "test") -> list[Path]:
    """ROC and precision-recall curves of several models on the same examples: roc.png and pr.png in out_dir.

    Titled with ``title`` (the run's name) and ``model`` (default: what the run folder, ``out_dir``'s
    parent, records), the legend beside the axes."""
    from mambatune.core.training.figures import figure_title, legend_outside, pyplot, run_dir_of, save_figure

    plt = pyplot()
    out_dir = Path(out_dir)
    y = np.asarray(y_true)
    heading = figure_title(run_dir_of(out_dir), model, name=title)
    paths = []
    for kind in ("roc", "pr"):
        fig, ax = plt.subplots(figsize=(7.5, 4.6))
        for name, s in scores_by_model.items():
            s = np.asarray(s, dtype=np.float64)
            if kind == "roc":
                fpr, tpr, _ = skm.roc_curve(y, s)
                ax.plot(fpr, tpr, label=f"{name} (AUROC {skm.roc_auc_score(y, s):.3f})")
            else:
                prec, rec, _ = skm.precision_recall_curve(y, s)
                ax.plot(rec, prec, label=f"{name} (AUPRC {skm.average_precision_score(y, s):.3f})")
        if kind == "roc":
            ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
            ax.set(xlabel="false positive rate", ylabel="true positive rate")
            ax.set_title(f"ROC curve, {split} set ({len(y):,} examples)", fontsize=9)
        else:
            ax.axhline(y.mean(), color="k", ls="--", lw=0.8, label=f"chance (positive rate {y.mean():.2f})")
            ax.set(xlabel="recall", ylabel="precision")
            ax.set_title(f"precision-recall curve, {split} set ({len(y):,} examples)", fontsize=9)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
        legend_outside(ax)
        fig.suptitle(heading, fontsize=10)
        paths.append(save_figure(fig, out_dir / f"{kind}.png"))
    return paths
