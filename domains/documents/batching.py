"""Length-bucketed batches and the collator that pads them.

Long documents vary from a few hundred to tens of thousands of tokens; random
batches pad every document to the longest. :class:`LengthBucketSampler` groups
documents of similar length (shuffled between epochs, seeded), and can cap the
padded tokens per batch instead of the document count.
"""
from __future__ import annotations

import numpy as np
import torch

from .tokenizers import pad_rows


class LengthBucketSampler(torch.utils.data.Sampler):
    """Yields lists of indices whose documents have similar lengths.

    Each epoch: shuffle the indices (seeded by ``seed + epoch``), cut them into
    pools of ``batch_size * pool_batches``, sort each pool by length, cut it into
    batches, and shuffle the batch order. With ``max_tokens``, a batch also stops
    growing before ``rows * longest`` would exceed it (a single longer document
    still forms a batch of one). Call :meth:`set_epoch` for a new order.
    """

    def __init__(self, lengths, batch_size: int, max_tokens: int | None = None, shuffle: bool = True,
                 seed: int = 0, pool_batches: int = 50, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.shuffle, self.seed, self.pool_batches, self.drop_last = shuffle, seed, pool_batches, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        pool = self.batch_size * self.pool_batches if self.shuffle else len(order)
        out: list[list[int]] = []
        for start in range(0, len(order), max(pool, 1)):
            chunk = order[start:start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            out.extend(self._cut(chunk))
        if self.drop_last:
            out = [b for b in out if len(b) == self.batch_size]
        if self.shuffle:
            out = [out[i] for i in rng.permutation(len(out))]
        return out

    def _cut(self, sorted_idx: np.ndarray) -> list[list[int]]:
        out, current, longest = [], [], 0
        for i in sorted_idx.tolist():
            new_longest = max(longest, int(self.lengths[i]))
            too_many = len(current) >= self.batch_size
            too_big = self.max_tokens is not None and current and new_longest * (len(current) + 1) > self.max_tokens
            if too_many or too_big:
                out.append(current)
                current, new_longest = [], int(self.lengths[i])
            current.append(i)
            longest = new_longest
        if current:
            out.append(current)
        return out

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def padding_fraction(lengths, batches: list[list[int]]) -> float:
    """Share of a batch grid that is padding (0 = none)."""
    lengths = np.asarray(lengths)
    real = sum(int(lengths[b].sum()) for b in batches)
    grid = sum(int(lengths[b].max()) * len(b) for b in batches)
    return 1.0 - real / grid if grid else 0.0


class DocumentCollator:
    """Pads :class:`~.dataset.DocumentDataset` items into a batch dict.

    Returns ``input_ids`` and ``attention_mask`` (rows, length), ``lengths``
    (rows,), ``doc_index`` (rows,) mapping chunk rows to documents (identity
    without chunking), ``labels`` ((docs,) int64, or (docs, num_labels) float
    for multi-label) and ``index`` (docs,) dataset indices.
    """

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None):
        self.pad_id, self.pad_to_multiple_of = pad_id, pad_to_multiple_of

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        rows, doc_index = [], []
        for d, item in enumerate(items):
            rows.extend(item["input_ids"])
            doc_index.extend([d] * len(item["input_ids"]))
        input_ids, attention_mask, lengths = pad_rows(rows, self.pad_id, self.pad_to_multiple_of)
        labels = [item["label"] for item in items]
        labels = torch.stack(labels) if isinstance(labels[0], torch.Tensor) else torch.tensor(labels, dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "lengths": lengths,
                "doc_index": torch.tensor(doc_index, dtype=torch.long), "labels": labels,
                "index": torch.tensor([item["index"] for item in items], dtype=torch.long)}
