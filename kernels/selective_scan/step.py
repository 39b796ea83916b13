"""One recurrent step of the selective scan, for generation (fused PyTorch)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_state_update(
    state: torch.Tensor,
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Advances ``state`` (batch, dim, N), fp32, in place by one step and returns y (batch, dim).

    u, delta, z: (batch, dim); A: (dim, N); B, C: (batch, G, N) time-varying or (dim, N) time-invariant.
    Same arithmetic as one iteration of ``reference.selective_scan_reference``.
    """
    if state.dtype != torch.float32:
        raise TypeError(f"selective_state_update: state must be float32, got {state.dtype}")
    dim = u.shape[1]
    dt = delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.float()
    if delta_softplus:
        dt = F.softplus(dt)

    def expand(t: torch.Tensor) -> torch.Tensor:
        t = t.float()
        if t.dim() == 2:
            return t[None]  # time-invariant (dim, N)
        return t.repeat_interleave(dim // t.shape[1], dim=1)

    Bx, Cx = expand(B), expand(C)
    state.mul_(torch.exp(dt[..., None] * A.float())).add_((dt * u.float())[..., None] * Bx)
    y = (state * Cx).sum(-1)
    if D is not None:
        y = y + u.float() * D.float()
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(u.dtype)
