"""Input contract of the causal depthwise conv1d, checked once for every backend."""
from __future__ import annotations

from dataclasses import dataclass

import torch

ACTIVATIONS = (None, "silu")


@dataclass
class ConvInputs:
    """x: (batch, dim, L); weight: (dim, width) with width 2..4; bias: (dim,);
    initial_state: (batch, dim, width - 1), the inputs before step 0;
    seq_idx, mask: (batch, L)."""

    x: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor | None = None
    activation: str | None = None
    seq_idx: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    initial_state: torch.Tensor | None = None

    def __post_init__(self) -> None:
        x = self.x
        if x.dim() != 3:
            raise ValueError(f"causal_conv1d: x must be (batch, dim, L), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"causal_conv1d: x must be a float tensor, got {x.dtype}")
        batch, dim, length = x.shape
        if self.weight.dim() == 3 and self.weight.shape[1] == 1:  # nn.Conv1d layout (dim, 1, width)
            self.weight = self.weight[:, 0]
        if self.weight.dim() != 2 or self.weight.shape[0] != dim:
            raise ValueError(f"causal_conv1d: weight must be (dim={dim}, width), got {tuple(self.weight.shape)}")
        width = self.weight.shape[1]
        if not 1 <= width <= 4:
            raise ValueError(f"causal_conv1d: width must be in 1..4, got {width}")
        if self.bias is not None and tuple(self.bias.shape) != (dim,):
            raise ValueError(f"causal_conv1d: bias must be (dim={dim},), got {tuple(self.bias.shape)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"causal_conv1d: activation must be None or 'silu', got {self.activation!r}")
        for name in ("seq_idx", "mask"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != (batch, length):
                raise ValueError(f"causal_conv1d: {name} must be (batch={batch}, L={length}), got {tuple(t.shape)}")
        if self.seq_idx is not None and (self.seq_idx.is_floating_point() or self.seq_idx.dtype == torch.bool):
            raise TypeError(f"causal_conv1d: seq_idx must be an integer tensor, got {self.seq_idx.dtype}")
        if self.initial_state is not None and tuple(self.initial_state.shape) != (batch, dim, width - 1):
            raise ValueError(
                f"causal_conv1d: initial_state must be (batch={batch}, dim={dim}, width-1={width - 1}), "
                f"got {tuple(self.initial_state.shape)}"
            )

    @property
    def width(self) -> int:
        return self.weight.shape[1]
