"""The Triton causal conv1d as ``torch.library`` custom ops, for ``torch.compile``.

Under compile, ``causal_conv1d`` with the Triton backend calls ``causal_conv1d_op``: the compiled graph
holds ``mambatune::causal_conv1d_fwd`` and ``mambatune::causal_conv1d_bwd`` as opaque ops. The chunked
backend is plain PyTorch that Dynamo traces as it is, and eager calls never come here.

The output and the input's gradient are laid out like x (channels-last when x is a transposed
(batch, L, dim) view, as the Triton launcher does); the small gradients are contiguous. The fake
implementations give the same strides.
"""
from __future__ import annotations

import torch

from .spec import ConvInputs


def _big_strides(ref: torch.Tensor) -> tuple[int, int, int]:
    """Strides of a new (batch, dim, L) tensor laid out like ``ref`` (see triton.empty_in_layout_of)."""
    batch, dim, length = ref.shape
    if ref.stride(1) == 1 and ref.stride(2) != 1 and dim > 1:
        return length * dim, 1, dim
    return dim * length, length, 1


def _like(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """t in ref's dtype and layout (a copy only where it is not)."""
    strides = _big_strides(ref)
    if t.dtype == ref.dtype and t.stride() == strides:
        return t
    return torch.empty_strided(ref.shape, strides, dtype=ref.dtype, device=ref.device).copy_(t)


def _empty_like_big(ref: torch.Tensor) -> torch.Tensor:
    return torch.empty_strided(ref.shape, _big_strides(ref), dtype=ref.dtype, device=ref.device)


def _inputs(x, weight, bias, seq_idx, mask, initial_state, silu) -> ConvInputs:
    return ConvInputs(x, weight, bias, "silu" if silu else None, seq_idx, mask, initial_state)


@torch.library.custom_op("mambatune::causal_conv1d_fwd", mutates_args=())
def causal_conv1d_fwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, seq_idx: torch.Tensor | None,
                      mask: torch.Tensor | None, initial_state: torch.Tensor | None, silu: bool) -> torch.Tensor:
    """x (batch, dim, L), weight (dim, width) -> (batch, dim, L) in x's dtype and layout."""
    from .triton import _conv_fwd

    return _like(_conv_fwd(_inputs(x, weight, bias, seq_idx, mask, initial_state, silu)), x)


@causal_conv1d_fwd.register_fake
def _(x, weight, bias, seq_idx, mask, initial_state, silu):
    return _empty_like_big(x)


@torch.library.custom_op("mambatune::causal_conv1d_bwd", mutates_args=())
def causal_conv1d_bwd(g_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      seq_idx: torch.Tensor | None, mask: torch.Tensor | None, initial_state: torch.Tensor | None,
                      silu: bool) -> list[torch.Tensor]:
    """Gradients of x, weight, bias and initial_state in their dtypes; an empty tensor for an absent input."""
    from .triton import _conv_bwd

    g_x, g_w, g_bias, g_h0 = _conv_bwd(_inputs(x, weight, bias, seq_idx, mask, initial_state, silu), g_out)
    small = ((g_w, weight), (g_bias, bias), (g_h0, initial_state))
    return [_like(g_x, x)] + [x.new_empty(0) if ref is None else g.to(ref.dtype).contiguous() for g, ref in small]


@causal_conv1d_bwd.register_fake
def _(g_out, x, weight, bias, seq_idx, mask, initial_state, silu):
    refs = (weight, bias, initial_state)
    return [_empty_like_big(x)] + [x.new_empty(0) if ref is None
                                   else torch.empty_like(ref, memory_format=torch.contiguous_format) for ref in refs]


def _setup_context(ctx, inputs, output):
    ctx.present = [t is not None for t in inputs[:6]]
    ctx.silu = inputs[6]
    ctx.save_for_backward(*[t for t in inputs[:6] if t is not None])


def _backward(ctx, g_out):
    it = iter(ctx.saved_tensors)
    x, weight, bias, seq_idx, mask, h0 = [next(it) if present else None for present in ctx.present]
    g_x, g_w, g_bias, g_h0 = causal_conv1d_bwd(g_out, x, weight, bias, seq_idx, mask, h0, ctx.silu)
    return (g_x, g_w, g_bias if bias is not None else None, None, None, g_h0 if h0 is not None else None, None)


causal_conv1d_fwd.register_autograd(_backward, setup_context=_setup_context)


def causal_conv1d_op(p: ConvInputs) -> torch.Tensor:
    """The Triton conv of ``p`` through the custom ops."""
    return causal_conv1d_fwd(p.x, p.weight, p.bias, p.seq_idx, p.mask, p.initial_state, p.activation == "silu")
