"""Fused residual add + RMSNorm / LayerNorm (the pre-norm of every Mamba block): one entry point per norm.

``add_rms_norm(x, weight, residual)`` returns ``(normed, residual_out)`` with

    residual_out = x + residual        (fp32 when residual_in_fp32, else residual's dtype, or x's without one)
    normed       = rmsnorm(residual_out) * weight      computed in fp32, stored in out_dtype (x's by default)

``add_layer_norm`` is the same with LayerNorm (mean subtracted, then ``* weight + bias``). The backward
gives the gradients of x, residual, weight (and bias); a gradient flowing into ``residual_out`` (the
residual stream that the next block reads) is added to the norm's. See ``reference.py`` for the exact
definition; ``triton.py`` fuses the whole of it into one read and two writes per element forward.

The norm's weight is passed as a plain tensor, as the model's norm module holds it: adapters target the
projections, never the norm, and a norm weight being trained gets its gradient like any other input.

How the model calls it (``core.model.FUSED_ADD_NORM``, off by default until timed on a GPU; the pre-norm
form mamba_ssm uses). Unfused, a block computes ``residual + mixer(norm(hidden))`` and returns the sum. Fused,
the blocks pass on the pair ``(hidden, residual)`` -- the last mixer's output and the running stream, kept
apart -- and each block's first step does the previous block's add and its own norm in one call (written
here as a block's forward; ``MambaModel._fused_layers`` does the same in its loop)::

    def forward(self, hidden, residual=None, ...):          # block 0: hidden = embeddings, residual None
        normed, residual = add_rms_norm(hidden, self.norm.weight, residual, eps=self.norm.eps,
                                        residual_in_fp32=self.config.residual_in_fp32)
        hidden = self.mixer(normed, ...)                      # (a parallel adapter adds here, as now)
        return hidden, residual

and the backbone's final norm is one more call, ``norm_f(hidden + residual)`` fused the same way:
``normed, _ = add_rms_norm(hidden, norm_f.weight, residual, eps=..., residual_in_fp32=...)``. That is one
call per block, and the model's separate ``.float()``, add and norm passes (five reads and three writes
of a (B, L, d) tensor) become one kernel. LayerNorm configs (``rms_norm=False``) call ``add_layer_norm``
with the module's weight and bias the same way.
"""
from __future__ import annotations

import torch

from .spec import MAX_TRITON_DIM

BACKENDS = ("auto", "triton", "reference")

__all__ = ["add_rms_norm", "add_layer_norm", "BACKENDS", "MAX_TRITON_DIM"]


def _resolve(backend: str, x: torch.Tensor) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown add_norm backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        if x.device.type == "cuda" and x.shape[-1] <= MAX_TRITON_DIM:
            try:
                from . import triton as _triton  # noqa: F401

                return "triton"
            except ImportError:
                return "reference"
        return "reference"
    return backend


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, residual: torch.Tensor | None) -> None:
    if x.dim() < 1 or not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor (..., d), got {x.dtype} of shape {tuple(x.shape)}")
    d = x.shape[-1]
    if weight.shape != (d,):
        raise ValueError(f"weight must have shape ({d},) for x of shape {tuple(x.shape)}, got {tuple(weight.shape)}")
    if bias is not None and bias.shape != (d,):
        raise ValueError(f"bias must have shape ({d},), got {tuple(bias.shape)}")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"residual must have x's shape {tuple(x.shape)}, got {tuple(residual.shape)}")


def _add_norm(x, weight, bias, residual, eps, rms, residual_in_fp32, out_dtype, backend):
    _check(x, weight, bias, residual)
    if residual_in_fp32:
        residual_dtype = torch.float32
    else:
        residual_dtype = residual.dtype if residual is not None else x.dtype
    out_dtype = x.dtype if out_dtype is None else out_dtype
    name = _resolve(backend, x)
    if name == "reference":
        from .reference import add_norm_reference as fn
    else:
        try:
            from .triton import add_norm_triton as fn
        except ImportError as err:
            raise RuntimeError(f"add_norm backend 'triton' is not available here ({err}); use backend='reference'") from err
    return fn(x, weight, bias, residual, float(eps), rms, residual_dtype, out_dtype)


def add_rms_norm(x: torch.Tensor, weight: torch.Tensor, residual: torch.Tensor | None = None, eps: float = 1e-5,
                 residual_in_fp32: bool = False, out_dtype: torch.dtype | None = None,
                 backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """x, residual: (..., d); weight: (d,). Returns (normed (..., d) in out_dtype, x's by default;
    residual_out (..., d) in fp32 when residual_in_fp32, else in residual's dtype, or x's when residual is None)."""
    return _add_norm(x, weight, None, residual, eps, True, residual_in_fp32, out_dtype, backend)


def add_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                   residual: torch.Tensor | None = None, eps: float = 1e-5, residual_in_fp32: bool = False,
                   out_dtype: torch.dtype | None = None, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """``add_rms_norm`` with LayerNorm: ``(r - mean(r)) * rsqrt(var(r) + eps) * weight + bias``."""
    return _add_norm(x, weight, bias, residual, eps, False, residual_in_fp32, out_dtype, backend)
