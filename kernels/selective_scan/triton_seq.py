"""Selective scan in Triton, time walked inside each thread (the fast path for d_state <= 16).

Each program owns one batch row and BD channels; with one warp, the threads
are laid out along the channels (and, for BD < 32, two or more along the
states), so a thread holds all or half of one channel's states and walks the
steps one after another: one exp and two FMAs per state and step, and the
y = C . h reduction mostly inside the thread. The steps of a chunk of BT are
loaded as [BT, BD] tiles (vectorised along time when time is contiguous) and
unrolled with ``tl.static_range``; picking step t out of a tile is a
``where(t3 == t, x, -0.0)`` summed over the time axis, which the compiler folds
to a register move because the time axis lives inside the thread.

This replaces the associative scan over a time axis spread across lanes
(``triton.py``), whose shuffles per element, rather than memory or the exp
unit, bounded it (benchmarks/RESULTS.md).

The forward saves the state at each chunk start (fp32, (batch, chunks, N, dim)).
The backward walks the chunks in reverse: it recomputes the chunk's states
into a [BT, BN, BD] register tile from the checkpoint, then runs the adjoint
recurrence ``g[t] = gy[t] C[t] + a[t+1] g[t+1]`` backwards through the chunk.
dB and dC are summed over the block's channels once per chunk and added with
relaxed fp32 atomics; A, D, delta_bias gradients go to per-batch buffers.

Eligible inputs: time-varying B and C whose group holds whole channel blocks
(``dim // groups`` a multiple of BD), d_state <= 16. Others take ``triton.py``.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .spec import ScanInputs

LOG2E = 1.4426950408889634


@triton.jit
def _pick(x, sel):
    """Step t of a tile whose axis 0 is time (inside the thread): sum of where(sel, x, -0.0), a register move."""
    return tl.sum(tl.where(sel, x, -0.0), axis=0, keep_dims=True)


@triton.jit
def _sum_state(x):
    """[.., S, J, BD] summed over the states (in-thread over S, then across the J lanes): [.., 1, 1, BD]."""
    return tl.sum(tl.sum(x, axis=1, keep_dims=True), axis=2, keep_dims=True)


@triton.jit
def _index(i_d, BD: tl.constexpr, BN: tl.constexpr, BT: tl.constexpr):
    """Index tensors of the 4-D tiles [time, state-in-thread S, state-lane J, channel]: with one warp and
    J = 32 / BD, Triton's default layout puts the BD channels and the J state lanes on the 32 lanes and
    keeps time and the S = BN / J states of a lane inside the thread."""
    J: tl.constexpr = 32 // BD
    S: tl.constexpr = BN // J
    o_d = (i_d * BD + tl.arange(0, BD))[None, None, None, :]  # [1, 1, 1, BD]
    o_j = tl.arange(0, J)[None, None, :, None]  # [1, 1, J, 1]
    o_n = o_j * S + tl.arange(0, S)[None, :, None, None]  # [1, S, J, 1]
    o_t = tl.arange(0, BT)[:, None, None, None]  # [BT, 1, 1, 1]
    return o_d, o_j, o_n, o_t


@triton.jit
def _activate(pre, bias_ptr, o_d, m_d, m, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """dt from a loaded [BT, 1, J, BD] delta tile; also the pre-activation (delta + bias)."""
    if HAS_BIAS:
        pre += tl.load(bias_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)
    if SOFTPLUS:
        dt = tl.where(pre > 20.0, pre, tl.log(1.0 + tl.exp(pre)))
    else:
        dt = pre
    return tl.where(m, dt, 0.0), pre


@triton.jit
def _bc_step(p, t_abs, length, st, m_n, EVEN_N: tl.constexpr):
    """B or C at step t_abs, [1, S, J, 1] fp32; steps past the end read the last one (their dt is 0)."""
    t_c = tl.minimum(t_abs, length - 1).to(tl.int64)
    if EVEN_N:
        x = tl.load(p + t_c * st)
    else:
        x = tl.load(p + t_c * st, mask=m_n, other=0.0)
    return x.to(tl.float32)


@triton.jit
def _keep_tile(seq_ptr, i_b, tt, m_t, length):
    """1.0 where step tt continues the sequence of tt - 1, 0.0 where seq_idx changes (a reset)."""
    s_cur = tl.load(seq_ptr + i_b * length + tt, mask=m_t & (tt > 0), other=0)
    s_prev = tl.load(seq_ptr + i_b * length + tt - 1, mask=m_t & (tt > 0), other=0)
    return tl.where(s_cur == s_prev, 1.0, 0.0)


@triton.jit
def _seq_fwd_kernel(
    u_ptr, delta_ptr, At_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr, seq_ptr, mask_ptr,
    y_ptr, hT_ptr, ckpt_ptr,
    dim, length, n_state, dpg_B, dpg_C,
    su_b, su_d, su_t, sdl_b, sdl_d, sdl_t, sz_b, sz_d, sz_t, sy_b, sy_d, sy_t,
    sB_b, sB_g, sB_t, sC_b, sC_g, sC_t,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr, HAS_SEQ: tl.constexpr, HAS_MASK: tl.constexpr, SAVE_CKPT: tl.constexpr,
    EVEN_N: tl.constexpr, BD: tl.constexpr, BN: tl.constexpr, BT: tl.constexpr,
):
    i_d, i_b = tl.program_id(0), tl.program_id(1)
    o_d, o_j, o_n, o_t = _index(i_d, BD, BN, BT)
    m_d = o_d < dim
    m_n = o_n < n_state
    m_nd = m_n & m_d
    n_chunks = tl.cdiv(length, BT)
    i_b64 = i_b.to(tl.int64)
    o_d64 = o_d.to(tl.int64)

    A2 = tl.load(At_ptr + o_n * dim + o_d, mask=m_nd, other=0.0).to(tl.float32) * 1.4426950408889634
    if HAS_D:
        Dskip = tl.load(D_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)
    p_u = u_ptr + i_b64 * su_b + o_d64 * su_d
    p_delta = delta_ptr + i_b64 * sdl_b + o_d64 * sdl_d
    if HAS_Z:
        p_z = z_ptr + i_b64 * sz_b + o_d64 * sz_d
    p_y = y_ptr + i_b64 * sy_b + o_d64 * sy_d
    p_nd = i_b64 * n_state * dim + o_n * dim + o_d  # (batch, N, dim) offsets, [1, S, J, BD]
    if HAS_H0:
        h = tl.load(h0_ptr + p_nd, mask=m_nd, other=0.0)
    else:
        h = tl.zeros(m_nd.shape, dtype=tl.float32)
    # the block's channels share one group of B and C
    # (B and C have unit state stride: the S states of a lane are one run, addressed by immediate offsets)
    p_B = B_ptr + i_b64 * sB_b + ((i_d * BD) // dpg_B) * sB_g + o_n  # [1, S, J, 1]
    p_C = C_ptr + i_b64 * sC_b + ((i_d * BD) // dpg_C) * sC_g + o_n

    # the next chunk's delta, u and z tiles are loaded one chunk ahead, so their latency hides behind a chunk
    tt = o_t + o_j * 0  # [BT, 1, J, 1]: the J state lanes read the same steps
    m_td = (tt < length) & m_d
    nx_pre = tl.load(p_delta + tt.to(tl.int64) * sdl_t, mask=m_td, other=0.0)
    nx_u = tl.load(p_u + tt.to(tl.int64) * su_t, mask=m_td, other=0.0)
    if HAS_Z:
        nx_z = tl.load(p_z + tt.to(tl.int64) * sz_t, mask=m_td, other=0.0)
    for i_c in range(0, n_chunks):
        if SAVE_CKPT:
            tl.store(ckpt_ptr + (i_b64 * n_chunks + i_c) * n_state * dim + o_n * dim + o_d, h, mask=m_nd)
        tt = i_c * BT + o_t + o_j * 0
        m_t = tt < length
        m_td = m_t & m_d
        tt64 = tt.to(tl.int64)
        pre = nx_pre.to(tl.float32)
        uu = nx_u.to(tl.float32)
        if HAS_Z:
            zz = nx_z.to(tl.float32)
        tn64 = tt64 + BT
        m_n_td = (tt + BT < length) & m_d
        nx_pre = tl.load(p_delta + tn64 * sdl_t, mask=m_n_td, other=0.0)
        nx_u = tl.load(p_u + tn64 * su_t, mask=m_n_td, other=0.0)
        if HAS_Z:
            nx_z = tl.load(p_z + tn64 * sz_t, mask=m_n_td, other=0.0)
        dt, _ = _activate(pre, bias_ptr, o_d, m_d, m_td, HAS_BIAS, SOFTPLUS)
        if HAS_MASK:
            dt *= tl.load(mask_ptr + i_b * length + tt, mask=m_t, other=0.0)
        dtu = dt * uu
        if HAS_SEQ:
            keep = _keep_tile(seq_ptr, i_b, tt, m_t, length)
        yy = tl.zeros(uu.shape, dtype=tl.float32)
        for t in tl.static_range(BT):
            sel = o_t == t
            t_abs = i_c * BT + t
            B_t = _bc_step(p_B, t_abs, length, sB_t, m_n, EVEN_N)  # [1, S, J, 1]
            C_t = _bc_step(p_C, t_abs, length, sC_t, m_n, EVEN_N)
            a = tl.exp2(_pick(dt, sel) * A2)
            if HAS_SEQ:
                a *= _pick(keep, sel)
            h = a * h + _pick(dtu, sel) * B_t
            yy = tl.where(sel, _sum_state(h * C_t), yy)
        if HAS_D:
            yy += Dskip * uu
        if HAS_Z:
            yy *= zz * tl.sigmoid(zz)
        if HAS_MASK:
            yy *= tl.load(mask_ptr + i_b * length + tt, mask=m_t, other=0.0)
        tl.store(p_y + tt64 * sy_t, yy.to(y_ptr.dtype.element_ty), mask=m_td)
    tl.store(hT_ptr + p_nd, h, mask=m_nd)


@triton.jit
def _seq_bwd_kernel(
    u_ptr, delta_ptr, At_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, seq_ptr, mask_ptr, ckpt_ptr,
    gy_ptr, ghT_ptr,
    gu_ptr, gdelta_ptr, gz_ptr, gB_ptr, gC_ptr, gh0_ptr, gA_ptr, gD_ptr, gbias_ptr,
    dim, length, n_state, dpg_B, dpg_C, n_groups_B, n_groups_C,
    su_b, su_d, su_t, sdl_b, sdl_d, sdl_t, sz_b, sz_d, sz_t, sgy_b, sgy_d, sgy_t,
    sgu_b, sgu_d, sgu_t, sgdl_b, sgdl_d, sgdl_t, sgz_b, sgz_d, sgz_t,
    sB_b, sB_g, sB_t, sC_b, sC_g, sC_t,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_GHT: tl.constexpr, HAS_SEQ: tl.constexpr, HAS_MASK: tl.constexpr,
    EVEN_N: tl.constexpr, BD: tl.constexpr, BN: tl.constexpr, BT: tl.constexpr,
):
    i_d, i_b = tl.program_id(0), tl.program_id(1)
    o_d, o_j, o_n, o_t = _index(i_d, BD, BN, BT)
    m_d = o_d < dim
    m_n = o_n < n_state
    m_nd = m_n & m_d
    n_chunks = tl.cdiv(length, BT)
    i_b64 = i_b.to(tl.int64)
    o_d64 = o_d.to(tl.int64)

    A = tl.load(At_ptr + o_n * dim + o_d, mask=m_nd, other=0.0).to(tl.float32)  # [1, S, J, BD]
    A2 = A * 1.4426950408889634
    if HAS_D:
        Dskip = tl.load(D_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)
    p_u = u_ptr + i_b64 * su_b + o_d64 * su_d
    p_delta = delta_ptr + i_b64 * sdl_b + o_d64 * sdl_d
    p_gy = gy_ptr + i_b64 * sgy_b + o_d64 * sgy_d
    p_gu = gu_ptr + i_b64 * sgu_b + o_d64 * sgu_d
    p_gdelta = gdelta_ptr + i_b64 * sgdl_b + o_d64 * sgdl_d
    if HAS_Z:
        p_z = z_ptr + i_b64 * sz_b + o_d64 * sz_d
        p_gz = gz_ptr + i_b64 * sgz_b + o_d64 * sgz_d
    p_nd = i_b64 * n_state * dim + o_n * dim + o_d
    # r = a[t+1] * g[t+1], the adjoint carried into step t; at the last step, d loss / d final state
    if HAS_GHT:
        r = tl.load(ghT_ptr + p_nd, mask=m_nd, other=0.0)
    else:
        r = tl.zeros(m_nd.shape, dtype=tl.float32)
    i_gB = (i_d * BD) // dpg_B
    i_gC = (i_d * BD) // dpg_C
    p_B = B_ptr + i_b64 * sB_b + i_gB * sB_g + o_n
    p_C = C_ptr + i_b64 * sC_b + i_gC * sC_g + o_n
    # dB, dC: fp32 (batch, groups, L, N) contiguous, summed over channels with relaxed atomics
    p_gB = gB_ptr + (i_b64 * n_groups_B + i_gB) * length * n_state + o_n  # [1, S, J, 1]
    p_gC = gC_ptr + (i_b64 * n_groups_C + i_gC) * length * n_state + o_n
    gA = tl.zeros(m_nd.shape, dtype=tl.float32)
    o_dj = o_d + o_j * 0  # [1, 1, J, BD]: per-channel sums, the same in each state lane
    gD = tl.zeros(o_dj.shape, dtype=tl.float32)
    gbias = tl.zeros(o_dj.shape, dtype=tl.float32)

    # the next (earlier) chunk's delta, u and gy tiles are loaded one chunk ahead
    tt = (n_chunks - 1) * BT + o_t + o_j * 0  # [BT, 1, J, 1]
    m_td = (tt < length) & m_d
    nx_pre = tl.load(p_delta + tt.to(tl.int64) * sdl_t, mask=m_td, other=0.0)
    nx_u = tl.load(p_u + tt.to(tl.int64) * su_t, mask=m_td, other=0.0)
    nx_go = tl.load(p_gy + tt.to(tl.int64) * sgy_t, mask=m_td, other=0.0)
    for i_r in range(0, n_chunks):
        i_c = n_chunks - 1 - i_r
        tt = i_c * BT + o_t + o_j * 0  # [BT, 1, J, 1]
        m_t = tt < length
        m_td = m_t & m_d
        tt64 = tt.to(tl.int64)
        pre = nx_pre.to(tl.float32)
        uu = nx_u.to(tl.float32)
        go = nx_go.to(tl.float32)
        tp64 = tt64 - BT
        m_p_td = (tt >= BT) & m_d
        nx_pre = tl.load(p_delta + tp64 * sdl_t, mask=m_p_td, other=0.0)
        nx_u = tl.load(p_u + tp64 * su_t, mask=m_p_td, other=0.0)
        nx_go = tl.load(p_gy + tp64 * sgy_t, mask=m_p_td, other=0.0)
        dt, pre = _activate(pre, bias_ptr, o_d, m_d, m_td, HAS_BIAS, SOFTPLUS)
        if HAS_MASK:
            mk = tl.load(mask_ptr + i_b * length + tt, mask=m_t, other=0.0)
            dt *= mk
        dtu = dt * uu
        if HAS_SEQ:
            keep = _keep_tile(seq_ptr, i_b, tt, m_t, length)
        if HAS_MASK:
            go *= mk

        # recompute the chunk's states h[t] (after step t) from its checkpoint
        h = tl.load(ckpt_ptr + (i_b64 * n_chunks + i_c) * n_state * dim + o_n * dim + o_d, mask=m_nd, other=0.0)
        hs = tl.zeros([BT, h.shape[1], h.shape[2], BD], dtype=tl.float32)
        if HAS_Z:
            ypre = tl.zeros(uu.shape, dtype=tl.float32)
        for t in tl.static_range(BT):
            sel = o_t == t
            t_abs = i_c * BT + t
            B_t = _bc_step(p_B, t_abs, length, sB_t, m_n, EVEN_N)
            a = tl.exp2(_pick(dt, sel) * A2)
            if HAS_SEQ:
                a *= _pick(keep, sel)
            h = a * h + _pick(dtu, sel) * B_t
            hs = tl.where(sel, h, hs)
            if HAS_Z:
                C_t = _bc_step(p_C, t_abs, length, sC_t, m_n, EVEN_N)
                ypre = tl.where(sel, _sum_state(h * C_t), ypre)
        if HAS_Z:
            if HAS_D:
                ypre += Dskip * uu
            zz = tl.load(p_z + tt64 * sz_t, mask=m_td, other=0.0).to(tl.float32)
            sig = tl.sigmoid(zz)
            gz = go * ypre * sig * (1.0 + zz * (1.0 - sig))
            tl.store(p_gz + tt64 * sgz_t, gz.to(gz_ptr.dtype.element_ty), mask=m_td)
            gy = go * zz * sig
        else:
            gy = go
        if HAS_D:
            gD += tl.sum(gy * uu, axis=0, keep_dims=True)

        # adjoint, backwards through the chunk: g[t] = gy[t] C[t] + a[t+1] g[t+1]
        gdt = tl.zeros(uu.shape, dtype=tl.float32)
        gsB_dt = tl.zeros(uu.shape, dtype=tl.float32)
        for k in tl.static_range(BT):
            t = BT - 1 - k
            sel = o_t == t
            t_abs = i_c * BT + t
            m_s = m_n & ((o_n * 0 + t_abs) < length)
            B_t = _bc_step(p_B, t_abs, length, sB_t, m_n, EVEN_N)
            C_t = _bc_step(p_C, t_abs, length, sC_t, m_n, EVEN_N)
            dt_t = _pick(dt, sel)
            dtu_t = _pick(dtu, sel)
            g = r + _pick(gy, sel) * C_t
            gda = g * (_pick(hs, sel) - dtu_t * B_t)  # g[t] a[t] h[t-1] = d loss / d (dt A)
            gA += gda * dt_t
            gsB = _sum_state(g * B_t)  # [1, 1, 1, BD]
            gdt = tl.where(sel, _sum_state(gda * A) + gsB * _pick(uu, sel), gdt)
            gsB_dt = tl.where(sel, gsB * dt_t, gsB_dt)
            # dB[t] summed over the block's channels: one [N] row per step
            tl.atomic_add(p_gB + t_abs * n_state, tl.sum(g * dtu_t, axis=3, keep_dims=True), mask=m_s, sem="relaxed")
            a = tl.exp2(dt_t * A2)
            if HAS_SEQ:
                a *= _pick(keep, sel)
            r = a * g
        gu = gsB_dt
        if HAS_D:
            gu += gy * Dskip
        tl.store(p_gu + tt64 * sgu_t, gu.to(gu_ptr.dtype.element_ty), mask=m_td)
        if HAS_MASK:
            gdt *= mk
        if SOFTPLUS:
            gdt *= tl.sigmoid(pre)
        gdt = tl.where(m_td, gdt, 0.0)
        if HAS_BIAS:
            gbias += tl.sum(gdt, axis=0, keep_dims=True)
        tl.store(p_gdelta + tt64 * sgdl_t, gdt.to(gdelta_ptr.dtype.element_ty), mask=m_td)
        # dC[t] = sum over the block's channels of gy[t] h[t], for the whole chunk: [BT, S, J, 1]
        t4 = i_c * BT + o_t
        tl.atomic_add(p_gC + t4 * n_state, tl.sum(gy * hs, axis=3, keep_dims=True), mask=m_n & (t4 < length), sem="relaxed")

    tl.store(gh0_ptr + p_nd, r, mask=m_nd)  # d loss / d h[-1] = a[0] g[0]
    tl.store(gA_ptr + p_nd, gA, mask=m_nd)
    p_bd = i_b * dim + o_dj
    if HAS_D:
        tl.store(gD_ptr + p_bd, gD, mask=o_dj < dim)
    if HAS_BIAS:
        tl.store(gbias_ptr + p_bd, gbias, mask=o_dj < dim)


def eligible(p: ScanInputs) -> bool:
    """Inputs this path handles: time-varying B and C with whole channel blocks per group, d_state <= 16."""
    if p.B.dim() != 4 or p.C.dim() != 4 or p.A.shape[1] > 16:
        return False
    dim = p.u.shape[1]
    bd = _config(p.u.shape[0], dim, p.A.shape[1])["BD"]
    return all(g == 1 or (dim // g) % bd == 0 for g in (p.B.shape[1], p.C.shape[1]))


def _config(batch: int, dim: int, n_state: int) -> dict:
    """[BD channels, BN states, BT steps] and one warp: BD channels x (32 / BD) state lanes; BD <= 32 / 2 so
    that a lane holds at most BN / 2 states (the backward keeps BT x that many states in registers)."""
    BN = max(2, triton.next_power_of_2(n_state))
    BD = int(os.environ.get("MAMBATUNE_SEQ_BD", 16))
    BD = max(32 // BN, BD)
    return dict(BD=BD, BN=BN, BT=int(os.environ.get("MAMBATUNE_SEQ_BT", 8)), num_warps=1)


def _flags(p: ScanInputs, cfg: dict) -> dict:
    return dict(HAS_D=p.D is not None, HAS_Z=p.z is not None, HAS_BIAS=p.delta_bias is not None,
                SOFTPLUS=p.delta_softplus, HAS_SEQ=p.seq_idx is not None, HAS_MASK=p.mask is not None,
                EVEN_N=p.A.shape[1] == cfg["BN"], BD=cfg["BD"], BN=cfg["BN"], BT=cfg["BT"], num_warps=cfg["num_warps"])


def _unit_state_stride(x: torch.Tensor) -> torch.Tensor:
    """A (batch, G, N, L) B or C with state stride 1: as given (the mixer's x_proj views already are),
    else a (batch, G, L, N) copy seen as (batch, G, N, L)."""
    return x if x.stride(2) == 1 else x.transpose(2, 3).contiguous().transpose(2, 3)


def _bc_strides4(x: torch.Tensor) -> tuple[int, int, int]:
    return x.stride(0), x.stride(1), x.stride(3)


def _small(p: ScanInputs) -> dict:
    """The small inputs, contiguous, in the layouts the kernels read (A and states as (N, dim))."""
    return dict(
        At=p.A.t().contiguous(), D=None if p.D is None else p.D.contiguous(),
        bias=None if p.delta_bias is None else p.delta_bias.contiguous(),
        seq=None if p.seq_idx is None else p.seq_idx.to(torch.int32).contiguous(),
        mask=None if p.mask is None else p.mask.to(torch.float32).contiguous(),
    )


def scan_fwd(p: ScanInputs, save_ckpt: bool):
    """Forward: ``(y, final state (batch, dim, N) fp32, checkpoints or None)``."""
    from .triton import _big_strides, empty_in_layout_of

    batch, dim, length = p.u.shape
    n_state = p.A.shape[1]
    cfg = _config(batch, dim, n_state)
    s = _small(p)
    Bm, Cm = _unit_state_stride(p.B), _unit_state_stride(p.C)
    u = p.u
    y = empty_in_layout_of(u)
    dev = u.device
    hT = torch.empty(batch, n_state, dim, device=dev, dtype=torch.float32)
    h0 = None if p.initial_state is None else p.initial_state.float().transpose(1, 2).contiguous()
    n_chunks = triton.cdiv(length, cfg["BT"])
    ckpt = torch.empty(batch, n_chunks, n_state, dim, device=dev, dtype=torch.float32) if save_ckpt else hT
    grid = (triton.cdiv(dim, cfg["BD"]), batch)
    _seq_fwd_kernel[grid](
        u, p.delta, s["At"], Bm, Cm, s["D"], p.z, s["bias"], h0, s["seq"], s["mask"], y, hT, ckpt,
        dim, length, n_state, dim // p.B.shape[1], dim // p.C.shape[1],
        *_big_strides(u), *_big_strides(p.delta), *_big_strides(p.z), *_big_strides(y),
        *_bc_strides4(Bm), *_bc_strides4(Cm),
        HAS_H0=h0 is not None, SAVE_CKPT=save_ckpt, **_flags(p, cfg),
    )
    return y, hT.transpose(1, 2).contiguous(), (ckpt if save_ckpt else None)


def scan_bwd(p: ScanInputs, ckpt: torch.Tensor, g_y: torch.Tensor | None, g_hT: torch.Tensor | None) -> dict:
    """Backward from the forward's checkpoints: every input gradient (shared ones summed over the batch)."""
    from .triton import _big_strides, empty_in_layout_of

    batch, dim, length = p.u.shape
    n_state = p.A.shape[1]
    cfg = _config(batch, dim, n_state)
    assert ckpt.shape[1] == triton.cdiv(length, cfg["BT"]), "forward and backward must share the chunk length BT"
    s = _small(p)
    Bm, Cm = _unit_state_stride(p.B), _unit_state_stride(p.C)
    u = p.u
    dev, f32 = u.device, torch.float32
    g_y = torch.zeros_like(u) if g_y is None else g_y
    g_u = empty_in_layout_of(u)
    g_delta = empty_in_layout_of(p.delta)
    g_z = empty_in_layout_of(p.z) if p.z is not None else None
    g_B = torch.zeros(batch, p.B.shape[1], length, n_state, device=dev, dtype=f32)  # (batch, G, L, N)
    g_C = torch.zeros(batch, p.C.shape[1], length, n_state, device=dev, dtype=f32)
    g_h0 = torch.empty(batch, n_state, dim, device=dev, dtype=f32)
    g_A = torch.empty(batch, n_state, dim, device=dev, dtype=f32)
    g_D = torch.empty(batch, dim, device=dev, dtype=f32) if p.D is not None else None
    g_bias = torch.empty(batch, dim, device=dev, dtype=f32) if p.delta_bias is not None else None
    ghT = None if g_hT is None else g_hT.float().transpose(1, 2).contiguous()
    grid = (triton.cdiv(dim, cfg["BD"]), batch)
    _seq_bwd_kernel[grid](
        u, p.delta, s["At"], Bm, Cm, s["D"], p.z, s["bias"], s["seq"], s["mask"], ckpt,
        g_y, ghT, g_u, g_delta, g_z, g_B, g_C, g_h0, g_A, g_D, g_bias,
        dim, length, n_state, dim // p.B.shape[1], dim // p.C.shape[1], p.B.shape[1], p.C.shape[1],
        *_big_strides(u), *_big_strides(p.delta), *_big_strides(p.z), *_big_strides(g_y),
        *_big_strides(g_u), *_big_strides(g_delta), *_big_strides(g_z),
        *_bc_strides4(Bm), *_bc_strides4(Cm),
        HAS_GHT=ghT is not None, **_flags(p, cfg),
    )
    return dict(u=g_u, delta=g_delta, z=g_z, B=g_B.transpose(2, 3), C=g_C.transpose(2, 3), h0=g_h0.transpose(1, 2), A=g_A.sum(0).t(),
                D=None if g_D is None else g_D.sum(0), bias=None if g_bias is None else g_bias.sum(0))
