"""Model-side DNA data: windows as token tensors, reverse-complement augmentation and
RC-averaged inference.

* :class:`DNAWindowDataset`: (sequence, label) windows tokenized once with a
  :class:`~.tokenizer.DNATokenizer`, optionally cropped around their centre;
  with ``rc_augment`` each ``__getitem__`` picks a random strand (drawn from
  torch's global RNG, so a seeded Trainer is reproducible). Given
  :class:`GenomeWindows` it keeps no tokens: each item is read and tokenized when asked for.
* :class:`GenomeWindows`: long windows (any length) read lazily from a reference FASTA,
  centred on given positions; :func:`centred_intervals` gives their coordinates and
  :func:`overlapping` flags windows that overlap held-out ones.
* :func:`collate_windows`: right-pads a batch with ``[PAD]`` (id 0).
* :func:`predict_logits`: batched inference, optionally averaging the logits
  of a window and of its reverse complement (sequence-level heads).
* :func:`pooled_features`: mean-pooled backbone features (batch, F) for
  embedding-based classifiers.
"""
from __future__ import annotations

import os
from collections.abc import Sequence as SequenceABC
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .tokenizer import PAD_ID, DNATokenizer


def center_crop(seq: str, length: int | None) -> str:
    """The central ``length`` bases of ``seq`` (all of it when ``length`` is None or >= len(seq)).

    The crop starts at ``len(seq) // 2 - length // 2``, so a base at the window's centre
    (index ``len // 2``, e.g. a variant) stays at the crop's centre (index ``length // 2``)."""
    if length is None or length >= len(seq):
        return seq
    if length < 1:
        raise ValueError(f"crop length must be >= 1, got {length}")
    start = len(seq) // 2 - length // 2
    return seq[start:start + length]


def centred_intervals(centres: Sequence[int], length: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends), 0-based half-open, of ``length`` bp windows with each centre at index
    ``length // 2`` (the convention of :meth:`~.fasta.Genome.window`); they may reach past
    contig ends, where the window is padded with N."""
    starts = np.asarray(centres, dtype=np.int64) - length // 2
    return starts, starts + length


def overlapping(chroms: Sequence[str], starts, ends, other_chroms: Sequence[str], other_starts, other_ends) -> np.ndarray:
    """Boolean mask (n,): which windows overlap (>= 1 bp) any of the ``other`` windows on the
    same contig ('chr20' and '20' are the same contig)."""
    key = lambda c: str(c).removeprefix("chr")  # noqa: E731
    starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    hit = np.zeros(len(starts), dtype=bool)
    others: dict[str, list[tuple[int, int]]] = {}
    for c, s, e in zip(other_chroms, np.asarray(other_starts).tolist(), np.asarray(other_ends).tolist()):
        others.setdefault(key(c), []).append((s, e))
    chrom_keys = np.asarray([key(c) for c in chroms])
    for c, spans in others.items():
        # merge into disjoint sorted spans: their ends are sorted too, so the last span that starts
        # before a window's end is the only one that can reach into it
        spans.sort()
        merged = [list(spans[0])]
        for s, e in spans[1:]:
            if s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        m_starts, m_ends = np.asarray(merged, dtype=np.int64).T
        rows = np.flatnonzero(chrom_keys == c)
        j = np.searchsorted(m_starts, ends[rows], side="left") - 1
        hit[rows] = (j >= 0) & (m_ends[np.maximum(j, 0)] > starts[rows])
    return hit


class GenomeWindows(SequenceABC):
    """``length`` bp windows of a reference FASTA read on demand (a read-only sequence of str).

    Window ``i`` has ``centres[i]`` (0-based) at index ``length // 2`` on the + strand and is
    reverse-complemented where ``strands[i] == '-'``; bases beyond a contig end are N (as
    :meth:`~.fasta.Genome.window`). Nothing is cached, so memory stays at one window however long
    or many they are; each process (e.g. a DataLoader worker) opens its own FASTA handle."""

    def __init__(self, genome: str | os.PathLike, chroms: Sequence[str], centres: Sequence[int], length: int,
                 strands: Sequence[str] | None = None):
        if length < 1:
            raise ValueError(f"window length must be >= 1, got {length}")
        if len(chroms) != len(centres) or (strands is not None and len(strands) != len(centres)):
            raise ValueError("chroms, centres and strands must have one entry per window")
        self.path, self.length = str(genome), int(length)
        self.chroms = [str(c) for c in chroms]
        self.centres = np.asarray(centres, dtype=np.int64)
        self.strands = list(strands) if strands is not None else ["+"] * len(self.chroms)
        self._genome, self._pid = None, None

    def genome(self):
        from .fasta import Genome

        if self._genome is None or self._pid != os.getpid():
            self._genome, self._pid = Genome(self.path), os.getpid()
        return self._genome

    def window(self, i: int):
        """The :class:`~.fasta.Window` of item ``i`` (sequence plus contig, coordinates, padding)."""
        return self.genome().window(self.chroms[i], int(self.centres[i]), self.length, self.strands[i] or "+")

    def __len__(self) -> int:
        return len(self.chroms)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.window(i).sequence

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_genome": None, "_pid": None}  # a file handle does not cross processes


class DNAWindowDataset(Dataset):
    """Tokenized DNA windows with optional labels.

    sequences: DNA strings (A C G T N, any case, IUPAC codes -> N);
    labels: one int (class) or float per window, or None for unlabelled / LM data;
    crop: keep only the central ``crop`` bases; rc_augment: a random strand per item.
    Items: ``{"input_ids": (L,) long, "labels": () long}`` (LM data: ``labels`` = the ids).
    ``sequences`` given as :class:`GenomeWindows` are read and tokenized per item (long windows:
    no token array of the whole set is held); any other sequence is tokenized once here."""

    def __init__(self, sequences: Sequence[str], labels: Sequence | None = None, tokenizer: DNATokenizer | None = None,
                 crop: int | None = None, rc_augment: bool = False, lm: bool = False):
        if len(sequences) == 0:
            raise ValueError("DNAWindowDataset got no sequences")
        if labels is not None and len(labels) != len(sequences):
            raise ValueError(f"{len(sequences)} sequences but {len(labels)} labels")
        if labels is not None and any(y is None for y in labels):
            missing = sum(y is None for y in labels)
            raise ValueError(f"{missing} window(s) have no label; drop them or fill the label column")
        self.tokenizer = tokenizer or DNATokenizer()
        self.rc_augment = rc_augment
        self.lm = lm
        self.crop = crop
        self.windows = sequences if isinstance(sequences, GenomeWindows) else None
        self.ids = None if self.windows is not None else [self._encode(s, i) for i, s in enumerate(sequences)]
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels))

    def _encode(self, seq: str, i: int) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(center_crop(seq, self.crop), name=f"window {i}"), dtype=np.int64)

    def token_ids(self, i: int) -> np.ndarray:
        """Token ids (L,) of window ``i`` on its forward strand."""
        return self.ids[i] if self.ids is not None else self._encode(self.windows[i], i)

    def __len__(self) -> int:
        return len(self.windows) if self.windows is not None else len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = self.token_ids(i)
        if self.rc_augment and bool(torch.rand(()) < 0.5):
            ids = self.tokenizer.reverse_complement_ids(ids)
        ids = torch.from_numpy(np.ascontiguousarray(ids))
        item = {"input_ids": ids}
        if self.lm:
            item["labels"] = ids
        elif self.labels is not None:
            item["labels"] = self.labels[i]
        return item


def collate_windows(batch: list[dict]) -> dict[str, torch.Tensor]:
    """Right-pads ``input_ids`` with [PAD]; ``attention_mask`` 1 = real base. Token-level labels
    (LM) are padded too; sequence labels are stacked."""
    length = max(len(e["input_ids"]) for e in batch)
    ids = torch.full((len(batch), length), PAD_ID, dtype=torch.long)
    mask = torch.zeros(len(batch), length, dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e["input_ids"])
        ids[i, :n] = e["input_ids"]
        mask[i, :n] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    if "labels" in batch[0]:
        labels = [e["labels"] for e in batch]
        out["labels"] = ids.clone() if labels[0].dim() == 1 else torch.stack(labels)
    return out


class MaskedLMCollate:
    """``collate_windows`` for masked-LM pretraining of a bidirectional model: ``fraction`` of the real
    bases are chosen; of those 80% become [MASK], 10% a random base and 10% stay; ``labels`` hold the
    original token there and -100 elsewhere. Masks are drawn from torch's global generator (seeded by
    the Trainer), anew each epoch; :class:`MaskedEval` items come masked already and are only padded."""

    def __init__(self, tokenizer: DNATokenizer, fraction: float = 0.15):
        if not 0 < fraction < 1:
            raise ValueError(f"the masked fraction must be in (0, 1), got {fraction}")
        self.tokenizer, self.fraction = tokenizer, fraction
        vocab = tokenizer.get_vocab()
        self.bases = torch.tensor([vocab[b] for b in "ACGT"])

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        out = collate_windows([{"input_ids": e["input_ids"]} for e in batch])
        if batch[0].get("premasked"):  # MaskedEval items: masked once, padded here
            labels = torch.full_like(out["input_ids"], -100)
            for i, e in enumerate(batch):
                labels[i, :len(e["labels"])] = e["labels"]
            out["labels"] = labels
            return out
        inputs, labels = self.mask(out["input_ids"], out["attention_mask"].bool())
        out.update(input_ids=inputs, labels=labels)
        return out

    def mask(self, ids: torch.Tensor, real: torch.Tensor, gen: torch.Generator | None = None):
        """(masked inputs, labels) for ids (batch, L) whose real positions are ``real``."""
        u = torch.rand(ids.shape, generator=gen)
        chosen = real & (u < self.fraction)
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        v = torch.rand(ids.shape, generator=gen)
        inputs = ids.clone()
        inputs[chosen & (v < 0.8)] = self.tokenizer.mask_id
        swap = chosen & (v >= 0.8) & (v < 0.9)
        inputs[swap] = self.bases[torch.randint(0, 4, (int(swap.sum()),), generator=gen)]
        return inputs, labels


class MaskedEval(Dataset):
    """A DNA dataset whose windows are masked once, with a generator seeded per window (seed + index), so
    every evaluation of a masked LM scores the same masked bases. Batch it with :class:`MaskedLMCollate`."""

    def __init__(self, dataset, collate: MaskedLMCollate, seed: int = 0):
        self.dataset, self.collate, self.seed = dataset, collate, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        ids = self.dataset[i]["input_ids"]
        gen = torch.Generator().manual_seed(self.seed + i)
        inputs, labels = self.collate.mask(ids[None], torch.ones(1, len(ids), dtype=torch.bool), gen)
        return {"input_ids": inputs[0], "labels": labels[0], "premasked": True}


def _batches(dataset: DNAWindowDataset, batch_size: int):
    for start in range(0, len(dataset), batch_size):
        items = [{"input_ids": torch.from_numpy(dataset.token_ids(i))} for i in range(start, min(start + batch_size, len(dataset)))]
        yield collate_windows(items)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, dataset: DNAWindowDataset, batch_size: int = 32,
                   rc_average: bool = True) -> torch.Tensor:
    """Sequence-level logits (n, classes) on the forward strand, or the mean of the forward and
    reverse-complement logits when ``rc_average`` (right padding stays on the right)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for batch in _batches(dataset, batch_size):
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        logits = model(ids, mask).logits.float()
        if rc_average:
            rc = dataset.tokenizer.reverse_complement_ids(ids)
            logits = (logits + model(rc, mask).logits.float()) / 2
        out.append(logits.cpu())
    model.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def pooled_features(backbone: torch.nn.Module, dataset: DNAWindowDataset, batch_size: int = 32,
                    rc_average: bool = True) -> np.ndarray:
    """Mean-pooled backbone features (n, F) of each window (averaged over both strands when
    ``rc_average``). ``backbone`` is a MambaModel (``model.backbone``)."""
    from mambatune.core import pool

    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    out = []
    for batch in _batches(dataset, batch_size):
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        feats = pool(backbone(ids, mask).float(), mask, "mean")
        if rc_average:
            rc = dataset.tokenizer.reverse_complement_ids(ids)
            feats = (feats + pool(backbone(rc, mask).float(), mask, "mean")) / 2
        out.append(feats.cpu().numpy())
    backbone.train(was_training)
    return np.concatenate(out)
