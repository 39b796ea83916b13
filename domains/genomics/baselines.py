"""Classical baselines for DNA classification: k-mer frequencies + logistic regression."""
from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .tokenizer import reverse_complement


class KmerCounts(BaseEstimator, TransformerMixin):
    """Sequences -> sparse k-mer count rows, with numpy instead of Python strings (a 131 kb window
    has 262,000 k-mers on two strands). Each k-mer is a base-6 code (A C G T N, any other letter);
    only the k-mers seen in training become columns, as a vocabulary-fitting vectoriser would do."""

    def __init__(self, k: int = 6, canonical: bool = True):
        self.k, self.canonical = k, canonical

    def _codes(self, seq: str) -> np.ndarray:
        table = np.full(256, 5, dtype=np.int64)
        for i, base in enumerate("ACGTN"):
            table[ord(base)] = i
        strands = [seq, reverse_complement(seq)] if self.canonical else [seq]
        powers = 6 ** np.arange(self.k - 1, -1, -1, dtype=np.int64)
        out = []
        for strand in strands:
            if len(strand) < self.k:
                continue
            arr = table[np.frombuffer(strand.encode("ascii", "replace"), dtype=np.uint8)]
            out.append(np.lib.stride_tricks.sliding_window_view(arr, self.k) @ powers)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def _counts(self, seqs) -> sparse.csr_matrix:
        rows, cols, vals = [], [], []
        for r, seq in enumerate(seqs):
            codes, counts = np.unique(self._codes(seq), return_counts=True)
            rows.append(np.full(len(codes), r))
            cols.append(codes)
            vals.append(counts)
        n_cols = 6 ** self.k
        if not rows:
            return sparse.csr_matrix((0, n_cols), dtype=np.float32)
        return sparse.csr_matrix((np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
                                 shape=(len(seqs), n_cols))

    def fit(self, seqs, y=None):
        self.columns_ = np.flatnonzero(np.asarray(self._counts(seqs).sum(axis=0)).ravel())
        return self

    def transform(self, seqs):
        return self._counts(seqs)[:, self.columns_]


class KmerLogisticRegression:
    """k-mer (default k = 6) frequency vectors of each sequence -> L2-regularised logistic regression.

    With ``canonical`` (default) a sequence's k-mers are counted on both strands,
    so the baseline is strand-invariant like an RC-averaged model."""

    def __init__(self, k: int = 6, C: float = 0.01, canonical: bool = True, max_iter: int = 3000, seed: int = 0):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k, self.canonical = k, canonical
        self.model = make_pipeline(
            KmerCounts(k, canonical),
            TfidfTransformer(use_idf=False, norm="l1"),  # counts -> frequencies
            StandardScaler(with_mean=False),  # per-k-mer scale, so one C suits every k
            LogisticRegression(C=C, max_iter=max_iter, random_state=seed),
        )

    def _prep(self, seqs) -> list[str]:
        return [str(s).upper() for s in seqs]

    def fit(self, seqs, labels) -> "KmerLogisticRegression":
        self.model.fit(self._prep(seqs), np.asarray(labels))
        return self

    def predict_proba(self, seqs) -> np.ndarray:
        return self.model.predict_proba(self._prep(seqs))


# -- user data: every label kind, k chosen on the training split ---------------------------------

KINDS = ("binary", "multiclass", "multilabel", "regression")
SCORING = {"binary": "roc_auc", "multiclass": "accuracy", "multilabel": "roc_auc", "regression": "r2"}


def linear_model(kind: str, C: float = 0.01, seed: int = 0):
    """The linear model at the end of a baseline: logistic regression (one per class for multi-label) or,
    for a regression target, ridge regression (``alpha = 1 / C``)."""
    from sklearn.linear_model import Ridge
    from sklearn.multiclass import OneVsRestClassifier

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "regression":
        return Ridge(alpha=1.0 / C)
    lr = LogisticRegression(C=C, max_iter=3000, random_state=seed)
    return OneVsRestClassifier(lr) if kind == "multilabel" else lr


class OneHot(BaseEstimator, TransformerMixin):
    """Sequences of one length -> flattened one-hot rows (length x 4, N and any other letter all zero)."""

    def fit(self, seqs, y=None):
        lengths = {len(s) for s in seqs}
        if len(lengths) != 1:
            raise ValueError(f"one-hot features need sequences of one length; these have {len(lengths)} lengths "
                             f"({min(lengths)}-{max(lengths)} bp)")
        self.length_ = lengths.pop()
        return self

    def transform(self, seqs):
        table = np.full(256, 4, dtype=np.int64)
        for i, base in enumerate("ACGT"):
            table[ord(base)] = i
        bad = [i for i, s in enumerate(seqs) if len(s) != self.length_]
        if bad:
            raise ValueError(f"one-hot features were fit on {self.length_} bp sequences; sequence {bad[0]} has "
                             f"{len(seqs[bad[0]])} bp")
        codes = np.stack([table[np.frombuffer(s.encode("ascii", "replace"), dtype=np.uint8)] for s in seqs])
        eye = np.vstack([np.eye(4, dtype=np.float32), np.zeros((1, 4), dtype=np.float32)])
        return sparse.csr_matrix(eye[codes].reshape(len(seqs), -1))


def tuned_baseline(features: str, kind: str, seqs: list[str], y, *, ks=(3, 4, 5, 6), Cs=(0.01, 0.1, 1.0),
                   cv: int = 3, seed: int = 0):
    """A k-mer (``features="kmer"``: k and C chosen by ``cv``-fold CV on the training sequences) or one-hot
    (``"onehot"``: C chosen) linear model fit on all of ``seqs``; returns (fitted model, chosen settings,
    inner-CV score). Scoring: AUROC (binary, multi-label macro), accuracy (multi-class), R^2 (regression).
    Folds are stratified for single-label classes and shuffled with ``seed``."""
    from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold

    seqs = [str(s).upper() for s in seqs]
    y = np.asarray(y)
    if features == "kmer":
        steps = [("counts", KmerCounts(6, True)), ("freq", TfidfTransformer(use_idf=False, norm="l1")),
                 ("scale", StandardScaler(with_mean=False))]
        grid = {"counts__k": list(ks)}
    elif features == "onehot":
        steps, grid = [("onehot", OneHot())], {}
    else:
        raise ValueError(f"features must be 'kmer' or 'onehot', got {features!r}")
    from sklearn.pipeline import Pipeline

    model = Pipeline(steps + [("model", linear_model(kind, seed=seed))])
    param = "model__alpha" if kind == "regression" else ("model__estimator__C" if kind == "multilabel" else "model__C")
    grid[param] = [1.0 / c for c in Cs] if kind == "regression" else list(Cs)
    if kind in ("binary", "multiclass"):
        smallest = int(np.bincount(y).min()) if len(y) else 0
        folds = StratifiedKFold(min(cv, max(smallest, 2)), shuffle=True, random_state=seed)
    else:
        folds = KFold(cv, shuffle=True, random_state=seed)
    search = GridSearchCV(model, grid, scoring=SCORING[kind], cv=folds, error_score=np.nan, refit=True)
    import warnings

    from threadpoolctl import threadpool_limits

    # one BLAS thread: these fits are small, and BLAS threads fighting over the cores made them 4x slower
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore")  # convergence warnings and folds missing a class score as NaN
        search.fit(seqs, y)
    chosen = {k.split("__")[-1]: v for k, v in search.best_params_.items()}
    if "alpha" in chosen:
        chosen = {"C": 1.0 / chosen.pop("alpha"), **chosen}
    return search.best_estimator_, chosen, float(search.best_score_)


def baseline_scores(model, kind: str, seqs: list[str]) -> np.ndarray:
    """Test outputs of a :func:`tuned_baseline`: class probabilities (n, classes), or predictions (n,)."""
    seqs = [str(s).upper() for s in seqs]
    return model.predict(seqs) if kind == "regression" else model.predict_proba(seqs)
