"""Ground truth for the fused residual add + norm: plain PyTorch in fp32, autograd does the backward.

    residual_out = (x + residual).to(residual_dtype)          (x alone when residual is None)
    r            = residual_out in fp32                        (the norm reads the stored residual)
    xhat         = r * rsqrt(mean(r^2) + eps)                  RMSNorm
                 = (r - mean(r)) * rsqrt(var(r) + eps)         LayerNorm (biased variance)
    normed       = (xhat * weight [+ bias]).to(out_dtype)

x, residual, residual_out, normed: (..., d); weight, bias: (d,); every sum runs over the last axis.
"""
from __future__ import annotations

import torch


def add_norm_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                       residual: torch.Tensor | None, eps: float, rms: bool, residual_dtype: torch.dtype,
                       out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (normed in out_dtype, residual_out in residual_dtype), both shaped like x."""
    summed = x.float() if residual is None else x.float() + residual.float()
    residual_out = summed.to(residual_dtype)
    r = residual_out.float()
    if not rms:
        r = r - r.mean(-1, keepdim=True)
    xhat = r * torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + eps)
    normed = xhat * weight.float()
    if bias is not None:
        normed = normed + bias.float()
    return normed.to(out_dtype), residual_out
