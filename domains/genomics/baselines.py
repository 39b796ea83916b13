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
