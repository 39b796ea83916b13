"""Affix-tuning: learned tokens read by every mixer before its conv and scan.

Each mixer gets ``num_tokens`` learned vectors in its d_model input space (the
normalised block input, before ``in_proj``), so they pass through ``in_proj`` (and
any LoRA on it), the causal conv and the scan like real tokens; their outputs are
dropped right after the scan, before ``out_proj``, so the block's output keeps the
input's length. Placing them before ``in_proj`` costs d_model parameters per token
and layer (half of what 2 * d_inner after ``in_proj`` would) and lets a LoRA on
``in_proj`` act on them too. In effect the prefix sets each layer's conv history
and initial SSM state. Both directions of a bidirectional mixer get their own
prefix (the reverse one sits at the end of the original sequence). With a
recurrent cache the prefix is read once per state; packed sequences are refused.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .base import MethodConfig, check_int, mixers_of
from .prompt import LearnedTokens


@dataclass
class AffixConfig(MethodConfig):
    """num_tokens: prefix length per mixer; init_std: std of the normal initialisation;
    layers: block indices that get a prefix (None = all)."""

    method = "affix"
    num_tokens: int = 8
    init_std: float = 0.02
    layers: list[int] | None = None

    def validate(self) -> None:
        check_int(self, "num_tokens")
        if not isinstance(self.init_std, (int, float)) or self.init_std <= 0:
            raise self.error(f"init_std must be positive, got {self.init_std!r}")


def apply_affix(model: nn.Module, cfg: AffixConfig) -> list[nn.Parameter]:
    params = []
    for mixer in mixers_of(model, cfg.layers):
        if mixer.prefix is not None:
            raise ValueError("affix: a mixer already has a prefix; give one affix config")
        like = mixer.conv1d.weight
        tokens = torch.randn(cfg.num_tokens, mixer.config.d_model, device=like.device, dtype=like.dtype) * cfg.init_std
        mixer.prefix = LearnedTokens(tokens, "affix-tuning")
        params.append(mixer.prefix.tokens)
    return params
