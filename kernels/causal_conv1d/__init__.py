"""Causal depthwise conv1d (Mamba's short convolution): one entry point, several backends.

``out[t] = act(bias + sum_k weight[:, k] * x[t - width + 1 + k])``, with document
boundaries (``seq_idx``) and padding (``mask``) respected; see ``reference.py``.
"""
from __future__ import annotations

import torch

from .spec import ConvInputs
from .step import causal_conv1d_update

BACKENDS = ("auto", "triton", "chunked", "reference")

__all__ = ["causal_conv1d", "causal_conv1d_update", "BACKENDS", "ConvInputs"]


def _resolve(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown causal_conv1d backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        if device.type == "cuda":
            try:
                from . import triton as _triton  # noqa: F401

                return "triton"
            except ImportError:
                return "chunked"
        return "chunked"
    return backend


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    seq_idx: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """x: (batch, dim, L); weight: (dim, width) or (dim, 1, width); returns (batch, dim, L) in x's dtype."""
    p = ConvInputs(x, weight, bias, activation, seq_idx, mask, initial_state)
    name = _resolve(backend, x.device)
    if name == "reference":
        from .reference import causal_conv1d_reference as fn
    elif name == "chunked":
        from .chunked import causal_conv1d_chunked as fn
    else:
        try:
            from .triton import causal_conv1d_triton as fn
        except ImportError as err:
            raise RuntimeError(
                f"causal_conv1d backend 'triton' is not available here ({err}); use backend='chunked'"
            ) from err
        if torch.compiler.is_compiling() and x.shape[2] > 0:
            # one opaque custom op in the compiled graph (see ops.py); eager calls never take this branch
            from .ops import causal_conv1d_op as fn
    return fn(p)
