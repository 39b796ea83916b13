"""One recurrent step of the causal conv1d, for generation."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d_update(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
) -> torch.Tensor:
    """x: (batch, dim) the new input; conv_state: (batch, dim, width - 1) the previous
    inputs, oldest first, shifted in place. Returns (batch, dim)."""
    if weight.dim() == 3:
        weight = weight[:, 0]
    width = weight.shape[1]
    window = torch.cat([conv_state.to(x.dtype), x[..., None]], dim=-1)  # (batch, dim, width)
    out = (window.float() * weight.float()).sum(-1)
    if bias is not None:
        out = out + bias.float()
    if width > 1:
        conv_state.copy_(window[..., 1:])
    if activation == "silu":
        out = F.silu(out)
    return out.to(x.dtype)
