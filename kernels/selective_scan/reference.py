"""Ground truth for the selective scan: a plain per-step loop in fp32.

Every other backend is tested against this function, outputs and gradients.
It is deliberately simple and slow; autograd differentiates it directly.

Definition (per batch b, channel d, state n, step t)::

    dt[t]   = softplus(delta[t] + delta_bias)   if delta_softplus else delta[t] + delta_bias
    dt[t]   = 0                                  where mask[t] == 0   (identity step)
    h[t]    = exp(dt[t] * A) * h[t-1] + dt[t] * B[t] * u[t]
              (h[t-1] is replaced by 0 where seq_idx[t] != seq_idx[t-1])
    y[t]    = sum_n C[t] * h[t] + D * u[t]
    y[t]    = y[t] * silu(z[t])                  if z is given
    y[t]    = 0                                  where mask[t] == 0
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .spec import ScanInputs


def selective_scan_reference(p: ScanInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(y, final_state)``; y: (batch, dim, L) in u's dtype, state (batch, dim, N) fp32."""
    u = p.u.float()
    batch, dim, length = u.shape
    n_state = p.A.shape[1]
    dt = p.delta.float()
    if p.delta_bias is not None:
        dt = dt + p.delta_bias.float()[None, :, None]
    if p.delta_softplus:
        dt = F.softplus(dt)
    if p.mask is not None:
        dt = dt * p.mask[:, None, :].to(dt.dtype)
    A = p.A.float()
    Bm, Cm = p.expanded_B(), p.expanded_C()  # (batch, dim, N, L) or (dim, N)
    h = (
        p.initial_state.float()
        if p.initial_state is not None
        else u.new_zeros(batch, dim, n_state)
    )
    ys = []
    for t in range(length):
        if p.seq_idx is not None and t > 0:
            same = (p.seq_idx[:, t] == p.seq_idx[:, t - 1]).to(h.dtype)
            h = h * same[:, None, None]
        dt_t = dt[:, :, t]
        B_t = Bm[..., t] if Bm.dim() == 4 else Bm[None]
        C_t = Cm[..., t] if Cm.dim() == 4 else Cm[None]
        h = torch.exp(dt_t[..., None] * A) * h + (dt_t * u[:, :, t])[..., None] * B_t
        ys.append((h * C_t).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, dim, 0)
    if p.D is not None:
        y = y + u * p.D.float()[None, :, None]
    if p.z is not None:
        y = y * F.silu(p.z.float())
    if p.mask is not None:
        y = y * p.mask[:, None, :].to(y.dtype)
    return y.to(p.u.dtype), h
