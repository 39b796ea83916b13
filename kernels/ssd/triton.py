"""SSD scan in Triton: one program per (batch, head, block of channels) walks the chunks in order.

Per chunk of Q steps the program holds its state h [BP, N] and computes, with tl.dot:

    y     = ((C B^T) * exp(S[t] - S[s]) * dt[s]) @ x        inside the chunk, s <= t, same document
    y    += exp(S[t]) * (C @ h^T)                            the incoming state
    h     = exp(S[end]) * h + (x * exp(S[end] - S) * dt)^T @ B

with S the cumulative sum of dt * A inside the chunk (see ``chunked.py`` for the algebra). dt (with
bias, softplus, limit and mask), the document numbers of ``seq_idx``, D, the z gate and the mask are
applied on the host in PyTorch; the kernel does the scan. The backward recomputes the chunked
PyTorch form and differentiates it (a Triton backward is the next step, issue 18).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .chunked import ssd_scan_chunked
from .spec import SSDInputs

MAX_CHUNK = 64  # the [Q, Q] decay tile lives in registers


@triton.jit
def _ssd_chunk_scan_fwd(
    x_ptr, dt_ptr, B_ptr, C_ptr, seg_ptr, h0_ptr, y_ptr, ht_ptr, A_ptr,
    L, H, P, N, heads_per_group,
    s_xb, s_xl, s_xh,
    s_bb, s_bl, s_bg,
    s_hb, s_hh, s_hp,
    CHUNK: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, HAS_SEG: tl.constexpr, HAS_H0: tl.constexpr,
):
    # x, y: (b, L, H, P) with unit stride over P; dt: (b, L, H) contiguous; B, C: (b, L, G, N) with unit
    # stride over N; seg: (b, L) int32 contiguous; h0, ht: (b, H, P, N) with unit stride over N
    i_bh, i_p = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    i_g = i_h // heads_per_group
    o_q = tl.arange(0, CHUNK)
    o_p = i_p * BP + tl.arange(0, BP)
    o_n = tl.arange(0, BN)
    m_p, m_n = o_p < P, o_n < N
    A = tl.load(A_ptr + i_h).to(tl.float32)
    p_h = i_b * s_hb + i_h * s_hh + o_p[:, None] * s_hp + o_n[None, :]
    m_h = m_p[:, None] & m_n[None, :]
    if HAS_H0:
        b_h = tl.load(h0_ptr + p_h, mask=m_h, other=0.0).to(tl.float32)  # [BP, BN]
    else:
        b_h = tl.zeros([BP, BN], dtype=tl.float32)
    seg_prev = tl.full([], 0, tl.int32)
    for start in range(0, L, CHUNK):
        o_t = start + o_q
        m_t = o_t < L
        end = tl.minimum(L - start, CHUNK) - 1
        b_dt = tl.load(dt_ptr + (i_b * L + o_t) * H + i_h, mask=m_t, other=0.0)  # [CHUNK]
        b_cum = tl.cumsum(b_dt * A, axis=0)  # [CHUNK]
        b_cum_end = tl.sum(tl.where(o_q == end, b_cum, 0.0), axis=0)
        p_x = i_b * s_xb + o_t[:, None] * s_xl + i_h * s_xh + o_p[None, :]
        m_x = m_t[:, None] & m_p[None, :]
        b_x = tl.load(x_ptr + p_x, mask=m_x, other=0.0).to(tl.float32)  # [CHUNK, BP]
        p_bc = i_b * s_bb + o_t[:, None] * s_bl + i_g * s_bg + o_n[None, :]
        m_bc = m_t[:, None] & m_n[None, :]
        b_B = tl.load(B_ptr + p_bc, mask=m_bc, other=0.0).to(tl.float32)  # [CHUNK, BN]
        b_C = tl.load(C_ptr + p_bc, mask=m_bc, other=0.0).to(tl.float32)  # [CHUNK, BN]
        m_keep = o_q[:, None] >= o_q[None, :]  # [CHUNK, CHUNK]: s <= t
        if HAS_SEG:
            b_seg = tl.load(seg_ptr + i_b * L + o_t, mask=m_t, other=0)  # [CHUNK]
            seg_end = tl.sum(tl.where(o_q == end, b_seg, 0), axis=0)
            m_keep = m_keep & (b_seg[:, None] == b_seg[None, :])
            m_to_end = b_seg == seg_end
            m_in = b_seg == seg_prev
            b_through = tl.where(seg_end == seg_prev, tl.exp(b_cum_end), 0.0)
            seg_prev = seg_end
        else:
            m_to_end = o_q >= 0
            m_in = o_q >= 0
            b_through = tl.exp(b_cum_end)
        b_diff = tl.where(m_keep, b_cum[:, None] - b_cum[None, :], 0.0)
        b_W = tl.dot(b_C, tl.trans(b_B), input_precision="ieee")  # [CHUNK, CHUNK]
        b_W = tl.where(m_keep, b_W * tl.exp(b_diff), 0.0) * b_dt[None, :]
        b_y = tl.dot(b_W, b_x, input_precision="ieee")  # [CHUNK, BP]
        b_in = tl.where(m_in, tl.exp(b_cum), 0.0)  # [CHUNK]
        b_y += tl.dot(b_C, tl.trans(b_h), input_precision="ieee") * b_in[:, None]
        b_w_end = tl.where(m_to_end, tl.exp(b_cum_end - b_cum) * b_dt, 0.0)  # [CHUNK]
        b_h = b_through * b_h + tl.dot(tl.trans(b_x * b_w_end[:, None]), b_B, input_precision="ieee")  # [BP, BN]
        tl.store(y_ptr + p_x, b_y, mask=m_x)
    tl.store(ht_ptr + p_h, b_h, mask=m_h)


def _scan_fwd(p: SSDInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel's part: (y without D, gate and mask (batch, L, H, P) fp32, final state fp32)."""
    batch, length, heads, headdim, groups, n_state = p.shape
    x = p.x if p.x.stride(-1) == 1 else p.x.contiguous()
    B = p.B if p.B.stride(-1) == 1 else p.B.contiguous()
    C = p.C.contiguous() if p.C.stride() != B.stride() else p.C
    dt = p.discretised_dt().contiguous()
    seg = None
    resets = p.resets()
    if resets is not None:
        seg = torch.cumsum(resets.int(), dim=1, dtype=torch.int32).contiguous()
    h0 = p.initial_state.float().contiguous() if p.initial_state is not None else None
    y = torch.empty(batch, length, heads, headdim, device=x.device, dtype=torch.float32)
    ht = torch.empty(batch, heads, headdim, n_state, device=x.device, dtype=torch.float32)
    chunk = min(MAX_CHUNK, max(16, triton.next_power_of_2(p.chunk_size)))
    BP = min(64, max(16, triton.next_power_of_2(headdim)))
    BN = max(16, triton.next_power_of_2(n_state))
    if length == 0:
        ht.copy_(h0 if h0 is not None else torch.zeros_like(ht))
        return y, ht
    grid = (batch * heads, triton.cdiv(headdim, BP))
    _ssd_chunk_scan_fwd[grid](
        x, dt, B, C, seg if seg is not None else dt, h0 if h0 is not None else ht, y, ht, p.A.float().contiguous(),
        length, heads, headdim, n_state, heads // groups,
        x.stride(0), x.stride(1), x.stride(2),
        B.stride(0), B.stride(1), B.stride(2),
        ht.stride(0), ht.stride(1), ht.stride(2),
        CHUNK=chunk, BP=BP, BN=BN, HAS_SEG=seg is not None, HAS_H0=h0 is not None,
    )
    return y, ht


def _finish(p: SSDInputs, y: torch.Tensor) -> torch.Tensor:
    if p.D is not None:
        y = y + p.x.float() * p.D.float()[:, None]
    if p.z is not None:
        y = y * F.silu(p.z.float())
    if p.mask is not None:
        y = y * p.mask[:, :, None, None].to(y.dtype)
    return y.to(p.x.dtype)


FIELDS = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_state")


class _TritonScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p: SSDInputs, *tensors):
        with torch.no_grad():
            y, ht = _scan_fwd(p)
            out = _finish(p, y)
        ctx.p = p
        ctx.save_for_backward(*tensors)
        return out, ht

    @staticmethod
    def backward(ctx, g_y, g_h):
        tensors = ctx.saved_tensors
        needs = ctx.needs_input_grad[1:]
        leaves = [t.detach().requires_grad_(need) if t is not None else None for t, need in zip(tensors, needs)]
        with torch.enable_grad():
            q = dataclasses.replace(ctx.p, **dict(zip(FIELDS, leaves)))
            y, h = ssd_scan_chunked(q)
            outs = [o for o, g in ((y, g_y), (h, g_h)) if g is not None]
            grads_out = [g for g in (g_y, g_h) if g is not None]
            wanted = [t for t, need in zip(leaves, needs) if need]
            grads = iter(torch.autograd.grad(outs, wanted, grads_out, allow_unused=True))
        return (None, *[next(grads) if need else None for need in needs])


def ssd_scan_triton(p: SSDInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(y, final_state)`` with the semantics of ``reference.ssd_scan_reference``."""
    return _TritonScan.apply(p, *(getattr(p, f) for f in FIELDS))
