"""Parallel adapters: a bottleneck MLP beside each mixer or block (He et al., 2022).

``position="mixer"``: block(x) = x + mixer(norm(x)) + s * up(act(down(norm(x))));
``position="block"``: block(x) = x + mixer(norm(x)) + s * up(act(down(x))), i.e. beside
the whole block, reading the un-normalised residual stream. ``up`` starts at zero,
so the model is unchanged at initialisation. The adapter sits at
``MambaBlock.parallel_adapter``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import MethodConfig, blocks_of, check_choice, check_int

POSITIONS = ("mixer", "block")
ACTIVATIONS = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu}


@dataclass
class ParallelAdapterConfig(MethodConfig):
    """bottleneck: hidden width; position: ``mixer`` or ``block``; activation: silu / gelu / relu;
    scale: factor on the adapter's output; dropout: on its input; layers: block indices (None = all)."""

    method = "parallel_adapter"
    bottleneck: int = 16
    position: str = "mixer"
    activation: str = "silu"
    scale: float = 1.0
    dropout: float = 0.0
    layers: list[int] | None = None

    def validate(self) -> None:
        check_int(self, "bottleneck")
        check_choice(self, "position", POSITIONS)
        check_choice(self, "activation", ACTIVATIONS)
        if not isinstance(self.scale, (int, float)) or isinstance(self.scale, bool):
            raise self.error(f"scale must be a number, got {self.scale!r}")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise self.error(f"dropout must be in [0, 1), got {self.dropout!r}")


class ParallelAdapter(nn.Module):
    """down: (bottleneck, d_model), up: (d_model, bottleneck) zero-initialised."""

    def __init__(self, d_model: int, cfg: ParallelAdapterConfig, device=None, dtype=None):
        super().__init__()
        self.position, self.scale = cfg.position, cfg.scale
        self.activation = cfg.activation
        self.down = nn.Linear(d_model, cfg.bottleneck, device=device, dtype=dtype)
        self.up = nn.Linear(cfg.bottleneck, d_model, device=device, dtype=dtype)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()

    def forward(self, hidden: torch.Tensor, normed: torch.Tensor) -> torch.Tensor:
        """hidden: the block input (batch, L, d_model); normed: norm(hidden). Returns (batch, L, d_model)."""
        x = normed if self.position == "mixer" else hidden
        x = self.dropout(x.to(self.down.weight.dtype))
        return self.scale * self.up(ACTIVATIONS[self.activation](self.down(x))).to(normed.dtype)


def apply_parallel_adapter(model: nn.Module, cfg: ParallelAdapterConfig) -> list[nn.Parameter]:
    params = []
    for block in blocks_of(model, cfg.layers):
        if block.parallel_adapter is not None:
            raise ValueError("parallel_adapter: a block already has one; give one parallel_adapter config")
        w = block.norm.weight
        block.parallel_adapter = ParallelAdapter(block.config.d_model, cfg, device=w.device, dtype=w.dtype)
        params += list(block.parallel_adapter.parameters())
    return params
