"""Ground truth for the causal depthwise conv1d: a plain per-step loop in fp32.

    x'[t]  = x[t] * mask[t]                                   (masked inputs are zeros)
    out[t] = bias + sum_k weight[:, k] * x'[t - (width - 1) + k]
             (terms before step 0 read initial_state, zeros if absent;
              terms from another document, seq_idx differing from step t, are zeros;
              initial_state belongs to the document at step 0)
    out[t] = silu(out[t]) if activation == "silu";  out[t] = 0 where mask[t] == 0
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .spec import ConvInputs


def causal_conv1d_reference(p: ConvInputs) -> torch.Tensor:
    x = p.x.float()
    batch, dim, length = x.shape
    width = p.width
    if p.mask is not None:
        x = x * p.mask[:, None, :].to(x.dtype)
    w = p.weight.float()
    history = p.initial_state.float() if p.initial_state is not None else x.new_zeros(batch, dim, width - 1)
    full = torch.cat([history, x], dim=-1)  # step t sits at index t + width - 1
    outs = []
    for t in range(length):
        acc = p.bias.float()[None].expand(batch, dim) if p.bias is not None else x.new_zeros(batch, dim)
        for k in range(width):
            src = t - (width - 1) + k
            term = w[:, k] * full[:, :, src + width - 1]
            if p.seq_idx is not None and src != t:
                # history (src < 0) belongs to the document that is running at step 0
                same = (p.seq_idx[:, max(src, 0)] == p.seq_idx[:, t]).to(x.dtype)
                term = term * same[:, None]
            acc = acc + term
        outs.append(acc)
    out = torch.stack(outs, -1) if outs else x.new_zeros(batch, dim, 0)
    if p.activation == "silu":
        out = F.silu(out)
    if p.mask is not None:
        out = out * p.mask[:, None, :].to(out.dtype)
    return out.to(p.x.dtype)
