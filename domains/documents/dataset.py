"""Label vocabularies, the torch ``DocumentDataset`` and class weights.

A vocabulary is built from the training split only; evaluation splits reuse it.
A label there that training never saw is, by ``unseen=``:

* ``"error"`` (default): a ValueError naming the labels and how to proceed;
* ``"map"``: single-label documents get index :data:`UNSEEN_INDEX` (-1, a
  bucket no model predicts, so it counts as an error in the metrics), and in
  multi-label documents the unseen labels are left out of the target vector;
  both are counted in ``dataset.report``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import DocumentTable
from .tokenizers import DocumentTokenizer, OVERFLOW_MODES, fit_length

UNSEEN_INDEX = -1
UNSEEN_MODES = ("error", "map")


class LabelVocabulary:
    """An ordered list of label values and their indices."""

    def __init__(self, labels):
        self.labels = list(labels)
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("label vocabulary has duplicates")
        self.index = {label: i for i, label in enumerate(self.labels)}

    @classmethod
    def from_table(cls, table: DocumentTable) -> "LabelVocabulary":
        """The sorted labels of ``table`` (every list element for multi-label tables)."""
        values = table.labels
        seen = {v for vs in values for v in vs} if table.multi_label else set(values)
        if None in seen:
            raise ValueError("labels contain nulls; fill or remove those documents")
        return cls(sorted(seen, key=lambda v: (str(type(v)), v)))

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label) -> bool:
        return label in self.index

    def names(self) -> list[str]:
        return [str(v) for v in self.labels]


@dataclass
class DatasetReport:
    """What a DocumentDataset did: truncation/chunking and unseen labels."""

    n_documents: int = 0
    n_truncated: int = 0
    n_tokens_dropped: int = 0
    n_chunked: int = 0
    n_unseen_documents: int = 0
    unseen_labels: Counter = field(default_factory=Counter)


class DocumentDataset(torch.utils.data.Dataset):
    """Tokenized documents with label targets, for a :class:`~.batching.DocumentCollator`.

    Items are dicts: ``input_ids`` (list of rows, each a 1-D int64 tensor; one
    row unless ``overflow="chunk"``), ``label`` (int for single-label, a float
    multi-hot (num_labels,) tensor for multi-label), ``length`` (tokens after
    the overflow policy, summed over chunks) and ``index``.

    Tokens are computed lazily per item; lengths (for bucketing and the
    truncation counts) are computed once at construction.
    """

    def __init__(self, table: DocumentTable, tokenizer: DocumentTokenizer,
                 vocab: LabelVocabulary | None = None, max_length: int | None = 32768,
                 overflow: str = "truncate", stride: int = 0, unseen: str = "error"):
        if overflow not in OVERFLOW_MODES:
            raise ValueError(f"overflow={overflow!r} is not one of {OVERFLOW_MODES}")
        if unseen not in UNSEEN_MODES:
            raise ValueError(f"unseen={unseen!r} is not one of {UNSEEN_MODES}")
        self.table, self.tokenizer = table, tokenizer
        self.multi_label = table.multi_label
        self.vocab = vocab if vocab is not None else LabelVocabulary.from_table(table)
        self.max_length, self.overflow, self.stride = max_length, overflow, stride
        self.texts = table.texts
        self.report = DatasetReport(n_documents=len(self.texts))
        self.targets = self._targets(table.labels, unseen)
        raw = np.array([tokenizer.count_tokens(t) for t in self.texts], dtype=np.int64)
        self.raw_lengths = raw
        if max_length is None:
            self.lengths = raw
        elif overflow == "error" and (raw > max_length).any():
            i = int(raw.argmax())
            raise ValueError(f"{int((raw > max_length).sum())} documents exceed max_length={max_length} "
                             f"(longest: document {i}, {int(raw[i])} tokens); raise max_length, or pass "
                             "overflow='truncate' (counted) or overflow='chunk'")
        elif overflow == "truncate":
            over = raw > max_length
            self.report.n_truncated = int(over.sum())
            self.report.n_tokens_dropped = int((raw[over] - max_length).sum())
            self.lengths = np.minimum(raw, max_length)
        else:
            self.report.n_chunked = int((raw > max_length).sum())
            self.lengths = raw

    def _targets(self, labels: list, unseen: str) -> list:
        missing = Counter(v for vs in labels for v in (vs if self.multi_label else [vs])
                          if v not in self.vocab)
        if missing and unseen == "error":
            raise ValueError(f"{sum(missing.values())} labels never seen in training: "
                             f"{dict(missing.most_common(10))}; pass unseen='map' to map them to an 'unseen' "
                             "bucket (counted), or add such documents to the training split")
        self.report.unseen_labels = missing
        if not self.multi_label:
            self.report.n_unseen_documents = sum(missing.values())
            return [self.vocab.index.get(v, UNSEEN_INDEX) for v in labels]
        targets = []
        for vs in labels:
            hot = torch.zeros(len(self.vocab))
            known = [self.vocab.index[v] for v in vs if v in self.vocab]
            hot[known] = 1.0
            self.report.n_unseen_documents += len(known) != len(vs)
            targets.append(hot)
        return targets

    @property
    def num_labels(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> dict:
        ids = self.tokenizer.encode(self.texts[i])
        rows, _ = fit_length([ids], self.max_length, self.overflow, self.stride)
        return {"input_ids": [torch.tensor(r, dtype=torch.long) for r in rows],
                "label": self.targets[i], "length": sum(len(r) for r in rows), "index": i}

    def label_matrix(self) -> np.ndarray:
        """Targets as an array: (docs,) int for single-label, (docs, num_labels) 0/1 for multi-label."""
        if self.multi_label:
            return torch.stack(self.targets).numpy().astype(np.int64) if self.targets else \
                np.zeros((0, self.num_labels), dtype=np.int64)
        return np.asarray(self.targets, dtype=np.int64)


def class_weights(dataset_or_targets, num_labels: int | None = None, scheme: str = "balanced",
                  multi_label: bool | None = None) -> torch.Tensor:
    """Loss weights against class imbalance, shape (num_labels,).

    Single-label, for ``CrossEntropyLoss(weight=...)``: ``"balanced"`` is
    n / (k * count_c); ``"inverse_sqrt"`` is 1 / sqrt(count_c), rescaled to mean 1.
    Multi-label, for ``BCEWithLogitsLoss(pos_weight=...)``: negatives / positives
    per label (``"inverse_sqrt"``: its square root). Classes with no example
    get weight 0 (single-label) or 1 (multi-label); unseen (-1) targets are ignored.
    """
    if scheme not in ("balanced", "inverse_sqrt"):
        raise ValueError(f"scheme={scheme!r} is not 'balanced' or 'inverse_sqrt'")
    if isinstance(dataset_or_targets, DocumentDataset):
        targets = dataset_or_targets.label_matrix()
        num_labels = dataset_or_targets.num_labels
        multi_label = dataset_or_targets.multi_label
    else:
        targets = np.asarray(dataset_or_targets)
        multi_label = targets.ndim == 2 if multi_label is None else multi_label
        if num_labels is None:
            num_labels = targets.shape[1] if multi_label else int(targets.max()) + 1
    if multi_label:
        pos = targets.sum(axis=0).astype(np.float64)
        neg = targets.shape[0] - pos
        w = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
        return torch.tensor(np.sqrt(w) if scheme == "inverse_sqrt" else w, dtype=torch.float32)
    targets = targets[targets >= 0]
    counts = np.bincount(targets, minlength=num_labels).astype(np.float64)
    present = counts > 0
    w = np.zeros(num_labels)
    if scheme == "balanced":
        w[present] = counts.sum() / (present.sum() * counts[present])
    else:
        w[present] = 1.0 / np.sqrt(counts[present])
        w[present] /= w[present].mean()
    return torch.tensor(w, dtype=torch.float32)
