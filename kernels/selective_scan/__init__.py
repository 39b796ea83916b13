"""Selective scan (Mamba-1 SSM): one entry point, several backends.

``selective_scan(u, delta, A, B, C, ...)`` computes, per channel and state::

    h[t] = exp(dt[t] * A) * h[t-1] + dt[t] * B[t] * u[t],   y[t] = C[t] . h[t] + D * u[t]

with dt = softplus(delta + delta_bias) (optional), gating y * silu(z), state
resets where ``seq_idx`` changes and identity steps where ``mask`` is 0 (see
``reference.py`` for the exact definition). Backends:

- ``reference``: a plain fp32 loop, the ground truth (slow);
- ``chunked``: plain PyTorch with a hand-written backward, the CPU default;
- ``triton``: fused GPU kernels (when available), the CUDA default: ``triton_long.py`` (one program per
  channel, long time chunks, states walked one by one) for time-varying B and C, ``triton.py`` (short
  chunks, [BD, N, 16] tiles) for time-invariant B or C and where it measured faster (``pick_triton_kernel``).
"""
from __future__ import annotations

import torch

from .spec import ScanInputs
from .step import selective_state_update

BACKENDS = ("auto", "triton", "chunked", "reference")

__all__ = ["selective_scan", "selective_state_update", "resolve_backend", "pick_triton_kernel", "BACKENDS",
           "ScanInputs"]


def triton_available() -> bool:
    try:
        from . import triton as _triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device) -> str:
    """Maps ``auto`` to a concrete backend for ``device``; unknown names raise."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown selective_scan backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "chunked"
    return backend


def pick_triton_kernel(p: ScanInputs) -> str:
    """``"long"`` (triton_long.py) or ``"short"`` (triton.py) for these inputs.

    long needs time-varying B and C. On the (batch, L, dim) views the mixer passes it first copies
    u, delta, z to time-contiguous tensors; measured on an H200 (RESULTS.md, seventh session) that
    makes it slower than short for d_state <= 32 when batch * dim gives short enough programs
    (B4 D1536 L2048 N16: 3.14 against 2.71 ms forward+backward), and faster at N = 64 (7.9 against
    12.6 ms) and at B1 D1536 L32768 (13.6 against 15.8 ms)."""
    from . import triton_long

    if not triton_long.supports(p):
        return "short"
    batch, dim, _ = p.u.shape
    channels_last = p.u.stride(2) != 1 and p.u.stride(1) == 1
    if channels_last and p.A.shape[1] <= 32 and batch * dim >= 4096:
        return "short"
    return "long"


def _triton_kernel(p: ScanInputs) -> str:
    """``pick_triton_kernel(p)``, with a clear error where Triton cannot be imported."""
    try:
        return pick_triton_kernel(p)
    except ImportError as err:
        raise RuntimeError(
            "selective_scan backend 'triton' is not available here "
            f"({err}); use backend='chunked' or install triton with a CUDA GPU"
        ) from err


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
    seq_idx: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    backend: str = "auto",
):
    """Selective scan over L steps.

    Shapes: u, delta, z: (batch, dim, L); A: (dim, N); B, C: (batch, G, N, L),
    (batch, N, L) or (dim, N); D, delta_bias: (dim,); initial_state: (batch, dim, N);
    seq_idx, mask: (batch, L).

    Returns y (batch, dim, L) in u's dtype, and the final state (batch, dim, N)
    fp32 when ``return_final_state``.
    """
    p = ScanInputs(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, seq_idx, mask)
    name = resolve_backend(backend, u.device)
    if torch.compiler.is_compiling() and name != "reference":
        # one opaque custom op in the compiled graph (see ops.py); eager calls never take this branch
        from .ops import selective_scan_op

        kernel = "chunked" if name == "chunked" or u.shape[2] == 0 else _triton_kernel(p)
        y, last = selective_scan_op(p, kernel)
        return (y, last) if return_final_state else y
    if name == "reference":
        from .reference import selective_scan_reference as fn
    elif name == "chunked":
        from .chunked import selective_scan_chunked as fn
    else:
        kernel = _triton_kernel(p)
        from . import triton_long
        from .triton import selective_scan_triton

        fn = triton_long.selective_scan_triton_long if kernel == "long" else selective_scan_triton
    y, last = fn(p)
    return (y, last) if return_final_state else y
