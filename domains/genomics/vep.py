"""Variant-effect prediction (VEP) with a DNA model: zero-shot and supervised.

Windows hold the variant at their centre (index ``len // 2``, as ``load_variants``
writes them and :func:`~.sequence_data.center_crop` keeps them).

Zero-shot (:func:`lm_log_likelihood_ratio`): the log-likelihood ratio of the alt
vs the ref window under a *causal* DNA LM (a ``MambaForTask`` with its LM head),

    LLR = sum_t log p(alt_t | alt_<t) - sum_t log p(ref_t | ref_<t),

summed over every predicted token of the window (t >= 1; tokens before the variant
are identical in both and cancel). A causal model sees only the left context of
the variant, so the same ratio is also taken on the reverse-complement windows
(the right context read on the other strand) and the two are averaged. A variant
that makes the sequence less likely (negative LLR) is scored as more deleterious:
``score = -LLR``. :class:`MarkovLM` is the classical counterpart: an order-k
Markov chain counted on both strands of a corpus.

Supervised: :func:`pair_features` (mean-pooled ref features and the local
difference alt - ref around the variant) for a logistic regression, and
:class:`VariantPairClassifier` (the backbone + a linear head on the same
features) for end-to-end fine-tuning with the Trainer and any PEFT method.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .sequence_data import center_crop
from .tokenizer import PAD_ID, DNATokenizer, clean_sequence, reverse_complement
from .vcf import alt_sequence


def variant_pairs(ref_seqs: Sequence[str], refs: Sequence[str], alts: Sequence[str],
                  crop: int | None = None) -> tuple[list[str], list[str]]:
    """(ref windows, alt windows) with the variant at the centre, cropped around it to ``crop`` bases.

    Only SNVs/MNVs keep the window exact (see :func:`~.vcf.alt_sequence`)."""
    if not (len(ref_seqs) == len(refs) == len(alts)):
        raise ValueError(f"ref_seqs, refs and alts differ in length: {len(ref_seqs)}, {len(refs)}, {len(alts)}")
    ref_out, alt_out = [], []
    for seq, ref, alt in zip(ref_seqs, refs, alts):
        centre = len(seq) // 2
        alt_seq = alt_sequence(seq, centre, ref, alt)
        ref_out.append(center_crop(seq, crop))
        alt_out.append(center_crop(alt_seq, crop))
    return ref_out, alt_out


def haplotype_windows(wide: str, offset: int, ref: str, alt: str, length: int) -> tuple[str, str]:
    """Equal-length ref and alt windows of ``length`` bases for any variant (SNV, MNV, insertion,
    deletion, complex): the same ``length // 2`` bases before the variant, then REF (or ALT) and the
    bases that follow it in the genome, up to ``length``. The two windows share everything left of
    the variant, and a causal LM's LLR over them compares equally many tokens (no length bias). For
    an SNV this is the window cropped around the variant (:func:`variant_pairs`).

    ``wide``: genome bases holding REF at ``offset``, with at least ``length // 2`` bases before it
    and ``length`` after it (N-padded at contig ends is fine)."""
    if wide[offset:offset + len(ref)] != ref:
        raise ValueError(f"REF {ref!r} does not match the bases at offset {offset} "
                         f"({wide[offset:offset + len(ref)]!r}); normalise variants against the genome first")
    left = length // 2
    if offset < left or len(wide) < offset + len(ref) + length:
        raise ValueError(f"need {left} bases before the variant and {length} after its REF; "
                         f"got {offset} and {len(wide) - offset - len(ref)}")
    before, after = wide[offset - left:offset], wide[offset + len(ref):]
    return (before + ref + after)[:length], (before + alt + after)[:length]


# -- zero-shot ---------------------------------------------------------------------------------

@torch.no_grad()
def sequence_log_likelihood(model: nn.Module, input_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """log p(x_1..x_{L-1} | x_0) under a causal LM, per row: input_ids (batch, L) unpadded -> (batch,)."""
    logits = model(input_ids).logits[..., :vocab_size].float()
    logp = F.log_softmax(logits[:, :-1], -1)
    return logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1).sum(-1)


def _strand_batches(ref_windows: Sequence[str], alt_windows: Sequence[str], batch_size: int, both_strands: bool):
    """Batches of ref / alt windows, each as a list of (refs, alts) per strand (the reverse complement too
    when ``both_strands``)."""
    if len(ref_windows) != len(alt_windows):
        raise ValueError(f"{len(ref_windows)} ref windows but {len(alt_windows)} alt windows")
    for start in range(0, len(ref_windows), batch_size):
        refs, alts = ref_windows[start:start + batch_size], alt_windows[start:start + batch_size]
        strands = [(refs, alts)]
        if both_strands:
            strands.append(([reverse_complement(s) for s in refs], [reverse_complement(s) for s in alts]))
        yield strands


@torch.no_grad()
def lm_log_likelihood_ratio(model: nn.Module, ref_windows: Sequence[str], alt_windows: Sequence[str],
                            tokenizer: DNATokenizer | None = None, batch_size: int = 16,
                            both_strands: bool = True) -> np.ndarray:
    """LLR = log p(alt) - log p(ref) per variant (n,), averaged over both strands when ``both_strands``.

    ``model``: a causal MambaForTask with an LM head (``model.head.kind == "lm"``). Ref and alt windows
    of one variant must have the same length (SNVs)."""
    if getattr(getattr(model, "head", None), "kind", None) != "lm":
        raise ValueError("zero-shot VEP needs a causal language model (a MambaForTask with its LM head); "
                         "pretrain one with `mambatune run genomics/pretrain_dna`")
    tokenizer = tokenizer or DNATokenizer()
    if getattr(model.config, "bidirectional", False):
        # a bidirectional (masked) LM sees the token it would predict next: score the masked marginal instead
        return masked_marginal_ratio(model, ref_windows, alt_windows, tokenizer, batch_size, both_strands)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    vocab = tokenizer.vocab_size
    out = []
    for strands in _strand_batches(ref_windows, alt_windows, batch_size, both_strands):
        total = 0.0
        for r, a in strands:
            for seqs in (r, a):
                if len({len(s) for s in seqs}) != 1:
                    raise ValueError("windows of one batch must have the same length (crop them to a common size)")
            r_ids = torch.tensor([tokenizer.encode(s) for s in r], device=device)
            a_ids = torch.tensor([tokenizer.encode(s) for s in a], device=device)
            if r_ids.shape != a_ids.shape:
                raise ValueError("ref and alt windows must have the same length; for indels make equal-length "
                                 "windows with haplotype_windows")
            total = total + (sequence_log_likelihood(model, a_ids, vocab) - sequence_log_likelihood(model, r_ids, vocab))
        out.append((total / len(strands)).cpu().numpy())
    model.train(was_training)
    return np.concatenate(out).astype(np.float64)


@torch.no_grad()
def masked_marginal_ratio(model: nn.Module, ref_windows: Sequence[str], alt_windows: Sequence[str],
                          tokenizer: DNATokenizer | None = None, batch_size: int = 16,
                          both_strands: bool = True) -> np.ndarray:
    """Zero-shot score of a masked (bidirectional) DNA LM, e.g. Caduceus: the variant position is masked in
    the ref window and ``log p(alt base) - log p(ref base)`` read there (the masked-marginal score), averaged
    over both strands when ``both_strands``. SNVs only: ref and alt windows differ at exactly one position."""
    tokenizer = tokenizer or DNATokenizer()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for strands in _strand_batches(ref_windows, alt_windows, batch_size, both_strands):
        total = 0.0
        for r, a in strands:
            r_ids = torch.tensor([tokenizer.encode(x) for x in r], device=device)
            a_ids = torch.tensor([tokenizer.encode(x) for x in a], device=device)
            if r_ids.shape != a_ids.shape:
                raise ValueError("ref and alt windows must have the same length (SNVs); indels are not scored")
            diff = r_ids != a_ids
            if not bool((diff.sum(1) == 1).all()):
                raise ValueError("the masked-marginal score needs ref and alt windows that differ at exactly one "
                                 "position (SNVs)")
            pos = diff.float().argmax(1)
            rows = torch.arange(len(r_ids), device=device)
            masked = r_ids.clone()
            masked[rows, pos] = tokenizer.mask_id
            logp = F.log_softmax(model(masked).logits[rows, pos].float(), -1)
            total = total + (logp[rows, a_ids[rows, pos]] - logp[rows, r_ids[rows, pos]])
        out.append((total / len(strands)).cpu().numpy())
    model.train(was_training)
    return np.concatenate(out).astype(np.float64)


class MarkovLM:
    """Order-``k`` Markov chain over A C G T with add-one smoothing, counted on both strands.

    ``log_likelihood_ratio(ref, alt)`` sums log p over the positions whose context or
    symbol differs, i.e. the zero-shot LLR of a k-mer model (N-containing contexts are skipped)."""

    def __init__(self, k: int = 5):
        if not 1 <= k <= 10:
            raise ValueError(f"k must be in 1..10, got {k}")
        self.k = k
        self.counts = np.zeros(4 ** (k + 1), dtype=np.float64)

    def _codes(self, seq: str) -> np.ndarray:
        return clean_sequence(seq)[0].astype(np.int64)

    def _index(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(k+1)-mer index per position t >= k and whether it is N-free."""
        k = self.k
        win = np.lib.stride_tricks.sliding_window_view(codes, k + 1)
        ok = (win < 4).all(1)
        idx = (np.minimum(win, 3) * (4 ** np.arange(k, -1, -1))).sum(1)
        return idx, ok

    def fit(self, sequences: Sequence[str]) -> "MarkovLM":
        for s in sequences:
            for strand in (s, reverse_complement(s)):
                codes = self._codes(strand)
                if len(codes) <= self.k:
                    continue
                idx, ok = self._index(codes)
                np.add.at(self.counts, idx[ok], 1.0)
        return self

    def log_probs(self, seq: str) -> np.ndarray:
        """log p(x_t | x_{t-k..t-1}) for t >= k (0 where the (k+1)-mer holds an N)."""
        idx, ok = self._index(self._codes(seq))
        ctx = self.counts.reshape(-1, 4).sum(1)
        lp = np.log(self.counts[idx] + 1.0) - np.log(ctx[idx // 4] + 4.0)
        return np.where(ok, lp, 0.0)

    def log_likelihood_ratio(self, ref_windows: Sequence[str], alt_windows: Sequence[str]) -> np.ndarray:
        return np.array([float(self.log_probs(a).sum() - self.log_probs(r).sum())
                         for r, a in zip(ref_windows, alt_windows)])


# -- supervised ------------------------------------------------------------------------------

def local_mean(hidden: torch.Tensor, mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean of hidden (batch, L, F) over the real positions within ``radius`` of each row's centre."""
    lengths = mask.sum(1)
    centre = lengths // 2
    pos = torch.arange(hidden.shape[1], device=hidden.device)[None]
    near = ((pos - centre[:, None]).abs() <= radius) & mask.bool()
    m = near[..., None].to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1)


def pair_embedding(hidden_ref: torch.Tensor, hidden_alt: torch.Tensor, mask: torch.Tensor, radius: int) -> torch.Tensor:
    """[mean-pooled ref features, local mean (alt - ref) around the variant] -> (batch, 2F)."""
    m = mask[..., None].to(hidden_ref.dtype)
    ref_mean = (hidden_ref * m).sum(1) / m.sum(1)
    diff = local_mean(hidden_alt - hidden_ref, mask, radius)
    return torch.cat([ref_mean, diff], -1)


def encode_pairs(tokenizer: DNATokenizer, ref_windows: Sequence[str], alt_windows: Sequence[str]) -> list[np.ndarray]:
    """Per variant an int64 array (2, L): ref and alt token ids."""
    out = []
    for i, (r, a) in enumerate(zip(ref_windows, alt_windows)):
        r_ids, a_ids = tokenizer.encode(r, name=f"ref window {i}"), tokenizer.encode(a, name=f"alt window {i}")
        if len(r_ids) != len(a_ids):
            raise ValueError(f"variant {i}: ref and alt windows differ in length (indel); only SNVs/MNVs are supported")
        out.append(np.stack([r_ids, a_ids]).astype(np.int64))
    return out


class VariantPairDataset(torch.utils.data.Dataset):
    """(ref, alt) window pairs with labels; ``rc_augment`` flips both windows of a pair to the other strand."""

    def __init__(self, ref_windows: Sequence[str], alt_windows: Sequence[str], labels: Sequence[int] | None = None,
                 tokenizer: DNATokenizer | None = None, rc_augment: bool = False):
        if len(ref_windows) == 0:
            raise ValueError("VariantPairDataset got no variants")
        if labels is not None and len(labels) != len(ref_windows):
            raise ValueError(f"{len(ref_windows)} variants but {len(labels)} labels")
        self.tokenizer = tokenizer or DNATokenizer()
        self.pairs = encode_pairs(self.tokenizer, ref_windows, alt_windows)
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.rc_augment = rc_augment

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        pair = self.pairs[i]
        if self.rc_augment and bool(torch.rand(()) < 0.5):
            pair = self.tokenizer.reverse_complement_ids(pair)
        item = {"input_ids": torch.from_numpy(np.ascontiguousarray(pair))}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item


def collate_pairs(batch: list[dict]) -> dict[str, torch.Tensor]:
    """input_ids and attention_mask (batch, 2, L), right-padded; labels (batch,)."""
    length = max(e["input_ids"].shape[1] for e in batch)
    ids = torch.full((len(batch), 2, length), PAD_ID, dtype=torch.long)
    for i, e in enumerate(batch):
        ids[i, :, : e["input_ids"].shape[1]] = e["input_ids"]
    out = {"input_ids": ids, "attention_mask": (ids != PAD_ID).long()}
    if "labels" in batch[0]:
        out["labels"] = torch.stack([e["labels"] for e in batch])
    return out


class PairHead(nn.Module):
    """Linear classifier on :func:`pair_embedding` features (2F -> num_labels)."""

    kind = "variant_pair"
    sequence_level = True

    def __init__(self, feature_dim: int, num_labels: int = 2, radius: int = 16, dropout: float = 0.0):
        super().__init__()
        self.spec = {"kind": self.kind, "num_labels": num_labels, "radius": radius, "dropout": dropout}
        self.radius = radius
        self.norm = nn.LayerNorm(2 * feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(2 * feature_dim, num_labels)

    def forward(self, hidden_ref, hidden_alt, mask):
        return self.proj(self.dropout(self.norm(pair_embedding(hidden_ref, hidden_alt, mask, self.radius))))


class VariantPairClassifier(nn.Module):
    """A Mamba backbone read on the ref and the alt window, and a :class:`PairHead`.

    ``forward(input_ids (batch, 2, L), attention_mask (batch, 2, L), labels (batch,))`` -> TaskOutput.
    It exposes ``.backbone`` and ``.head`` like MambaForTask, so PEFT methods and the Trainer apply."""

    def __init__(self, backbone: nn.Module, num_labels: int = 2, radius: int = 16, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.config = backbone.config
        self.head = PairHead(backbone.feature_dim, num_labels, radius, dropout)

    def forward(self, input_ids, attention_mask=None, labels=None):
        from mambatune.core import TaskOutput

        if input_ids.dim() != 3 or input_ids.shape[1] != 2:
            raise ValueError(f"input_ids must be (batch, 2, L) ref/alt pairs, got {tuple(input_ids.shape)}")
        b, _, length = input_ids.shape
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        hidden = self.backbone(input_ids.reshape(2 * b, length), mask.reshape(2 * b, length))
        hidden = hidden.reshape(b, 2, length, -1)
        logits = self.head(hidden[:, 0], hidden[:, 1], mask[:, 0])
        loss = F.cross_entropy(logits.float(), labels.long()) if labels is not None else None
        return TaskOutput(logits=logits, loss=loss)


@torch.no_grad()
def pair_features(backbone: nn.Module, ref_windows: Sequence[str], alt_windows: Sequence[str],
                  tokenizer: DNATokenizer | None = None, batch_size: int = 16, radius: int = 16,
                  rc_average: bool = True) -> np.ndarray:
    """:func:`pair_embedding` features (n, 2F) of each variant from a frozen backbone (a MambaModel),
    averaged over both strands when ``rc_average``; input to a logistic regression."""
    tokenizer = tokenizer or DNATokenizer()
    data = VariantPairDataset(ref_windows, alt_windows, tokenizer=tokenizer)
    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    out = []
    for start in range(0, len(data), batch_size):
        batch = collate_pairs([data[i] for i in range(start, min(start + batch_size, len(data)))])
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        strands = [ids] + ([tokenizer.reverse_complement_ids(ids.reshape(-1, ids.shape[-1])).reshape(ids.shape)]
                           if rc_average else [])
        feats = 0
        for x in strands:
            b, _, length = x.shape
            h = backbone(x.reshape(2 * b, length), mask.reshape(2 * b, length)).float().reshape(b, 2, length, -1)
            feats = feats + pair_embedding(h[:, 0], h[:, 1], mask[:, 0], radius)
        out.append((feats / len(strands)).cpu().numpy())
    backbone.train(was_training)
    return np.concatenate(out)


def fit_embedding_classifier(train_features: np.ndarray, train_labels: Sequence[int], C: float = 0.1, seed: int = 0):
    """Standardised features -> L2 logistic regression (scikit-learn pipeline with ``predict_proba``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=seed)).fit(
        train_features, np.asarray(train_labels))
