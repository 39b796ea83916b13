"""One recurrent step of the SSD scan, for generation (plain PyTorch)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def ssd_state_update(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, math.inf),
) -> torch.Tensor:
    """Advances ``state`` (batch, H, P, N), fp32, in place by one step and returns y (batch, H, P).

    x, z: (batch, H, P); dt: (batch, H); A, D, dt_bias: (H,); B, C: (batch, G, N).
    Same arithmetic as one iteration of ``reference.ssd_scan_reference``.
    """
    if state.dtype != torch.float32:
        raise TypeError(f"ssd_state_update: state must be float32, got {state.dtype}")
    heads = x.shape[1]
    d = dt.float()
    if dt_bias is not None:
        d = d + dt_bias.float()
    if dt_softplus:
        d = F.softplus(d)
    lo, hi = dt_limit
    if lo > 0.0 or hi < math.inf:
        d = d.clamp(lo, hi)
    per_group = heads // B.shape[1]
    Bh = B.float().repeat_interleave(per_group, dim=1)[:, :, None, :]  # (batch, H, 1, N)
    Ch = C.float().repeat_interleave(per_group, dim=1)[:, :, None, :]
    state.mul_(torch.exp(d * A.float())[..., None, None]).add_((d[..., None] * x.float())[..., None] * Bh)
    y = (state * Ch).sum(-1)
    if D is not None:
        y = y + x.float() * D.float()[:, None]
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(x.dtype)
