"""Classical baselines for DNA classification: k-mer frequencies + logistic regression."""
from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .tokenizer import reverse_complement


class KmerLogisticRegression:
    """k-mer (default k = 6) frequency vectors of each sequence -> L2-regularised logistic regression.

    With ``canonical`` (default) a sequence's k-mers are counted on both strands,
    so the baseline is strand-invariant like an RC-averaged model."""

    def __init__(self, k: int = 6, C: float = 0.01, canonical: bool = True, max_iter: int = 3000, seed: int = 0):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k, self.canonical = k, canonical
        self.model = make_pipeline(
            CountVectorizer(analyzer=self._kmers, dtype=np.float32),
            TfidfTransformer(use_idf=False, norm="l1"),  # counts -> frequencies
            StandardScaler(with_mean=False),  # per-k-mer scale, so one C suits every k
            LogisticRegression(C=C, max_iter=max_iter, random_state=seed),
        )

    def _kmers(self, seq: str) -> list[str]:
        k = self.k
        strands = [seq, reverse_complement(seq)] if self.canonical else [seq]
        return [s[i : i + k] for s in strands for i in range(len(s) - k + 1)]

    def _prep(self, seqs) -> list[str]:
        return [str(s).upper() for s in seqs]

    def fit(self, seqs, labels) -> "KmerLogisticRegression":
        self.model.fit(self._prep(seqs), np.asarray(labels))
        return self

    def predict_proba(self, seqs) -> np.ndarray:
        return self.model.predict_proba(self._prep(seqs))
