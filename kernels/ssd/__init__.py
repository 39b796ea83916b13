"""SSD scan (Mamba-2's multi-head SSM): one entry point, several backends.

``ssd_scan(x, dt, A, B, C, ...)`` computes, per head h (one scalar A[h]), channel p and state n::

    h[t] = exp(dt[t] * A) * h[t-1] + dt[t] * x[t, p] * B[t, n],   y[t, p] = C[t] . h[t, p] + D * x[t, p]

with dt = softplus(dt + dt_bias) (optional) clamped to dt_limit, B and C shared by the heads of a
group, gating y * silu(z), state resets where ``seq_idx`` changes and identity steps where ``mask``
is 0 (see ``reference.py`` for the exact definition). Backends:

- ``reference``: a plain fp32 loop, the ground truth (slow);
- ``chunked``: the chunked matmul form in plain PyTorch (autograd), the CPU default;
- ``triton``: Triton kernels (when available), the CUDA default.
"""
from __future__ import annotations

import math

import torch

from .spec import SSDInputs
from .step import ssd_state_update

BACKENDS = ("auto", "triton", "chunked", "reference")

__all__ = ["ssd_scan", "ssd_state_update", "resolve_backend", "BACKENDS", "SSDInputs"]


def triton_available() -> bool:
    try:
        from . import triton as _triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device) -> str:
    """Maps ``auto`` to a concrete backend for ``device``; unknown names raise."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown ssd_scan backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "chunked"
    return backend


def ssd_scan(
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
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
    seq_idx: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    chunk_size: int = 64,
    backend: str = "auto",
):
    """SSD scan over L steps.

    Shapes: x, z: (batch, L, heads, headdim); dt: (batch, L, heads); A, D, dt_bias: (heads,);
    B, C: (batch, L, groups, N) with groups dividing heads; initial_state: (batch, heads, headdim, N);
    seq_idx, mask: (batch, L). ``chunk_size`` sets the chunk length of the chunked and Triton
    backends, at most 64 (the result does not depend on it beyond rounding).

    Returns y (batch, L, heads, headdim) in x's dtype, and the final state (batch, heads, headdim, N)
    fp32 when ``return_final_state``.
    """
    p = SSDInputs(x, dt, A, B, C, D, z, dt_bias, dt_softplus, tuple(dt_limit), initial_state, seq_idx, mask, chunk_size)
    name = resolve_backend(backend, x.device)
    if name == "reference":
        from .reference import ssd_scan_reference as fn
    elif name == "chunked":
        from .chunked import ssd_scan_chunked as fn
    else:
        try:
            from .triton import ssd_scan_triton as fn
        except ImportError as err:
            raise RuntimeError(
                "ssd_scan backend 'triton' is not available here "
                f"({err}); use backend='chunked' or install triton with a CUDA GPU"
            ) from err
        if torch.compiler.is_compiling():
            # the kernels as opaque custom ops in the compiled graph (see ops.py); eager never comes here
            from .ops import ssd_scan_op as fn
    y, last = fn(p)
    return (y, last) if return_final_state else y
