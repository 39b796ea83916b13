"""Task heads with one interface, and the model that joins a backbone and a head.

A head maps backbone features (batch, L, F) and the attention mask to outputs,
and computes its loss from labels: ``logits = head(hidden, mask)``,
``loss = head.loss(logits, labels, mask)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import MambaConfig
from .model import MambaCache, MambaModel

POOLINGS = ("last", "mean", "max", "cls", "attention")


def pool(hidden: torch.Tensor, mask: torch.Tensor | None, how: str, scores: torch.Tensor | None = None) -> torch.Tensor:
    """hidden (batch, L, F), mask (batch, L) 1 = real -> (batch, F), ignoring padded steps.

    ``attention``: the mean weighted by ``softmax(scores)`` over the real steps; ``scores`` (batch, L)
    come from the head's learned scorer (see :class:`SequenceClassificationHead`)."""
    if how not in POOLINGS:
        raise ValueError(f"unknown pooling {how!r}; choose one of {POOLINGS}")
    batch, length, _ = hidden.shape
    if mask is None:
        mask = torch.ones(batch, length, dtype=torch.bool, device=hidden.device)
    mask = mask.bool()
    if not torch.compiler.is_compiling() and not bool(mask.any(1).all()):  # a value check: eager only
        raise ValueError("a sequence in the batch has no real token (its attention mask is all zeros)")
    pos = torch.arange(length, device=hidden.device)
    if how == "last":
        idx = torch.where(mask, pos, -1).max(1).values
        return hidden[torch.arange(batch, device=hidden.device), idx]
    if how == "cls":
        idx = torch.where(mask, pos, length).min(1).values
        return hidden[torch.arange(batch, device=hidden.device), idx]
    if how == "attention":
        if scores is None:
            raise ValueError("attention pooling needs per-step scores (batch, L): a head with pooling='attention' "
                             "computes them")
        weights = scores.float().masked_fill(~mask, float("-inf")).softmax(1)
        return (hidden * weights[..., None].to(hidden.dtype)).sum(1)
    m = mask[..., None].to(hidden.dtype)
    if how == "mean":
        return (hidden * m).sum(1) / m.sum(1)
    return hidden.masked_fill(~mask[..., None], float("-inf")).max(1).values


class Head(nn.Module):
    """Base class: ``forward(hidden, mask) -> logits``; ``loss(logits, labels, mask) -> scalar``."""

    sequence_level = True  # one output per sequence (False: one per position)
    kind = "head"
    spec: dict  # constructor arguments, saved with checkpoints

    def set_pooling(self, pooling: str, feature_dim: int) -> None:
        """``pooling`` (one of POOLINGS); ``attention`` adds a learned scorer (feature_dim -> 1) that starts
        at zero, so attention pooling starts as mean pooling."""
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        self.pooling = pooling
        if pooling == "attention":
            self.attention = nn.Linear(feature_dim, 1)
            nn.init.zeros_(self.attention.weight)
            nn.init.zeros_(self.attention.bias)

    def pooled(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """(batch, L, F) -> (batch, F) by this head's pooling."""
        scores = self.attention(hidden).squeeze(-1) if self.pooling == "attention" else None
        return pool(hidden, mask, self.pooling, scores)

    def loss(self, logits, labels, mask=None):
        raise NotImplementedError


class SequenceClassificationHead(Head):
    """Single-label classification of a whole sequence (cross-entropy, optional class weights)."""

    kind = "classification"

    def __init__(self, feature_dim: int, num_labels: int, pooling: str = "mean", dropout: float = 0.0,
                 class_weights: list[float] | None = None):
        super().__init__()
        self.spec = {"kind": self.kind, "num_labels": num_labels, "pooling": pooling, "dropout": dropout,
                     "class_weights": class_weights}
        if num_labels < 2:
            raise ValueError(f"classification needs num_labels >= 2, got {num_labels}")
        self.set_pooling(pooling, feature_dim)
        self.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        self.score = nn.Linear(feature_dim, num_labels)
        self.register_buffer("class_weights", torch.tensor(class_weights, dtype=torch.float32) if class_weights else None)

    def forward(self, hidden, mask=None):
        return self.score(self.dropout(self.pooled(hidden, mask)))

    def loss(self, logits, labels, mask=None):
        labels = labels.long()
        checked = labels.numel() and not torch.compiler.is_compiling()  # a value check: eager only
        if checked and (int(labels.min()) < 0 or int(labels.max()) >= self.num_labels):
            raise ValueError(f"label out of range 0..{self.num_labels - 1}: got {labels.min().item()}..{labels.max().item()}")
        return F.cross_entropy(logits.float(), labels, weight=self.class_weights)


class MultiLabelHead(SequenceClassificationHead):
    """Several independent labels per sequence (binary cross-entropy on multi-hot targets)."""

    kind = "multilabel"

    def __init__(self, feature_dim: int, num_labels: int, pooling: str = "mean", dropout: float = 0.0,
                 pos_weight: list[float] | None = None):
        super().__init__(feature_dim, max(num_labels, 2), pooling, dropout)
        self.spec = {"kind": self.kind, "num_labels": num_labels, "pooling": pooling, "dropout": dropout,
                     "pos_weight": pos_weight}
        self.num_labels = num_labels
        self.score = nn.Linear(feature_dim, num_labels)
        self.register_buffer("pos_weight", torch.tensor(pos_weight, dtype=torch.float32) if pos_weight else None)

    def loss(self, logits, labels, mask=None):
        if labels.shape != logits.shape:
            raise ValueError(f"multi-label targets must be multi-hot (batch, {self.num_labels}), got {tuple(labels.shape)}")
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=self.pos_weight)


class RegressionHead(Head):
    """Real-valued targets per sequence (mean squared error)."""

    kind = "regression"

    def __init__(self, feature_dim: int, num_outputs: int = 1, pooling: str = "mean", dropout: float = 0.0):
        super().__init__()
        self.spec = {"kind": self.kind, "num_outputs": num_outputs, "pooling": pooling, "dropout": dropout}
        self.set_pooling(pooling, feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.score = nn.Linear(feature_dim, num_outputs)

    def forward(self, hidden, mask=None):
        return self.score(self.dropout(self.pooled(hidden, mask)))

    def loss(self, logits, labels, mask=None):
        return F.mse_loss(logits.float(), labels.float().reshape(logits.shape))


class TokenClassificationHead(Head):
    """A label per position (cross-entropy over real tokens; label -100 is ignored)."""

    sequence_level = False
    kind = "token_classification"

    def __init__(self, feature_dim: int, num_labels: int, dropout: float = 0.0):
        super().__init__()
        self.spec = {"kind": self.kind, "num_labels": num_labels, "dropout": dropout}
        self.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        self.score = nn.Linear(feature_dim, num_labels)

    def forward(self, hidden, mask=None):
        return self.score(self.dropout(hidden))

    def loss(self, logits, labels, mask=None):
        labels = labels.long()
        if mask is not None:
            labels = labels.masked_fill(~mask.bool(), -100)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


class LMHead(Head):
    """Next-token prediction; the weight is the embedding's when tied (nothing is stored twice).

    ``masked=True`` (what ``MambaForTask`` gives a bidirectional backbone, which sees the next token):
    masked-LM loss instead, each position predicting its own token where the labels are not -100."""

    sequence_level = False
    kind = "lm"

    def __init__(self, feature_dim: int, vocab_size: int, embedding: nn.Embedding | None = None,
                 complement: torch.Tensor | None = None, masked: bool = False):
        super().__init__()
        self.spec = {"kind": self.kind}
        self.masked = masked
        self.vocab_size = vocab_size
        self.tied = embedding is not None
        if embedding is not None:
            object.__setattr__(self, "_embedding", embedding)  # a reference, not a submodule
        else:
            self.weight = nn.Parameter(torch.empty(vocab_size, feature_dim if complement is None else feature_dim // 2))
            nn.init.normal_(self.weight, std=0.02)
        if complement is not None:
            self.register_buffer("complement", complement.clone(), persistent=False)
        else:
            self.complement = None

    def lm_weight(self) -> torch.Tensor:
        return self._embedding.weight if self.tied else self.weight

    def forward(self, hidden, mask=None):
        w = self.lm_weight()
        if self.complement is not None:  # rcps features: [forward strand, reverse-complement strand]
            d = hidden.shape[-1] // 2
            fwd = F.linear(hidden[..., :d], w)
            rc = F.linear(hidden[..., d:], w)
            n = self.complement.shape[0]
            rc = torch.cat([rc[..., :n][..., self.complement], rc[..., n:]], -1)
            return fwd + rc
        return F.linear(hidden, w)

    def loss(self, logits, labels, mask=None):
        """labels (batch, L): the input ids themselves; position t predicts t + 1. Padding is ignored.
        Masked LM: labels hold the original token at the masked positions and -100 elsewhere."""
        if self.masked:
            target = labels.long()
            if mask is not None:
                target = target.masked_fill(~mask.bool(), -100)
            return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
        logits = logits[:, :-1].float()
        target = labels[:, 1:].long()
        if mask is not None:
            target = target.masked_fill(~mask[:, 1:].bool(), -100)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)


@dataclass
class TaskOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None
    hidden: torch.Tensor | None = None


class MambaForTask(nn.Module):
    """A backbone and a head. ``forward(input_ids, attention_mask, labels=...)`` -> TaskOutput."""

    def __init__(self, config: MambaConfig, head: Head | None = None, backbone: MambaModel | None = None):
        super().__init__()
        self.config = config
        self.backbone = backbone if backbone is not None else MambaModel(config)
        if head is None:
            comp = self.backbone.complement if config.rc_equivariant == "rcps" else None
            head = LMHead(self.backbone.feature_dim, config.vocab_size,
                          self.backbone.embedding if config.tie_embeddings else None, comp,
                          masked=config.bidirectional)
        self.head = head

    def tie_weights(self) -> None:
        """Points a tied LM head at the current embedding (after loading or replacing it)."""
        if isinstance(self.head, LMHead) and self.head.tied:
            object.__setattr__(self.head, "_embedding", self.backbone.embedding)

    def forward(self, input_ids=None, attention_mask=None, labels=None, seq_idx=None, inputs_embeds=None,
                cache: MambaCache | None = None, return_hidden: bool = False, validate: bool = True) -> TaskOutput:
        hidden = self.backbone(input_ids, attention_mask, seq_idx, inputs_embeds, cache, validate=validate)
        logits = self.head(hidden, attention_mask)
        if self.config.rc_equivariant == "posthoc" and not self.training and input_ids is not None:
            mask = attention_mask.bool() if attention_mask is not None else None
            rc_hidden = self.backbone(self.backbone.reverse_complement(input_ids),
                                      mask.flip(1) if mask is not None else None,
                                      seq_idx.flip(1) if seq_idx is not None else None)
            rc_logits = self.head(rc_hidden, mask.flip(1) if mask is not None else None)
            if not self.head.sequence_level:
                rc_logits = rc_logits.flip(1)
                if isinstance(self.head, LMHead):
                    n = self.backbone.complement.shape[0]
                    rc_logits = torch.cat([rc_logits[..., :n][..., self.backbone.complement], rc_logits[..., n:]], -1)
            logits = (logits + rc_logits) / 2
        loss = self.head.loss(logits, labels, attention_mask) if labels is not None else None
        return TaskOutput(logits=logits, loss=loss, hidden=hidden if return_hidden else None)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int = 20, temperature: float = 0.0,
                 top_k: int | None = None, generator: torch.Generator | None = None,
                 eos_token_id: int | None = None) -> torch.Tensor:
        """Greedy (temperature 0) or sampled continuation, one recurrent step per token.

        input_ids: (batch, L) unpadded prompts of equal length. Returns (batch, L + new)."""
        if not isinstance(self.head, LMHead):
            raise ValueError("generate needs a model with an LM head")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        cache = self.backbone.new_cache(input_ids.shape[0], input_ids.device)
        logits = self(input_ids, cache=cache).logits[:, -1]
        out = [input_ids]
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for _ in range(max_new_tokens):
            logits = logits[..., : self.config.vocab_size].float()
            if temperature <= 0:
                nxt = logits.argmax(-1)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = logits.topk(min(top_k, logits.shape[-1]), -1).values[..., -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
            if eos_token_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_token_id), nxt)
                done |= nxt == eos_token_id
            out.append(nxt[:, None])
            if eos_token_id is not None and bool(done.all()):
                break
            logits = self(nxt[:, None], cache=cache, validate=False).logits[:, -1]  # sampled ids: in range
        return torch.cat(out, 1)


HEADS: dict[str, type] = {
    "classification": SequenceClassificationHead,
    "multilabel": MultiLabelHead,
    "regression": RegressionHead,
    "token_classification": TokenClassificationHead,
}


def register_head(kind: str, cls: type) -> None:
    """Makes a domain's head known to ``build_head`` and to checkpoint loading (its ``spec`` must hold its kwargs)."""
    HEADS[kind] = cls


def build_head(kind: str, feature_dim: int, **kwargs) -> Head:
    """Makes a head by name, e.g. ``build_head("classification", 768, num_labels=3, pooling="mean")``."""
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; choose one of {', '.join(HEADS)} (the LM head comes with MambaForTask)")
    return HEADS[kind](feature_dim, **kwargs)


def head_from_spec(spec: dict, feature_dim: int) -> Head | None:
    """Rebuilds a head from its saved ``spec``; None for the LM head (MambaForTask makes it)."""
    spec = dict(spec)
    kind = spec.pop("kind")
    if kind == "lm":
        return None
    return build_head(kind, feature_dim, **spec)
