"""What training a Mamba classifier on documents needs beyond the generic Trainer.

* :class:`BucketedBatches`: length-bucketed batches as a map-style dataset (one
  item = one batch of documents), so the generic ``Trainer`` (whose sampler
  shuffles items) shuffles the order of the buckets while every batch keeps
  documents of similar length; use it with ``batch_size=1`` and :class:`BatchCollate`;
* :class:`DocumentClassifier`: a ``MambaForTask`` with a sequence head, extended to
  chunked documents: each chunk is pooled as the head pools, the chunks of a
  document are pooled again (:func:`~.tokenizers.pool_chunks`), then the head scores it;
* :func:`predict_scores`: per-document logits in dataset order;
* :func:`lm_windows`: byte (or token) windows of texts for causal-LM pretraining.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .batching import DocumentCollator, LengthBucketSampler
from .tokenizers import DocumentTokenizer, pool_chunks

MODEL_KEYS = ("input_ids", "attention_mask", "labels", "doc_index")


class BucketedBatches(torch.utils.data.Dataset):
    """Batches of ``dataset`` indices from a :class:`LengthBucketSampler` (fixed for the run).

    ``indices`` restricts it to some documents (e.g. those with a known label).
    """

    def __init__(self, dataset, batch_size: int, max_tokens: int | None = None, shuffle: bool = True,
                 seed: int = 0, indices=None):
        self.dataset = dataset
        indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
        sampler = LengthBucketSampler(np.asarray(dataset.lengths)[indices], batch_size, max_tokens,
                                      shuffle=shuffle, seed=seed)
        self.batches = [[int(indices[i]) for i in b] for b in sampler.batches()]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> list[dict]:
        return [self.dataset[j] for j in self.batches[i]]


class BatchCollate:
    """``collate_fn`` for a DataLoader over :class:`BucketedBatches` with ``batch_size=1``: pads the
    one batch and keeps the keys a :class:`DocumentClassifier` takes."""

    def __init__(self, pad_id: int):
        self.collator = DocumentCollator(pad_id)

    def __call__(self, items: list[list[dict]]) -> dict[str, torch.Tensor]:
        docs = [d for batch in items for d in batch]
        batch = self.collator(docs)
        return {k: batch[k] for k in MODEL_KEYS}


class DocumentClassifier(nn.Module):
    """``model`` (a MambaForTask with a classification or multilabel head) over documents that may
    be cut into chunks. forward(input_ids (rows, L), attention_mask (rows, L), labels (docs,) or
    (docs, C), doc_index (rows,)) -> TaskOutput with logits (docs, C)."""

    def __init__(self, model: nn.Module, chunk_pool: str = "mean"):
        super().__init__()
        if chunk_pool not in ("mean", "max"):
            raise ValueError(f"chunk_pool must be 'mean' or 'max', got {chunk_pool!r}")
        self.model = model
        self.chunk_pool = chunk_pool

    @property
    def backbone(self):
        return self.model.backbone

    @property
    def config(self):
        return self.model.config

    def forward(self, input_ids, attention_mask=None, labels=None, doc_index=None):
        rows = input_ids.shape[0]
        n_docs = labels.shape[0] if labels is not None else (int(doc_index.max()) + 1 if doc_index is not None else rows)
        if doc_index is None or n_docs == rows:
            return self.model(input_ids, attention_mask, labels=labels)
        from mambatune.core.heads import TaskOutput
        head = self.model.head
        hidden = self.model.backbone(input_ids, attention_mask)
        features = pool_chunks(head.pooled(hidden, attention_mask), doc_index, n_docs, self.chunk_pool)
        logits = head.score(head.dropout(features))
        loss = head.loss(logits, labels) if labels is not None else None
        return TaskOutput(logits=logits, loss=loss)


@torch.no_grad()
def predict_scores(model: nn.Module, dataset, batch_size: int, max_tokens: int | None = None) -> np.ndarray:
    """Logits (docs, C) of every document of ``dataset``, in dataset order."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    collate = DocumentCollator(dataset.tokenizer.pad_id)
    out = None
    for b in LengthBucketSampler(dataset.lengths, batch_size, max_tokens, shuffle=False).batches():
        batch = collate([dataset[i] for i in b])
        logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device),
                       doc_index=batch["doc_index"].to(device)).logits.float().cpu().numpy()
        if out is None:
            out = np.zeros((len(dataset), logits.shape[1]), dtype=np.float64)
        out[batch["index"].numpy()] = logits
    model.train(was_training)
    return out if out is not None else np.zeros((0, 0))


def lm_windows(texts: list[str], tokenizer: DocumentTokenizer, length: int, min_length: int = 16,
               max_windows: int | None = None) -> list[torch.Tensor]:
    """Every text cut into consecutive windows of ``length`` tokens (a shorter tail is kept when it
    has ``min_length`` tokens or more); at most ``max_windows`` (the first ones)."""
    out = []
    for text in texts:
        ids = tokenizer.encode(text)
        for start in range(0, len(ids), length):
            piece = ids[start:start + length]
            if len(piece) >= min(min_length, length):
                out.append(torch.tensor(piece, dtype=torch.long))
            if max_windows is not None and len(out) >= max_windows:
                return out
    return out


def collate_lm(pad_id: int):
    """A collate function for causal-LM windows: labels are the input ids (padding ignored by the mask)."""
    def collate(items: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        from .tokenizers import pad_rows
        ids, mask, _ = pad_rows(items, pad_id)
        return {"input_ids": ids, "attention_mask": mask, "labels": ids}
    return collate
