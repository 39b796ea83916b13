"""The Triton SSD scan as ``torch.library`` custom ops, for ``torch.compile``.

Under compile, ``ssd_scan`` with the Triton backend calls ``ssd_scan_op``. Only the kernels' part is
opaque (``mambatune::ssd_scan_fwd`` / ``mambatune::ssd_scan_bwd``: the chunked scan of the discretised
dt, as ``triton._scan_fwd`` / ``_scan_bwd`` compute it); dt's bias, softplus, limit and mask, D, the z
gate and the output mask stay plain PyTorch in the compiled graph, where the compiler fuses them and
autograd differentiates them, as the eager autograd Function does by hand. The chunked backend is plain
PyTorch that Dynamo traces as it is, and eager calls never come here.

Every output is a new contiguous tensor, in the fake implementations too.
"""
from __future__ import annotations

import torch

from .spec import SSDInputs


def _kernel_inputs(x, dt, A, B, C, seq_idx, initial_state, chunk_size) -> SSDInputs:
    """The scan of an already discretised dt: no bias, softplus, limit or mask left to apply."""
    return SSDInputs(x, dt, A, B, C, initial_state=initial_state, seq_idx=seq_idx, chunk_size=chunk_size)


def _n_chunks(q: SSDInputs) -> int:
    import triton

    from .triton import _blocks

    return triton.cdiv(q.shape[1], _blocks(q)[0])


@torch.library.custom_op("mambatune::ssd_scan_fwd", mutates_args=())
def ssd_scan_fwd(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                 seq_idx: torch.Tensor | None, initial_state: torch.Tensor | None,
                 chunk_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (b, L, H, P), dt (b, L, H) discretised -> y without D, gate and mask (b, L, H, P) fp32, the final
    state (b, H, P, N) fp32 and the state entering each chunk (b, H, chunks, P, N) fp32."""
    from .triton import _scan_fwd

    y, ht, saved = _scan_fwd(_kernel_inputs(x, dt, A, B, C, seq_idx, initial_state, chunk_size), save_states=True)
    return y, ht, saved[5]


@ssd_scan_fwd.register_fake
def _(x, dt, A, B, C, seq_idx, initial_state, chunk_size):
    q = _kernel_inputs(x, dt, A, B, C, seq_idx, initial_state, chunk_size)
    batch, length, heads, headdim, _, n_state = q.shape
    f32 = dict(dtype=torch.float32, device=x.device)
    return (x.new_empty(x.shape, dtype=torch.float32), x.new_empty(batch, heads, headdim, n_state, **f32),
            x.new_empty(batch, heads, _n_chunks(q), headdim, n_state, **f32))


@torch.library.custom_op("mambatune::ssd_scan_bwd", mutates_args=())
def ssd_scan_bwd(dy: torch.Tensor, dht: torch.Tensor | None, states: torch.Tensor, x: torch.Tensor, dt: torch.Tensor,
                 A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, seq_idx: torch.Tensor | None,
                 initial_state: torch.Tensor | None, chunk_size: int) -> list[torch.Tensor]:
    """Gradients of x, dt, A, B, C and initial_state in their dtypes (an empty tensor for no initial_state)."""
    from .triton import _scan_bwd

    q = _kernel_inputs(x, dt, A, B, C, seq_idx, initial_state, chunk_size)
    seg = None
    resets = q.resets()
    if resets is not None:  # the document number of each step, as _scan_fwd derives it
        seg = torch.cumsum(resets.int(), dim=1, dtype=torch.int32).contiguous()
    saved = (x.contiguous(), B.contiguous(), C.contiguous(), q.discretised_dt().contiguous(), seg, states)
    grads = _scan_bwd(q, saved, dy, dht)
    refs = (x, dt, A, B, C, initial_state)
    return [x.new_empty(0) if ref is None else g.to(ref.dtype).contiguous() for g, ref in zip(grads, refs)]


@ssd_scan_bwd.register_fake
def _(dy, dht, states, x, dt, A, B, C, seq_idx, initial_state, chunk_size):
    refs = (x, dt, A, B, C, initial_state)
    return [x.new_empty(0) if ref is None else torch.empty_like(ref, memory_format=torch.contiguous_format)
            for ref in refs]


def _setup_context(ctx, inputs, output):
    x, dt, A, B, C, seq_idx, initial_state, chunk_size = inputs
    ctx.present = (seq_idx is not None, initial_state is not None)
    ctx.chunk_size = chunk_size
    ctx.save_for_backward(output[2], x, dt, A, B, C, *[t for t in (seq_idx, initial_state) if t is not None])


def _backward(ctx, dy, dht, _d_states):
    states, x, dt, A, B, C, *rest = ctx.saved_tensors
    it = iter(rest)
    seq_idx, h0 = [next(it) if present else None for present in ctx.present]
    dy = dy if dy is not None else x.new_zeros(x.shape, dtype=torch.float32)
    dx, ddt, dA, dB, dC, dh0 = ssd_scan_bwd(dy, dht, states, x, dt, A, B, C, seq_idx, h0, ctx.chunk_size)
    return dx, ddt, dA, dB, dC, None, dh0 if h0 is not None else None, None


ssd_scan_fwd.register_autograd(_backward, setup_context=_setup_context)


def ssd_scan_op(p: SSDInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, final_state)`` of the Triton SSD scan, its kernels through the custom ops."""
    from .triton import _finish

    y, ht, _ = ssd_scan_fwd(p.x, p.discretised_dt(), p.A, p.B, p.C, p.seq_idx, p.initial_state, p.chunk_size)
    return _finish(p, y), ht
