"""Prompt-tuning: learned embeddings read before the input (Lester et al., 2021).

``num_tokens`` vectors of width d_model are prepended to the token embeddings
inside the backbone (``MambaModel.prompt``); the backbone drops their positions
from its output, so heads, attention masks and labels keep the input's length
and nothing outside the backbone changes. With a recurrent cache the prompt is
read once, by the first call. Because the state resets at document boundaries,
packed sequences (``seq_idx``) are refused: only the first document would see it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .base import MethodConfig, backbone_of, check_choice, check_int

PROMPT_INITS = ("vocab", "random")


class LearnedTokens(nn.Module):
    """``num_tokens`` learned vectors (num_tokens, dim) placed before a sequence."""

    def __init__(self, tokens: torch.Tensor, what: str):
        super().__init__()
        self.tokens = nn.Parameter(tokens)
        self.what = what

    @property
    def num_tokens(self) -> int:
        return self.tokens.shape[0]

    def prepend(self, hidden: torch.Tensor, mask: torch.Tensor | None, seq_idx: torch.Tensor | None):
        """hidden (batch, L, dim), mask / seq_idx (batch, L) or None -> the same with L + num_tokens
        positions; the added positions are real (mask 1)."""
        if seq_idx is not None:
            raise ValueError(
                f"{self.what} cannot be used with packed sequences (seq_idx): the state resets at each "
                "document boundary, so only the first document would read the learned tokens; disable packing"
            )
        batch, p = hidden.shape[0], self.num_tokens
        tokens = self.tokens.to(hidden.dtype)[None].expand(batch, -1, -1)
        hidden = torch.cat([tokens, hidden], dim=1)
        if mask is not None:
            mask = torch.cat([torch.ones(batch, p, dtype=mask.dtype, device=mask.device), mask], dim=1)
        return hidden, mask, seq_idx


@dataclass
class PromptConfig(MethodConfig):
    """num_tokens: prompt length; init: ``vocab`` (embeddings of random vocabulary tokens, the
    usual choice) or ``random`` (normal with ``init_std``)."""

    method = "prompt"
    num_tokens: int = 16
    init: str = "vocab"
    init_std: float = 0.02

    def validate(self) -> None:
        check_int(self, "num_tokens")
        check_choice(self, "init", PROMPT_INITS)
        if not isinstance(self.init_std, (int, float)) or self.init_std <= 0:
            raise self.error(f"init_std must be positive, got {self.init_std!r}")


def apply_prompt(model: nn.Module, cfg: PromptConfig) -> list[nn.Parameter]:
    backbone = backbone_of(model)
    if backbone.prompt is not None:
        raise ValueError("prompt: the model already has a prompt; give one prompt config")
    emb = backbone.embedding.weight
    if cfg.init == "vocab":
        ids = torch.randint(0, backbone.config.vocab_size, (cfg.num_tokens,), device=emb.device)
        tokens = emb.detach()[ids].clone()
    else:
        tokens = torch.randn(cfg.num_tokens, emb.shape[1], device=emb.device, dtype=emb.dtype) * cfg.init_std
    backbone.prompt = LearnedTokens(tokens, "prompt-tuning")
    return [backbone.prompt.tokens]
