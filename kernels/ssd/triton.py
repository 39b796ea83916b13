"""SSD scan in Triton: forward and backward kernels that walk the chunks of one (batch, head) in order.

Forward, one program per (batch, head, block of channels), holding the state h [BP, N]; per chunk of
Q steps, with tl.dot:

    y     = ((C B^T) * exp(S[t] - S[s]) * dt[s]) @ x        inside the chunk, s <= t, same document
    y    += exp(S[t]) * (C @ h^T)                            the incoming state
    h     = exp(S[end]) * h + (x * exp(S[end] - S) * dt)^T @ B

with S the cumulative sum of dt * A inside the chunk (see ``chunked.py`` for the algebra). For the
backward it keeps the state entering each chunk (batch, H, L / Q, P, N).

Backward, one program per (batch, head), all channels: it walks the chunks from the last, carrying
dh = dL/dh, recomputes each chunk's pieces from its saved state and writes dx, d dt, dB, dC per head
(a group's heads are summed on the host), dA per (batch, head) and the initial state's gradient; the
gradient of the cumulative log decay S goes back to dt and A through a reverse cumulative sum.

Chunk-parallel layout (``LAUNCH["fwd_parallel"]`` / ``["bwd_parallel"]``, off by default until the GPU
benchmark times it): the same kernels split in two. A first pass walks the chunks carrying only the state
(forward: h, stored per chunk) or only its gradient (backward: dh leaving each chunk, ``_ssd_dstate_pass``),
one dot per chunk; then one program per chunk computes the rest from what the pass stored, so the
sequential part is short and the heavy part fills the GPU (at B4 H24 L8192: 12,288 programs, not 96).

dt (bias, softplus, limit, mask), the document numbers of ``seq_idx``, D, the z gate and the mask are
applied on the host in PyTorch (their gradients by autograd); the kernels do the scan.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .spec import SSDInputs

MAX_CHUNK = 64  # the [Q, Q] decay tile lives in registers

# Launch settings (benchmarks/ssd.py times alternatives): channels per forward program, warps per program.
# bwd_parallel: the backward as a short reverse pass over the chunks that carries dh alone (_ssd_dstate_pass,
# one program per (batch, head, bwd_bp channels)), then one program per (batch, head, chunk) for the rest,
# instead of one program per (batch, head) walking every chunk.
# fwd_parallel: the forward likewise, a pass that carries the state alone, then the outputs of every chunk at
# once (one program per (batch, head, fwd_bp channels, chunk)).
LAUNCH = {"fwd_bp": 64, "fwd_warps": 4, "bwd_warps": 4, "bwd_parallel": False, "bwd_bp": 32, "fwd_parallel": False}


def dot_precision(dtype: torch.dtype) -> str:
    """The forward's tl.dot precision for inputs of ``dtype``: exact fp32 products ("ieee") for fp32 inputs,
    TF32 tensor cores for bf16 / fp16 inputs, whose own rounding (8 or 11 mantissa bits) is no finer than
    TF32's (11 bits). The backward keeps fp32 products: with TF32 its tiles need 304 KB of shared memory at
    P 64, N 128 (the H200 has 227 KB per block; Triton 3.6, 2026-12-02)."""
    return "ieee" if dtype == torch.float32 else "tf32"


@triton.jit
def _ssd_chunk_scan_fwd(
    x_ptr, dt_ptr, B_ptr, C_ptr, seg_ptr, h0_ptr, y_ptr, ht_ptr, st_ptr, A_ptr,
    L, H, P, N, heads_per_group, n_chunks,
    s_xb, s_xl, s_xh,
    s_bb, s_bl, s_bg,
    s_hb, s_hh, s_hp,
    CHUNK: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, HAS_SEG: tl.constexpr, HAS_H0: tl.constexpr,
    SAVE_STATES: tl.constexpr, PREC: tl.constexpr, MODE: tl.constexpr,
):
    # x, y: (b, L, H, P) with unit stride over P; dt: (b, L, H) contiguous; B, C: (b, L, G, N) with unit
    # stride over N; seg: (b, L) int32 contiguous; h0, ht: (b, H, P, N) with unit stride over N;
    # st: (b, H, n_chunks, P, N) contiguous, the state entering each chunk (kept for the backward).
    # MODE 0: walk the chunks, outputs and state; 1: walk the chunks for the states only (st, ht; y not
    # written); 2: one program per (batch, head, channel block, chunk), outputs only, from st
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
    if MODE == 2:
        first, n_iter = tl.program_id(2), 1
    else:
        first, n_iter = 0, n_chunks
    for i in range(0, n_iter):
        i_c = first + i
        start = i_c * CHUNK
        p_st = ((i_bh * n_chunks + i_c) * P + o_p[:, None]) * N + o_n[None, :]
        if MODE == 2:
            b_h = tl.load(st_ptr + p_st, mask=m_h, other=0.0)
            if HAS_SEG:
                seg_prev = tl.load(seg_ptr + i_b * L + tl.maximum(start - 1, 0), mask=start > 0, other=0)
        elif SAVE_STATES:
            tl.store(st_ptr + p_st, b_h, mask=m_h)
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
        if MODE != 1:
            b_diff = tl.where(m_keep, b_cum[:, None] - b_cum[None, :], 0.0)
            b_W = tl.dot(b_C, tl.trans(b_B), input_precision=PREC)  # [CHUNK, CHUNK]
            b_W = tl.where(m_keep, b_W * tl.exp(b_diff), 0.0) * b_dt[None, :]
            b_y = tl.dot(b_W, b_x, input_precision=PREC)  # [CHUNK, BP]
            b_in = tl.where(m_in, tl.exp(b_cum), 0.0)  # [CHUNK]
            b_y += tl.dot(b_C, tl.trans(b_h), input_precision=PREC) * b_in[:, None]
            tl.store(y_ptr + p_x, b_y, mask=m_x)
        if MODE != 2:
            b_w_end = tl.where(m_to_end, tl.exp(b_cum_end - b_cum) * b_dt, 0.0)  # [CHUNK]
            b_h = b_through * b_h + tl.dot(tl.trans(b_x * b_w_end[:, None]), b_B, input_precision=PREC)  # [BP, BN]
    if MODE != 2:
        tl.store(ht_ptr + p_h, b_h, mask=m_h)


@triton.jit
def _ssd_chunk_scan_bwd(
    x_ptr, dt_ptr, B_ptr, C_ptr, seg_ptr, st_ptr, dy_ptr, dht_ptr, A_ptr,
    dx_ptr, ddt_ptr, dB_ptr, dC_ptr, dh0_ptr, dA_ptr,
    L, H, P, N, heads_per_group, n_chunks,
    s_bb, s_bl, s_bg,
    CHUNK: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, HAS_SEG: tl.constexpr, HAS_DHT: tl.constexpr,
    PREC: tl.constexpr, PARALLEL: tl.constexpr,
):
    # one program per (batch, head), all P channels, walking the chunks backwards with dh = dL/dh [BP, BN].
    # x, dy, dx: (b, L, H, P) contiguous; dt, ddt: (b, L, H) contiguous; B, C: (b, L, G, N) unit stride over
    # N; dB, dC: (b, L, H, N) contiguous, per head (the host sums a group's heads); st: (b, H, n_chunks,
    # P, N); dht, dh0: (b, H, P, N); dA: (b, H), per program (the host sums the batch).
    # PARALLEL: one program per (batch, head, chunk) instead, reading the chunk's dh from dht_ptr, which is
    # then (b, H, n_chunks, P, N) from _ssd_dstate_pass; dA is then (b, H, n_chunks) and dh0 is not written
    i_bh = tl.program_id(0)
    i_b, i_h = i_bh // H, i_bh % H
    i_g = i_h // heads_per_group
    o_q = tl.arange(0, CHUNK)
    o_p = tl.arange(0, BP)
    o_n = tl.arange(0, BN)
    m_p, m_n = o_p < P, o_n < N
    m_h = m_p[:, None] & m_n[None, :]
    p_h = (i_bh * P + o_p[:, None]) * N + o_n[None, :]
    A = tl.load(A_ptr + i_h).to(tl.float32)
    if HAS_DHT and not PARALLEL:
        b_dh = tl.load(dht_ptr + p_h, mask=m_h, other=0.0)  # [BP, BN]
    else:
        b_dh = tl.zeros([BP, BN], dtype=tl.float32)
    b_dA = tl.zeros([], dtype=tl.float32)
    if PARALLEL:
        last, n_iter = tl.program_id(1), 1
    else:
        last, n_iter = n_chunks - 1, n_chunks
    for i in range(0, n_iter):
        i_c = last - i
        start = i_c * CHUNK
        if PARALLEL:
            p_dst = ((i_bh * n_chunks + i_c) * P + o_p[:, None]) * N + o_n[None, :]
            b_dh = tl.load(dht_ptr + p_dst, mask=m_h, other=0.0)
        o_t = start + o_q
        m_t = o_t < L
        end = tl.minimum(L - start, CHUNK) - 1
        b_dt = tl.load(dt_ptr + (i_b * L + o_t) * H + i_h, mask=m_t, other=0.0)  # [CHUNK]
        b_cum = tl.cumsum(b_dt * A, axis=0)
        b_cum_end = tl.sum(tl.where(o_q == end, b_cum, 0.0), axis=0)
        p_x = ((i_b * L + o_t[:, None]) * H + i_h) * P + o_p[None, :]
        m_x = m_t[:, None] & m_p[None, :]
        b_x = tl.load(x_ptr + p_x, mask=m_x, other=0.0).to(tl.float32)  # [CHUNK, BP]
        b_dy = tl.load(dy_ptr + p_x, mask=m_x, other=0.0)  # [CHUNK, BP]
        p_bc = i_b * s_bb + o_t[:, None] * s_bl + i_g * s_bg + o_n[None, :]
        m_bc = m_t[:, None] & m_n[None, :]
        b_B = tl.load(B_ptr + p_bc, mask=m_bc, other=0.0).to(tl.float32)  # [CHUNK, BN]
        b_C = tl.load(C_ptr + p_bc, mask=m_bc, other=0.0).to(tl.float32)  # [CHUNK, BN]
        b_hin = tl.load(st_ptr + ((i_bh * n_chunks + i_c) * P + o_p[:, None]) * N + o_n[None, :], mask=m_h, other=0.0)
        m_keep = o_q[:, None] >= o_q[None, :]
        if HAS_SEG:
            b_seg = tl.load(seg_ptr + i_b * L + o_t, mask=m_t, other=0)
            seg_end = tl.sum(tl.where(o_q == end, b_seg, 0), axis=0)
            seg_prev = tl.load(seg_ptr + i_b * L + tl.maximum(start - 1, 0), mask=start > 0, other=0)
            m_keep = m_keep & (b_seg[:, None] == b_seg[None, :])
            m_to_end = b_seg == seg_end
            m_in = b_seg == seg_prev
            b_through = tl.where(seg_end == seg_prev, tl.exp(b_cum_end), 0.0)
        else:
            m_to_end = o_q >= 0
            m_in = o_q >= 0
            b_through = tl.exp(b_cum_end)
        # recompute the chunk's forward pieces
        b_decay = tl.where(m_keep, tl.exp(tl.where(m_keep, b_cum[:, None] - b_cum[None, :], 0.0)), 0.0)  # [CHUNK, CHUNK]
        b_M = tl.dot(b_C, tl.trans(b_B), input_precision=PREC) * b_decay  # [CHUNK, CHUNK]
        b_xdt = b_x * b_dt[:, None]  # [CHUNK, BP]
        b_in = tl.where(m_in, tl.exp(b_cum), 0.0)  # [CHUNK]
        b_w_end = tl.where(m_to_end, tl.exp(b_cum_end - b_cum), 0.0)  # [CHUNK]
        # gradients
        b_dM = tl.dot(b_dy, tl.trans(b_xdt), input_precision=PREC)  # [CHUNK, CHUNK]
        b_Bdh = tl.dot(b_B, tl.trans(b_dh), input_precision=PREC)  # [CHUNK, BP]
        b_dxdt = tl.dot(tl.trans(b_M), b_dy, input_precision=PREC) + b_w_end[:, None] * b_Bdh  # [CHUNK, BP]
        b_dCB = b_dM * b_decay
        b_dC = tl.dot(b_dCB, b_B, input_precision=PREC) + b_in[:, None] * tl.dot(b_dy, b_hin, input_precision=PREC)
        b_dB = tl.dot(tl.trans(b_dCB), b_C, input_precision=PREC) + b_w_end[:, None] * tl.dot(
            b_xdt, b_dh, input_precision=PREC)  # [CHUNK, BN]
        b_G = b_dM * b_M
        b_Ch = tl.dot(b_C, tl.trans(b_hin), input_precision=PREC)  # [CHUNK, BP]
        b_dw = tl.sum(b_xdt * b_Bdh, axis=1) * b_w_end  # [CHUNK]
        b_dcum = tl.sum(b_G, axis=1) - tl.sum(b_G, axis=0) + b_in * tl.sum(b_dy * b_Ch, axis=1) - b_dw
        b_dcum_end = tl.sum(b_dw, axis=0) + b_through * tl.sum(tl.sum(b_dh * b_hin, axis=1), axis=0)
        b_dcum += tl.where(o_q == end, b_dcum_end, 0.0)
        b_rc = tl.sum(b_dcum, axis=0) - tl.cumsum(b_dcum, axis=0) + b_dcum  # d(dt * A)[s] = sum over t >= s
        b_ddt = tl.sum(b_dxdt * b_x, axis=1) + A * b_rc
        b_dA += tl.sum(b_dt * b_rc, axis=0)
        tl.store(dx_ptr + p_x, b_dxdt * b_dt[:, None], mask=m_x)
        tl.store(ddt_ptr + (i_b * L + o_t) * H + i_h, b_ddt, mask=m_t)
        p_dbc = ((i_b * L + o_t[:, None]) * H + i_h) * N + o_n[None, :]
        tl.store(dB_ptr + p_dbc, b_dB, mask=m_bc)
        tl.store(dC_ptr + p_dbc, b_dC, mask=m_bc)
        if not PARALLEL:
            b_dh = b_through * b_dh + tl.dot(tl.trans(b_dy * b_in[:, None]), b_C, input_precision=PREC)  # [BP, BN]
    if PARALLEL:
        tl.store(dA_ptr + i_bh * n_chunks + last, b_dA)
    else:
        tl.store(dh0_ptr + p_h, b_dh, mask=m_h)
        tl.store(dA_ptr + i_bh, b_dA)


@triton.jit
def _ssd_dstate_pass(
    dt_ptr, C_ptr, seg_ptr, dy_ptr, dht_ptr, A_ptr, dst_ptr, dh0_ptr,
    L, H, P, N, heads_per_group, n_chunks,
    s_bb, s_bl, s_bg,
    CHUNK: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, HAS_SEG: tl.constexpr, HAS_DHT: tl.constexpr,
    PREC: tl.constexpr,
):
    # one program per (batch, head, block of channels), walking the chunks backwards with dh [BP, BN] alone:
    # dst (b, H, n_chunks, P, N) gets the gradient of the state leaving each chunk, dh0 that of the initial
    # state; the chunk-parallel backward reads dst. dy: (b, L, H, P) contiguous, the rest as above
    i_bh, i_p = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    i_g = i_h // heads_per_group
    o_q = tl.arange(0, CHUNK)
    o_p = i_p * BP + tl.arange(0, BP)
    o_n = tl.arange(0, BN)
    m_p, m_n = o_p < P, o_n < N
    m_h = m_p[:, None] & m_n[None, :]
    p_h = (i_bh * P + o_p[:, None]) * N + o_n[None, :]
    A = tl.load(A_ptr + i_h).to(tl.float32)
    if HAS_DHT:
        b_dh = tl.load(dht_ptr + p_h, mask=m_h, other=0.0)  # [BP, BN]
    else:
        b_dh = tl.zeros([BP, BN], dtype=tl.float32)
    for i in range(0, n_chunks):
        i_c = n_chunks - 1 - i
        start = i_c * CHUNK
        tl.store(dst_ptr + ((i_bh * n_chunks + i_c) * P + o_p[:, None]) * N + o_n[None, :], b_dh, mask=m_h)
        o_t = start + o_q
        m_t = o_t < L
        end = tl.minimum(L - start, CHUNK) - 1
        b_dt = tl.load(dt_ptr + (i_b * L + o_t) * H + i_h, mask=m_t, other=0.0)  # [CHUNK]
        b_cum = tl.cumsum(b_dt * A, axis=0)
        b_cum_end = tl.sum(tl.where(o_q == end, b_cum, 0.0), axis=0)
        b_dy = tl.load(dy_ptr + ((i_b * L + o_t[:, None]) * H + i_h) * P + o_p[None, :],
                       mask=m_t[:, None] & m_p[None, :], other=0.0)  # [CHUNK, BP]
        b_C = tl.load(C_ptr + i_b * s_bb + o_t[:, None] * s_bl + i_g * s_bg + o_n[None, :],
                      mask=m_t[:, None] & m_n[None, :], other=0.0).to(tl.float32)  # [CHUNK, BN]
        if HAS_SEG:
            b_seg = tl.load(seg_ptr + i_b * L + o_t, mask=m_t, other=0)
            seg_end = tl.sum(tl.where(o_q == end, b_seg, 0), axis=0)
            seg_prev = tl.load(seg_ptr + i_b * L + tl.maximum(start - 1, 0), mask=start > 0, other=0)
            b_in = tl.where(b_seg == seg_prev, tl.exp(b_cum), 0.0)
            b_through = tl.where(seg_end == seg_prev, tl.exp(b_cum_end), 0.0)
        else:
            b_in = tl.exp(b_cum)
            b_through = tl.exp(b_cum_end)
        b_in = tl.where(m_t, b_in, 0.0)
        b_dh = b_through * b_dh + tl.dot(tl.trans(b_dy * b_in[:, None]), b_C, input_precision=PREC)  # [BP, BN]
    tl.store(dh0_ptr + p_h, b_dh, mask=m_h)


def _blocks(p: SSDInputs) -> tuple[int, int, int]:
    """(chunk, BN, BP of the backward): tl.dot needs tiles of at least 16."""
    chunk = min(MAX_CHUNK, max(16, triton.next_power_of_2(p.chunk_size)))
    return chunk, max(16, triton.next_power_of_2(p.shape[5])), max(16, triton.next_power_of_2(p.shape[3]))


def _scan_fwd(p: SSDInputs, save_states: bool):
    """The kernel's part: y without D, gate and mask (batch, L, H, P) fp32, the final state fp32, and
    what the backward needs (the contiguous inputs, dt, document numbers and each chunk's state)."""
    batch, length, heads, headdim, groups, n_state = p.shape
    x = p.x.contiguous()
    B = p.B.contiguous()
    C = p.C.contiguous()
    dt = p.discretised_dt().contiguous()
    seg = None
    resets = p.resets()
    if resets is not None:
        seg = torch.cumsum(resets.int(), dim=1, dtype=torch.int32).contiguous()
    h0 = p.initial_state.float().contiguous() if p.initial_state is not None else None
    chunk, BN, _ = _blocks(p)
    n_chunks = triton.cdiv(length, chunk)
    parallel = LAUNCH["fwd_parallel"]
    y = torch.empty(batch, length, heads, headdim, device=x.device, dtype=torch.float32)
    ht = torch.empty(batch, heads, headdim, n_state, device=x.device, dtype=torch.float32)
    states = torch.empty(batch, heads, n_chunks if save_states or parallel else 0, headdim, n_state,
                         device=x.device, dtype=torch.float32)
    if length == 0:
        ht.copy_(h0 if h0 is not None else torch.zeros_like(ht))
        return y, ht, (x, B, C, dt, seg, states)
    BP = min(LAUNCH["fwd_bp"], max(16, triton.next_power_of_2(headdim)))
    args = (x, dt, B, C, seg if seg is not None else dt, h0 if h0 is not None else ht, y, ht, states,
            p.A.float().contiguous(), length, heads, headdim, n_state, heads // groups, n_chunks,
            x.stride(0), x.stride(1), x.stride(2), B.stride(0), B.stride(1), B.stride(2),
            ht.stride(0), ht.stride(1), ht.stride(2))
    blocks = dict(CHUNK=chunk, BP=BP, BN=BN, HAS_SEG=seg is not None, HAS_H0=h0 is not None,
                  PREC=dot_precision(p.x.dtype), num_warps=LAUNCH["fwd_warps"])
    grid = (batch * heads, triton.cdiv(headdim, BP))
    if parallel:  # the state entering each chunk first, then every chunk's outputs at once
        _ssd_chunk_scan_fwd[grid](*args, SAVE_STATES=True, MODE=1, **blocks)
        _ssd_chunk_scan_fwd[(*grid, n_chunks)](*args, SAVE_STATES=True, MODE=2, **blocks)
    else:
        _ssd_chunk_scan_fwd[grid](*args, SAVE_STATES=save_states, MODE=0, **blocks)
    return y, ht, (x, B, C, dt, seg, states)


def _scan_bwd(p: SSDInputs, saved, dy: torch.Tensor, dht: torch.Tensor | None):
    """Gradients of the kernel's part: dx (b, L, H, P), d dt (b, L, H) w.r.t. the discretised dt, dA (H,),
    dB, dC (b, L, G, N) and d initial state (b, H, P, N), all fp32."""
    batch, length, heads, headdim, groups, n_state = p.shape
    x, B, C, dt, seg, states = saved
    chunk, BN, BP = _blocks(p)
    f32 = dict(device=x.device, dtype=torch.float32)
    dx = torch.empty(batch, length, heads, headdim, **f32)
    ddt = torch.empty(batch, length, heads, **f32)
    dB = torch.empty(batch, length, heads, n_state, **f32)
    dC = torch.empty(batch, length, heads, n_state, **f32)
    dh0 = torch.empty(batch, heads, headdim, n_state, **f32)
    n_chunks = states.shape[2]
    parallel = LAUNCH["bwd_parallel"] and n_chunks > 0
    dA = torch.empty(batch * heads, n_chunks if parallel else 1, **f32)
    dy = dy.float().contiguous()
    A = p.A.float().contiguous()
    seg_arg = seg if seg is not None else dt
    dh_in = dht.float().contiguous() if dht is not None else dh0
    if parallel:  # the gradient of the state leaving each chunk first, then every chunk at once
        dstates = torch.empty(batch, heads, n_chunks, headdim, n_state, **f32)
        bp = min(LAUNCH["bwd_bp"], BP)
        _ssd_dstate_pass[(batch * heads, triton.cdiv(headdim, bp))](
            dt, C, seg_arg, dy, dh_in, A, dstates, dh0,
            length, heads, headdim, n_state, heads // groups, n_chunks,
            C.stride(0), C.stride(1), C.stride(2),
            CHUNK=chunk, BP=bp, BN=BN, HAS_SEG=seg is not None, HAS_DHT=dht is not None, PREC="ieee",
            num_warps=LAUNCH["bwd_warps"],
        )
        dh_in = dstates
    _ssd_chunk_scan_bwd[(batch * heads, n_chunks if parallel else 1)](
        x, dt, B, C, seg_arg, states, dy, dh_in, A,
        dx, ddt, dB, dC, dh0, dA,
        length, heads, headdim, n_state, heads // groups, n_chunks,
        B.stride(0), B.stride(1), B.stride(2),
        CHUNK=chunk, BP=BP, BN=BN, HAS_SEG=seg is not None, HAS_DHT=dht is not None or parallel,
        PREC="ieee", PARALLEL=parallel, num_warps=LAUNCH["bwd_warps"],
    )
    per_group = heads // groups
    dB = dB.view(batch, length, groups, per_group, n_state).sum(3)
    dC = dC.view(batch, length, groups, per_group, n_state).sum(3)
    return dx, ddt, dA.view(batch, heads, -1).sum((0, 2)), dB, dC, dh0


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
        training = any(ctx.needs_input_grad)
        with torch.no_grad():
            y, ht, saved = _scan_fwd(p, save_states=training)
            out = _finish(p, y)
        ctx.p, ctx.y, ctx.saved = p, (y if training else None), (saved if training else None)
        ctx.save_for_backward(*tensors)
        return out, ht

    @staticmethod
    def backward(ctx, g_out, g_h):
        needs = dict(zip(FIELDS, ctx.needs_input_grad[1:]))
        leaves = {f: (t.detach().requires_grad_(needs[f]) if t is not None else None)
                  for f, t in zip(FIELDS, ctx.saved_tensors)}
        q = dataclasses.replace(ctx.p, **leaves)
        grads = dict.fromkeys(FIELDS)
        with torch.enable_grad():
            # D, the z gate and the mask, in PyTorch
            y = ctx.y.detach().requires_grad_(True)
            out = _finish(q, y)
            wanted = ["x", "D", "z"]
            inputs = [y] + [leaves[f] for f in wanted if needs[f]]
            g = torch.autograd.grad(out, inputs, g_out if g_out is not None else torch.zeros_like(out), allow_unused=True)
            dy = g[0] if g[0] is not None else torch.zeros_like(y)
            for f, gf in zip([f for f in wanted if needs[f]], g[1:]):
                grads[f] = gf
            # the scan, in Triton
            dx, ddt, dA, dB, dC, dh0 = _scan_bwd(q, ctx.saved, dy, g_h)
            # dt_bias, softplus, dt_limit and the mask, in PyTorch
            dt_inputs = [f for f in ("dt", "dt_bias") if needs[f]]
            if dt_inputs:
                g = torch.autograd.grad(q.discretised_dt(), [leaves[f] for f in dt_inputs], ddt, allow_unused=True)
                grads.update(zip(dt_inputs, g))
        if needs["x"]:
            grads["x"] = dx if grads["x"] is None else grads["x"] + dx
        grads.update(A=dA, B=dB, C=dC, initial_state=dh0)
        return (None, *[grads[f].to(leaves[f].dtype) if needs[f] and grads[f] is not None else None for f in FIELDS])


def ssd_scan_triton(p: SSDInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(y, final_state)`` with the semantics of ``reference.ssd_scan_reference``."""
    return _TritonScan.apply(p, *(getattr(p, f) for f in FIELDS))
