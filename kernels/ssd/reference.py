"""Ground truth for the SSD scan (Mamba-2): a plain per-step loop in fp32.

Every other backend is tested against this function, outputs and gradients.
It is deliberately simple and slow; autograd differentiates it directly.

Definition (per batch b, head h of group g = h // (H / G), channel p, state n, step t)::

    dt[t]   = dt[t] + dt_bias[h];  softplus if dt_softplus;  clamped to dt_limit
    dt[t]   = 0                                     where mask[t] == 0   (identity step)
    h[t]    = exp(dt[t] * A[h]) * h[t-1] + dt[t] * x[t, p] * B[t, g, n]
              (h[t-1] is replaced by 0 where seq_idx[t] != seq_idx[t-1])
    y[t, p] = sum_n C[t, g, n] * h[t, p, n] + D[h] * x[t, p]
    y[t]    = y[t] * silu(z[t])                     if z is given
    y[t]    = 0                                     where mask[t] == 0
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .spec import SSDInputs


def ssd_scan_reference(p: SSDInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(y, final_state)``: y (batch, L, H, P) in x's dtype, state (batch, H, P, N) fp32."""
    batch, length, heads, headdim, groups, n_state = p.shape
    x = p.x.float()
    dt = p.discretised_dt()  # (b, L, H)
    A = p.A.float()
    per_group = heads // groups
    Bh = p.B.float().repeat_interleave(per_group, dim=2)  # (b, L, H, N)
    Ch = p.C.float().repeat_interleave(per_group, dim=2)
    resets = p.resets()
    h = p.initial_state.float() if p.initial_state is not None else x.new_zeros(batch, heads, headdim, n_state)
    ys = []
    for t in range(length):
        if resets is not None:
            h = h * (~resets[:, t]).to(h.dtype)[:, None, None, None]
        dt_t = dt[:, t]  # (b, H)
        decay = torch.exp(dt_t * A)[..., None, None]
        h = decay * h + (dt_t[..., None] * x[:, t])[..., None] * Bh[:, t, :, None, :]
        ys.append((h * Ch[:, t, :, None, :]).sum(-1))
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(batch, 0, heads, headdim)
    if p.D is not None:
        y = y + x * p.D.float()[:, None]
    if p.z is not None:
        y = y * F.silu(p.z.float())
    if p.mask is not None:
        y = y * p.mask[:, :, None, None].to(y.dtype)
    return y.to(p.x.dtype), h
