"""The selective scan as ``torch.library`` custom ops, for ``torch.compile``.

Under compile, ``selective_scan`` calls ``selective_scan_op`` instead of the backends' autograd
Functions: the compiled graph then holds two opaque ops, ``mambatune::selective_scan_fwd`` and
``mambatune::selective_scan_bwd``, with no graph break around them. Eager calls never come here.

``kernel`` names what runs inside: ``"short"`` (triton.py), ``"long"`` (triton_long.py) or
``"chunked"`` (chunked.py, the CPU backend, whose in-place time loop Dynamo cannot trace). The
forward returns y, the final state and what the backward reads (the Triton kernels' chunk-start
states; nothing for ``chunked``, whose backward recomputes its forward under autograd).

Output layouts: a fake (meta) implementation must give the strides the real one gives, so both take
them from ``big_strides``: a (batch, dim, L) output is channels-last exactly when its reference input
is (as the Triton launchers lay them out), and every other output is contiguous.
"""
from __future__ import annotations

import torch

from .spec import ScanInputs

GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "bias", "h0")


def channels_last(t: torch.Tensor) -> bool:
    """A (batch, dim, L) tensor whose channels are adjacent in memory (a transposed (batch, L, dim) view)."""
    return t.stride(1) == 1 and t.stride(2) != 1 and t.shape[1] > 1


def big_strides(ref: torch.Tensor) -> tuple[int, int, int]:
    """Strides of a new (batch, dim, L) tensor laid out like ``ref``."""
    batch, dim, length = ref.shape
    return (length * dim, 1, dim) if channels_last(ref) else (dim * length, length, 1)


def empty_big(ref: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.empty_strided(ref.shape, big_strides(ref), dtype=dtype or ref.dtype, device=ref.device)


def conform(t: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """t as a (batch, dim, L) tensor of ``dtype`` laid out like ``ref`` (a copy only where it is not)."""
    dtype = dtype or ref.dtype
    if t.dtype == dtype and t.stride() == big_strides(ref):
        return t
    return empty_big(ref, dtype).copy_(t)


def _inputs(u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx, mask, delta_softplus) -> ScanInputs:
    return ScanInputs(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, seq_idx, mask)


def _n_saved(p: ScanInputs, kernel: str) -> tuple[int, ...]:
    """Shape of what the forward keeps for the backward."""
    batch, dim, length = p.u.shape
    n_state = p.A.shape[1]
    if kernel == "short":
        import triton

        from .triton import _config

        return batch, triton.cdiv(length, _config(batch, dim, n_state, False)["BT"]), dim, n_state
    if kernel == "long":
        import triton

        from .triton_long import _config

        return batch, triton.cdiv(length, _config(p)["BT"]) + 1, dim, n_state
    return (0,)


@torch.library.custom_op("mambatune::selective_scan_fwd", mutates_args=())
def selective_scan_fwd(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None, z: torch.Tensor | None, delta_bias: torch.Tensor | None,
    initial_state: torch.Tensor | None, seq_idx: torch.Tensor | None, mask: torch.Tensor | None,
    delta_softplus: bool, kernel: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y (batch, dim, L) in u's dtype and layout, final state (batch, dim, N) fp32, saved states fp32."""
    p = _inputs(u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx, mask, delta_softplus)
    if kernel == "short":
        from .triton import _scan_fwd

        y, last, saved = _scan_fwd(p, save_ckpt=True)
    elif kernel == "long":
        from . import triton_long

        y, saved = triton_long.scan_fwd(triton_long._time_contiguous(p), triton_long._config(p),
                                        out_like=p.u if triton_long.OUTPUTS_IN_INPUT_LAYOUT else None)
        last = saved[:, -1].clone()
    else:
        from .chunked import selective_scan_chunked

        y, last = selective_scan_chunked(p)
        saved = u.new_empty(0, dtype=torch.float32)
    return conform(y, u), last.contiguous(), saved.contiguous()


@selective_scan_fwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx, mask, delta_softplus, kernel):
    p = _inputs(u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx, mask, delta_softplus)
    batch, dim, _ = u.shape
    last = u.new_empty(batch, dim, A.shape[1], dtype=torch.float32)
    return empty_big(u), last, u.new_empty(_n_saved(p, kernel), dtype=torch.float32)


@torch.library.custom_op("mambatune::selective_scan_bwd", mutates_args=())
def selective_scan_bwd(
    g_y: torch.Tensor, g_last: torch.Tensor, saved: torch.Tensor,
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None, z: torch.Tensor | None, delta_bias: torch.Tensor | None,
    initial_state: torch.Tensor | None, seq_idx: torch.Tensor | None, mask: torch.Tensor | None,
    delta_softplus: bool, kernel: str,
) -> list[torch.Tensor]:
    """Gradients of u, delta, A, B, C, D, z, delta_bias, initial_state in their inputs' dtypes; an empty
    tensor stands for an input that is absent."""
    p = _inputs(u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx, mask, delta_softplus)
    refs = (u, delta, A, B, C, D, z, delta_bias, initial_state)
    if kernel == "short":
        from .triton import _scan_bwd

        g = _scan_bwd(p, saved, g_y, g_last)
    elif kernel == "long":
        from . import triton_long

        g = triton_long.scan_bwd(triton_long._time_contiguous(p), saved, g_y, g_last, triton_long._config(p),
                                 grads_like=p if triton_long.OUTPUTS_IN_INPUT_LAYOUT else None)
    else:
        g = _chunked_grads(p, g_y, g_last)
    out = []
    for name, ref in zip(GRAD_NAMES, refs):
        grad = g[name] if ref is not None else None
        if grad is None:
            out.append(u.new_empty(0) if ref is None else torch.zeros_like(ref, memory_format=torch.contiguous_format))
        elif name in ("u", "delta", "z"):
            out.append(conform(grad, ref))
        else:
            out.append(grad.to(ref.dtype).contiguous())
    return out


@selective_scan_bwd.register_fake
def _(g_y, g_last, saved, u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx, mask, delta_softplus,
      kernel):
    refs = (u, delta, A, B, C, D, z, delta_bias, initial_state)
    return [u.new_empty(0) if ref is None else (empty_big(ref) if name in ("u", "delta", "z")
                                                 else torch.empty_like(ref, memory_format=torch.contiguous_format))
            for name, ref in zip(GRAD_NAMES, refs)]


def _chunked_grads(p: ScanInputs, g_y: torch.Tensor, g_last: torch.Tensor) -> dict:
    """The chunked backend's gradients, by running it again under autograd (its backward needs the
    autograd Function's context, which only a forward builds)."""
    from .chunked import selective_scan_chunked

    refs = dict(zip(GRAD_NAMES, (p.u, p.delta, p.A, p.B, p.C, p.D, p.z, p.delta_bias, p.initial_state)))
    with torch.enable_grad():
        leaves = {k: v.detach().requires_grad_(v.is_floating_point()) for k, v in refs.items() if v is not None}
        q = _inputs(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], leaves.get("D"),
                    leaves.get("z"), leaves.get("bias"), leaves.get("h0"), p.seq_idx, p.mask, p.delta_softplus)
        y, last = selective_scan_chunked(q)
        names = list(leaves)
        grads = torch.autograd.grad((y, last), [leaves[k] for k in names], (g_y, g_last), allow_unused=True)
    return dict(zip(names, grads))


def _setup_context(ctx, inputs, output):
    ctx.flags = inputs[11:]  # delta_softplus, kernel
    ctx.save_for_backward(*[t for t in inputs[:11] if t is not None], output[2])
    ctx.present = [t is not None for t in inputs[:11]]


def _backward(ctx, g_y, g_last, _g_saved):
    *tensors, saved = ctx.saved_tensors
    it = iter(tensors)
    args = [next(it) if present else None for present in ctx.present]
    u = args[0]
    g_y = g_y if g_y is not None else torch.zeros_like(u)
    g_last = g_last if g_last is not None else u.new_zeros(u.shape[0], u.shape[1], args[2].shape[1],
                                                          dtype=torch.float32)
    grads = selective_scan_bwd(g_y, g_last, saved, *args, *ctx.flags)
    return (*[g if present else None for g, present in zip(grads, ctx.present[:9])], None, None, None, None)


selective_scan_fwd.register_autograd(_backward, setup_context=_setup_context)


def selective_scan_op(p: ScanInputs, kernel: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, final_state)`` of the scan through the custom ops; ``kernel``: "short", "long" or "chunked"."""
    y, last, _ = selective_scan_fwd(p.u, p.delta, p.A, p.B, p.C, p.D, p.z, p.delta_bias, p.initial_state,
                                    p.seq_idx, p.mask, p.delta_softplus, kernel)
    return y, last
