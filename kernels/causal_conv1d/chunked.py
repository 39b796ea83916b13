"""Causal depthwise conv1d in plain PyTorch: one shifted multiply-add per tap.

With width <= 4 this is four vectorised ops over the whole sequence; autograd
gives the backward. Same semantics as ``reference.causal_conv1d_reference``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .spec import ConvInputs


def causal_conv1d_chunked(p: ConvInputs) -> torch.Tensor:
    x = p.x
    batch, dim, length = x.shape
    width = p.width
    compute = torch.float32
    xf = x.to(compute)
    if p.mask is not None:
        xf = xf * p.mask[:, None, :].to(compute)
    history = p.initial_state.to(compute) if p.initial_state is not None else xf.new_zeros(batch, dim, width - 1)
    full = torch.cat([history, xf], dim=-1)
    if p.seq_idx is not None:
        seq_full = torch.cat([p.seq_idx[:, :1].expand(batch, width - 1), p.seq_idx], dim=-1)
    w = p.weight.to(compute)
    out = w[:, width - 1, None] * xf
    for k in range(width - 1):
        shifted = full[:, :, k : k + length]  # x'[t - (width - 1) + k]
        term = w[:, k, None] * shifted
        if p.seq_idx is not None:
            same = (seq_full[:, k : k + length] == p.seq_idx).to(compute)
            term = term * same[:, None, :]
        out = out + term
    if p.bias is not None:
        out = out + p.bias.to(compute)[None, :, None]
    if p.activation == "silu":
        out = F.silu(out)
    if p.mask is not None:
        out = out * p.mask[:, None, :].to(compute)
    return out.to(x.dtype)
