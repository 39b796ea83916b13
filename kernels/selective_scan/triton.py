"""Selective scan in Triton: fused forward and backward kernels.

One program owns one batch row and a block of BD channels, with the state of
those channels as a [BD, BN] fp32 tile in registers (BN: d_state padded to a
power of two; padded states have A = B = C = 0 and stay zero). It walks the
sequence in chunks of BT steps. Inside a chunk the recurrence
``h[t] = a[t] * h[t-1] + b[t]`` is a parallel associative scan over the time
axis of a [BD, BN, BT] tile, so every load and store is a contiguous run of BT
steps; the chunk's last state carries into the next chunk.

The forward saves only the state at each chunk start (fp32, (batch, chunks,
dim, N); with BT >= N/2 at most twice the bytes of u in bf16 for N > 32, four
times for N <= 32, where short chunks run faster). The
backward walks the chunks in reverse: it recomputes the chunk's states from
its checkpoint, runs the adjoint recurrence
``g[t] = gy[t] * C[t] + a[t+1] * g[t+1]`` as a reverse associative scan, and
forms every gradient from the two. Gradients of B and C summed over the
channels of a group are accumulated with fp32 atomics; those of parameters
shared across the batch (A, D, delta_bias, time-invariant B/C) go to small
per-batch buffers that the host sums.

Every (batch, dim, L) tensor and time-varying B/C is indexed through its own
strides, so the transposed (batch, L, channels) views the mixer passes are read
in place; y and the input gradients are allocated in their input's layout
(channels-last for such a view), so the mixer's transposes back are free.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .spec import ScanInputs


@triton.jit
def _affine_combine(a1, b1, a2, b2):
    # compose x -> a1 * x + b1, then x -> a2 * x + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _load_dt(p_delta, bias_ptr, mask_ptr, i_b, o_d, m_d, o_t, m_t, st_delta, length,
             HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_MASK: tl.constexpr):
    """dt and the pre-activation (delta + bias) for steps o_t, both [BD, BT] fp32; dt = 0 outside.

    p_delta: [BD, 1] pointers to step 0 of this row's channels; st_delta: delta's time stride."""
    m = m_d[:, None] & m_t[None, :]
    p = p_delta + o_t.to(tl.int64)[None, :] * st_delta
    b_pre = tl.load(p, mask=m, other=0.0).to(tl.float32)
    if HAS_BIAS:
        b_pre += tl.load(bias_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)[:, None]
    if SOFTPLUS:
        b_dt = tl.where(b_pre > 20.0, b_pre, tl.log(1.0 + tl.exp(b_pre)))
    else:
        b_dt = b_pre
    if HAS_MASK:
        b_dt *= tl.load(mask_ptr + i_b * length + o_t, mask=m_t, other=0.0)[None, :]
    b_dt = tl.where(m, b_dt, 0.0)
    return b_dt, b_pre


@triton.jit
def _load_keep(seq_ptr, i_b, o_t, length, HAS_SEQ: tl.constexpr):
    """[BT] fp32: 0 where seq_idx changes at step t (state reset), else 1; 1 outside [1, length)."""
    if HAS_SEQ:
        m = (o_t > 0) & (o_t < length)
        s_cur = tl.load(seq_ptr + i_b * length + o_t, mask=m, other=0)
        s_prev = tl.load(seq_ptr + i_b * length + o_t - 1, mask=m, other=0)
        b_keep = tl.where(s_cur == s_prev, 1.0, 0.0)
    else:
        b_keep = tl.full(o_t.shape, 1.0, tl.float32)
    return b_keep


@triton.jit
def _load_bc(p_base, i_d, o_d, m_d, o_n, m_n, o_t, m_t, s_g, s_n, s_t, dim_per_group,
             TIME_VARYING: tl.constexpr, ONE_GROUP: tl.constexpr, BD: tl.constexpr):
    """B or C for the tile, fp32, broadcastable to [BD, BN, BT].

    Time-varying: p_base points at this batch row of a (batch, groups, N, L) tensor with strides
    s_g, s_n, s_t; time-invariant: at a contiguous (dim, N) tensor."""
    if TIME_VARYING:
        o_tl = o_t.to(tl.int64)
        if ONE_GROUP:
            # all BD channels of the block share one group: one [BN, BT] load
            i_g = (i_d * BD) // dim_per_group
            p = p_base + i_g * s_g + o_n[:, None] * s_n + o_tl[None, :] * s_t
            b = tl.load(p, mask=m_n[:, None] & m_t[None, :], other=0.0).to(tl.float32)
            b = b[None, :, :]
        else:
            o_g = o_d // dim_per_group
            p = p_base + o_g[:, None, None] * s_g + o_n[None, :, None] * s_n + o_tl[None, None, :] * s_t
            m = m_d[:, None, None] & m_n[None, :, None] & m_t[None, None, :]
            b = tl.load(p, mask=m, other=0.0).to(tl.float32)
    else:
        p = p_base + o_d[:, None] * s_n + o_n[None, :]
        b = tl.load(p, mask=m_d[:, None] & m_n[None, :], other=0.0).to(tl.float32)
        b = b[:, :, None]
    return b


@triton.jit
def _accumulate_bc(p_base, b_g, i_d, o_d, o_n, m_dn, o_t, m_t, n_state, length, dim_per_group,
                   ONE_GROUP: tl.constexpr, BD: tl.constexpr):
    """Adds the [BD, BN, BT] gradient of a time-varying B or C into its contiguous (groups, N, L) fp32 row,
    summing channels."""
    o_tl = o_t.to(tl.int64)
    if ONE_GROUP:
        i_g = (i_d * BD) // dim_per_group
        p = p_base + i_g * n_state * length + o_n[:, None] * length + o_tl[None, :]
        tl.atomic_add(p, tl.sum(b_g, axis=0), mask=(o_n < n_state)[:, None] & m_t[None, :], sem="relaxed")
    else:
        o_g = o_d // dim_per_group
        p = p_base + o_g[:, None, None] * n_state * length + o_n[None, :, None] * length + o_tl[None, None, :]
        tl.atomic_add(p, b_g, mask=m_dn[:, :, None] & m_t[None, None, :], sem="relaxed")


@triton.jit
def _scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr, seq_ptr, mask_ptr,
    y_ptr, hT_ptr, ckpt_ptr,
    dim, length, n_state, dpg_B, dpg_C,
    su_b, su_d, su_t, sdl_b, sdl_d, sdl_t, sz_b, sz_d, sz_t, sy_b, sy_d, sy_t,
    sB_b, sB_g, sB_n, sB_t, sC_b, sC_g, sC_n, sC_t,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr, HAS_SEQ: tl.constexpr, HAS_MASK: tl.constexpr, SAVE_CKPT: tl.constexpr,
    B_TV: tl.constexpr, C_TV: tl.constexpr, ONE_GROUP_B: tl.constexpr, ONE_GROUP_C: tl.constexpr,
    BD: tl.constexpr, BN: tl.constexpr, BT: tl.constexpr,
):
    i_d, i_b = tl.program_id(0), tl.program_id(1)
    o_d = i_d * BD + tl.arange(0, BD)
    o_n = tl.arange(0, BN)
    o_t = tl.arange(0, BT)
    m_d = o_d < dim
    m_n = o_n < n_state
    m_dn = m_d[:, None] & m_n[None, :]
    n_chunks = tl.cdiv(length, BT)

    b_A = tl.load(A_ptr + o_d[:, None] * n_state + o_n[None, :], mask=m_dn, other=0.0).to(tl.float32)  # [BD, BN]
    b_A2 = b_A * 1.4426950408889634
    if HAS_D:
        b_Dskip = tl.load(D_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)
    # [BD, 1] pointers to step 0 of this row's channels; any strides (channels-last views included)
    i_b64, o_d64 = i_b.to(tl.int64), o_d.to(tl.int64)[:, None]
    p_u = u_ptr + i_b64 * su_b + o_d64 * su_d
    p_delta = delta_ptr + i_b64 * sdl_b + o_d64 * sdl_d
    if HAS_Z:
        p_z = z_ptr + i_b64 * sz_b + o_d64 * sz_d
    p_y = y_ptr + i_b64 * sy_b + o_d64 * sy_d
    p_dn = i_b64 * dim * n_state + o_d[:, None] * n_state + o_n[None, :]
    if HAS_H0:
        b_h = tl.load(h0_ptr + p_dn, mask=m_dn, other=0.0).to(tl.float32)
    else:
        b_h = tl.zeros([BD, BN], dtype=tl.float32)
    p_B = B_ptr + i_b64 * sB_b
    p_C = C_ptr + i_b64 * sC_b

    for i_c in range(0, n_chunks):
        if SAVE_CKPT:
            p_ck = ckpt_ptr + (i_b64 * n_chunks + i_c) * dim * n_state + o_d[:, None] * n_state + o_n[None, :]
            tl.store(p_ck, b_h, mask=m_dn)
        o_tt = i_c * BT + o_t
        o_tl = o_tt.to(tl.int64)[None, :]
        m_t = o_tt < length
        m_dt = m_d[:, None] & m_t[None, :]
        b_dt, b_pre = _load_dt(p_delta, bias_ptr, mask_ptr, i_b, o_d, m_d, o_tt, m_t, sdl_t, length,
                               HAS_BIAS, SOFTPLUS, HAS_MASK)
        b_u = tl.load(p_u + o_tl * su_t, mask=m_dt, other=0.0).to(tl.float32)
        b_keep = _load_keep(seq_ptr, i_b, o_tt, length, HAS_SEQ)
        b_Bm = _load_bc(p_B, i_d, o_d, m_d, o_n, m_n, o_tt, m_t, sB_g, sB_n, sB_t, dpg_B, B_TV, ONE_GROUP_B, BD)
        b_Cm = _load_bc(p_C, i_d, o_d, m_d, o_n, m_n, o_tt, m_t, sC_g, sC_n, sC_t, dpg_C, C_TV, ONE_GROUP_C, BD)
        b_a = tl.exp2(b_dt[:, None, :] * b_A2[:, :, None]) * b_keep[None, None, :]  # [BD, BN, BT]
        b_x = (b_dt * b_u)[:, None, :] * b_Bm  # [BD, BN, BT]
        b_ac, b_xc = tl.associative_scan((b_a, b_x), axis=2, combine_fn=_affine_combine)
        b_hs = b_ac * b_h[:, :, None] + b_xc  # [BD, BN, BT]: state after each step
        b_y = tl.sum(b_hs * b_Cm, axis=1)  # [BD, BT]
        # padded steps (t >= length) are identity steps, so the last column is the state at the last real step
        b_h = tl.sum(tl.where((o_t == BT - 1)[None, None, :], b_hs, 0.0), axis=2)
        if HAS_D:
            b_y += b_Dskip[:, None] * b_u
        if HAS_Z:
            b_z = tl.load(p_z + o_tl * sz_t, mask=m_dt, other=0.0).to(tl.float32)
            b_y *= b_z * tl.sigmoid(b_z)
        if HAS_MASK:
            b_y *= tl.load(mask_ptr + i_b * length + o_tt, mask=m_t, other=0.0)[None, :]
        tl.store(p_y + o_tl * sy_t, b_y.to(y_ptr.dtype.element_ty), mask=m_dt)
    tl.store(hT_ptr + p_dn, b_h, mask=m_dn)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, seq_ptr, mask_ptr, ckpt_ptr,
    gy_ptr, ghT_ptr,
    gu_ptr, gdelta_ptr, gz_ptr, gB_ptr, gC_ptr, gh0_ptr, gA_ptr, gD_ptr, gbias_ptr,
    dim, length, n_state, dpg_B, dpg_C, n_groups_B, n_groups_C,
    su_b, su_d, su_t, sdl_b, sdl_d, sdl_t, sz_b, sz_d, sz_t, sgy_b, sgy_d, sgy_t,
    sgu_b, sgu_d, sgu_t, sgdl_b, sgdl_d, sgdl_t, sgz_b, sgz_d, sgz_t,
    sB_b, sB_g, sB_n, sB_t, sC_b, sC_g, sC_n, sC_t,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_GHT: tl.constexpr, HAS_SEQ: tl.constexpr, HAS_MASK: tl.constexpr,
    B_TV: tl.constexpr, C_TV: tl.constexpr, ONE_GROUP_B: tl.constexpr, ONE_GROUP_C: tl.constexpr,
    BD: tl.constexpr, BN: tl.constexpr, BT: tl.constexpr,
):
    i_d, i_b = tl.program_id(0), tl.program_id(1)
    o_d = i_d * BD + tl.arange(0, BD)
    o_n = tl.arange(0, BN)
    o_t = tl.arange(0, BT)
    m_d = o_d < dim
    m_n = o_n < n_state
    m_dn = m_d[:, None] & m_n[None, :]
    n_chunks = tl.cdiv(length, BT)

    b_A = tl.load(A_ptr + o_d[:, None] * n_state + o_n[None, :], mask=m_dn, other=0.0).to(tl.float32)
    b_A2 = b_A * 1.4426950408889634
    if HAS_D:
        b_Dskip = tl.load(D_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)
    i_b64, o_d64 = i_b.to(tl.int64), o_d.to(tl.int64)[:, None]
    p_u = u_ptr + i_b64 * su_b + o_d64 * su_d  # [BD, 1]: step 0 of this row's channels
    p_delta = delta_ptr + i_b64 * sdl_b + o_d64 * sdl_d
    p_gy = gy_ptr + i_b64 * sgy_b + o_d64 * sgy_d
    p_gu = gu_ptr + i_b64 * sgu_b + o_d64 * sgu_d
    p_gdelta = gdelta_ptr + i_b64 * sgdl_b + o_d64 * sgdl_d
    if HAS_Z:
        p_z = z_ptr + i_b64 * sz_b + o_d64 * sz_d
        p_gz = gz_ptr + i_b64 * sgz_b + o_d64 * sgz_d
    p_dn = i_b64 * dim * n_state + o_d[:, None] * n_state + o_n[None, :]
    if HAS_GHT:
        b_g = tl.load(ghT_ptr + p_dn, mask=m_dn, other=0.0).to(tl.float32)  # d loss / d state after the chunk
    else:
        b_g = tl.zeros([BD, BN], dtype=tl.float32)
    p_B = B_ptr + i_b64 * sB_b
    p_C = C_ptr + i_b64 * sC_b
    # time-varying B/C gradients: contiguous fp32 (batch, groups, N, L), added into with relaxed atomics
    # (spreading them over several copies to cut contention measured slower: RESULTS.md)
    if B_TV:
        p_gB = gB_ptr + i_b64 * n_groups_B * n_state * length
    else:
        b_gB = tl.zeros([BD, BN], dtype=tl.float32)
    if C_TV:
        p_gC = gC_ptr + i_b64 * n_groups_C * n_state * length
    else:
        b_gC = tl.zeros([BD, BN], dtype=tl.float32)
    b_gA = tl.zeros([BD, BN], dtype=tl.float32)
    b_gD = tl.zeros([BD], dtype=tl.float32)
    b_gbias = tl.zeros([BD], dtype=tl.float32)

    for i_r in range(0, n_chunks):
        i_c = n_chunks - 1 - i_r
        o_tt = i_c * BT + o_t
        o_tl = o_tt.to(tl.int64)[None, :]
        m_t = o_tt < length
        m_dt = m_d[:, None] & m_t[None, :]
        # recompute the chunk's forward from its checkpoint
        p_ck = ckpt_ptr + (i_b64 * n_chunks + i_c) * dim * n_state + o_d[:, None] * n_state + o_n[None, :]
        b_h0 = tl.load(p_ck, mask=m_dn, other=0.0)
        b_dt, b_pre = _load_dt(p_delta, bias_ptr, mask_ptr, i_b, o_d, m_d, o_tt, m_t, sdl_t, length,
                               HAS_BIAS, SOFTPLUS, HAS_MASK)
        b_u = tl.load(p_u + o_tl * su_t, mask=m_dt, other=0.0).to(tl.float32)
        b_keep = _load_keep(seq_ptr, i_b, o_tt, length, HAS_SEQ)
        b_Bm = _load_bc(p_B, i_d, o_d, m_d, o_n, m_n, o_tt, m_t, sB_g, sB_n, sB_t, dpg_B, B_TV, ONE_GROUP_B, BD)
        b_Cm = _load_bc(p_C, i_d, o_d, m_d, o_n, m_n, o_tt, m_t, sC_g, sC_n, sC_t, dpg_C, C_TV, ONE_GROUP_C, BD)
        b_a = tl.exp2(b_dt[:, None, :] * b_A2[:, :, None]) * b_keep[None, None, :]  # [BD, BN, BT]
        b_dtu = b_dt * b_u  # [BD, BT]
        b_x = b_dtu[:, None, :] * b_Bm
        b_ac, b_xc = tl.associative_scan((b_a, b_x), axis=2, combine_fn=_affine_combine)
        b_hs = b_ac * b_h0[:, :, None] + b_xc  # [BD, BN, BT]

        # output gradient through mask and gate
        b_go = tl.load(p_gy + o_tl * sgy_t, mask=m_dt, other=0.0).to(tl.float32)
        if HAS_MASK:
            b_go *= tl.load(mask_ptr + i_b * length + o_tt, mask=m_t, other=0.0)[None, :]
        if HAS_Z:
            b_ypre = tl.sum(b_hs * b_Cm, axis=1)
            if HAS_D:
                b_ypre += b_Dskip[:, None] * b_u
            b_z = tl.load(p_z + o_tl * sz_t, mask=m_dt, other=0.0).to(tl.float32)
            b_sig = tl.sigmoid(b_z)
            b_gz = b_go * b_ypre * b_sig * (1.0 + b_z * (1.0 - b_sig))
            tl.store(p_gz + o_tl * sgz_t, b_gz.to(gz_ptr.dtype.element_ty), mask=m_dt)
            b_gy = b_go * b_z * b_sig
        else:
            b_gy = b_go
        if HAS_D:
            b_gD += tl.sum(b_gy * b_u, axis=1)

        # adjoint recurrence g[t] = gy[t] C[t] + a[t+1] g[t+1], g[last] gets the carry b_g
        o_tn = o_tt + 1
        m_tn = (o_tn < length) & (o_t < BT - 1)
        b_dtn, _ = _load_dt(p_delta, bias_ptr, mask_ptr, i_b, o_d, m_d, o_tn, m_tn, sdl_t, length,
                            HAS_BIAS, SOFTPLUS, HAS_MASK)
        b_keepn = _load_keep(seq_ptr, i_b, tl.where(m_tn, o_tn, 0), length, HAS_SEQ)
        b_an = tl.exp2(b_dtn[:, None, :] * b_A2[:, :, None]) * b_keepn[None, None, :]
        b_gyC = b_gy[:, None, :] * b_Cm
        b_gc, b_sc = tl.associative_scan((b_an, b_gyC), axis=2, combine_fn=_affine_combine, reverse=True)
        b_gs = b_gc * b_g[:, :, None] + b_sc  # [BD, BN, BT]: d loss / d h[t]
        b_g = tl.sum(tl.where((o_t == 0)[None, None, :], b_gs * b_a, 0.0), axis=2)

        b_gda = b_gs * (b_hs - b_x)  # d loss / d (dt * A): g[t] * a[t] * h[t-1]
        b_gsB = tl.sum(b_gs * b_Bm, axis=1)  # [BD, BT]
        b_gdt = tl.sum(b_gda * b_A[:, :, None], axis=1) + b_gsB * b_u
        b_gA += tl.sum(b_gda * b_dt[:, None, :], axis=2)
        b_gu = b_gsB * b_dt
        if HAS_D:
            b_gu += b_gy * b_Dskip[:, None]
        tl.store(p_gu + o_tl * sgu_t, b_gu.to(gu_ptr.dtype.element_ty), mask=m_dt)
        if HAS_MASK:
            b_gdt *= tl.load(mask_ptr + i_b * length + o_tt, mask=m_t, other=0.0)[None, :]
        if SOFTPLUS:
            b_gdt *= tl.sigmoid(b_pre)
        b_gdt = tl.where(m_dt, b_gdt, 0.0)
        if HAS_BIAS:
            b_gbias += tl.sum(b_gdt, axis=1)
        tl.store(p_gdelta + o_tl * sgdl_t, b_gdt.to(gdelta_ptr.dtype.element_ty), mask=m_dt)

        b_gBm = b_gs * b_dtu[:, None, :]  # [BD, BN, BT]
        b_gCm = b_gy[:, None, :] * b_hs
        if B_TV:
            _accumulate_bc(p_gB, b_gBm, i_d, o_d, o_n, m_dn, o_tt, m_t, n_state, length, dpg_B, ONE_GROUP_B, BD)
        else:
            b_gB += tl.sum(b_gBm, axis=2)
        if C_TV:
            _accumulate_bc(p_gC, b_gCm, i_d, o_d, o_n, m_dn, o_tt, m_t, n_state, length, dpg_C, ONE_GROUP_C, BD)
        else:
            b_gC += tl.sum(b_gCm, axis=2)

    # per-batch partial sums of the shared parameters; the host adds them up
    tl.store(gh0_ptr + p_dn, b_g, mask=m_dn)
    tl.store(gA_ptr + p_dn, b_gA, mask=m_dn)
    if not B_TV:
        tl.store(gB_ptr + p_dn, b_gB, mask=m_dn)
    if not C_TV:
        tl.store(gC_ptr + p_dn, b_gC, mask=m_dn)
    p_bd = i_b * dim + o_d
    if HAS_D:
        tl.store(gD_ptr + p_bd, b_gD, mask=m_d)
    if HAS_BIAS:
        tl.store(gbias_ptr + p_bd, b_gbias, mask=m_d)


def _config(batch: int, dim: int, n_state: int, backward: bool) -> dict:
    """Tile sizes [BD, BN, BT] and warps, from sweeps on an H100 (benchmarks/scan.py --sweep).

    Small tiles with one warp win: the time goes into the in-register scans and
    reductions and into the latency of the chunk loop, not into memory traffic,
    so many small programs beat a few wide ones. Forward and backward share BT
    (the checkpoint spacing); BD and warps may differ. BT * 2 >= BN keeps the
    checkpoints (batch * dim * N * L / BT fp32 values) small.
    """
    BN = max(2, triton.next_power_of_2(n_state))
    if BN <= 32:
        BT, num_warps = 16, 1
        BD = 2 if backward or batch * dim < 4096 else 4
    elif BN <= 64:
        BD, BT, num_warps = 2, 32, 4
    else:
        BD, BT, num_warps = 1, BN // 2, 4
    BD = max(1, min(BD, triton.next_power_of_2(dim)))
    return dict(BD=BD, BN=BN, BT=BT, num_warps=num_warps)


def _contig(t):
    return None if t is None else t.contiguous()


def _big_strides(t: torch.Tensor | None) -> tuple[int, int, int]:
    """(batch, dim, time) strides of a (batch, dim, L) tensor; zeros for an absent one."""
    return (0, 0, 0) if t is None else tuple(t.stride())


def _bc_strides(t: torch.Tensor) -> tuple[int, int, int, int]:
    """(batch, group, state, time) strides of a time-varying (batch, G, N, L) B or C; for a
    contiguous time-invariant (dim, N) one, the row stride N in the state slot."""
    return tuple(t.stride()) if t.dim() == 4 else (0, 0, t.stride(0), 0)


def empty_in_layout_of(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """An empty (batch, dim, L) tensor like t: channels-last ((batch, L, dim) memory, seen transposed)
    when t's channel stride is 1 and its time stride is not, else contiguous."""
    batch, dim, length = t.shape
    dtype = t.dtype if dtype is None else dtype
    if t.stride(1) == 1 and t.stride(2) != 1 and dim > 1:
        return torch.empty(batch, length, dim, device=t.device, dtype=dtype).transpose(1, 2)
    return torch.empty(batch, dim, length, device=t.device, dtype=dtype)


def _prepare(p: ScanInputs, backward: bool):
    """The tensors the kernels read (big ones and B/C with their own strides, small ones contiguous)
    and the launch arguments of one kernel."""
    batch, dim, length = p.u.shape
    n_state = p.A.shape[1]
    cfg = _config(batch, dim, n_state, backward)
    tv_B, tv_C = p.B.dim() == 4, p.C.dim() == 4
    groups_B = p.B.shape[1] if tv_B else 1
    groups_C = p.C.shape[1] if tv_C else 1
    dpg_B, dpg_C = dim // groups_B, dim // groups_C
    t = dict(u=p.u, delta=p.delta, A=p.A.contiguous(), B=p.B if tv_B else p.B.contiguous(),
             C=p.C if tv_C else p.C.contiguous(), D=_contig(p.D), z=p.z, bias=_contig(p.delta_bias),
             h0=_contig(p.initial_state),
             seq=p.seq_idx.to(torch.int32).contiguous() if p.seq_idx is not None else None,
             mask=p.mask.to(torch.float32).contiguous() if p.mask is not None else None)
    shape = dict(dim=dim, length=length, n_state=n_state, dpg_B=dpg_B, dpg_C=dpg_C)
    bc_strides = (*_bc_strides(t["B"]), *_bc_strides(t["C"]))
    flags = dict(HAS_D=t["D"] is not None, HAS_Z=t["z"] is not None, HAS_BIAS=t["bias"] is not None,
                 SOFTPLUS=p.delta_softplus, HAS_SEQ=t["seq"] is not None, HAS_MASK=t["mask"] is not None,
                 B_TV=tv_B, C_TV=tv_C, ONE_GROUP_B=dpg_B % cfg["BD"] == 0, ONE_GROUP_C=dpg_C % cfg["BD"] == 0,
                 BD=cfg["BD"], BN=cfg["BN"], BT=cfg["BT"], num_warps=cfg["num_warps"])
    return t, cfg, shape, bc_strides, flags


def _scan_fwd(p: ScanInputs, save_ckpt: bool):
    t, cfg, shape, bc_strides, flags = _prepare(p, backward=False)
    batch, dim, length, n_state = p.u.shape[0], shape["dim"], shape["length"], shape["n_state"]
    u = t["u"]
    y = empty_in_layout_of(u)
    hT = torch.empty(batch, dim, n_state, device=u.device, dtype=torch.float32)
    n_chunks = triton.cdiv(length, cfg["BT"])
    ckpt = torch.empty(batch, n_chunks, dim, n_state, device=u.device, dtype=torch.float32) if save_ckpt else hT
    grid = (triton.cdiv(dim, cfg["BD"]), batch)
    _scan_fwd_kernel[grid](
        u, t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["bias"], t["h0"], t["seq"], t["mask"],
        y, hT, ckpt, dim, length, n_state, shape["dpg_B"], shape["dpg_C"],
        *_big_strides(u), *_big_strides(t["delta"]), *_big_strides(t["z"]), *_big_strides(y), *bc_strides,
        HAS_H0=t["h0"] is not None, SAVE_CKPT=save_ckpt, **flags,
    )
    return y, hT, (ckpt if save_ckpt else None)


def _scan_bwd(p: ScanInputs, ckpt: torch.Tensor, g_y: torch.Tensor | None, g_hT: torch.Tensor | None):
    t, cfg, shape, bc_strides, flags = _prepare(p, backward=True)
    batch, dim, length, n_state = p.u.shape[0], shape["dim"], shape["length"], shape["n_state"]
    assert ckpt.shape[1] == triton.cdiv(length, cfg["BT"]), "forward and backward must share the chunk length BT"
    u = t["u"]
    dev, f32 = u.device, torch.float32
    g_y = torch.zeros_like(u) if g_y is None else g_y
    # input gradients in their input's layout, so a channels-last view gets a channels-last gradient
    g_u = empty_in_layout_of(u)
    g_delta = empty_in_layout_of(t["delta"])
    g_z = empty_in_layout_of(t["z"]) if t["z"] is not None else None
    tv_B, tv_C = flags["B_TV"], flags["C_TV"]
    # time-varying: contiguous fp32 accumulators for the atomics; time-invariant: per-batch partial sums
    g_B = torch.zeros(t["B"].shape, device=dev, dtype=f32) if tv_B else torch.empty(batch, dim, n_state, device=dev, dtype=f32)
    g_C = torch.zeros(t["C"].shape, device=dev, dtype=f32) if tv_C else torch.empty(batch, dim, n_state, device=dev, dtype=f32)
    g_h0 = torch.empty(batch, dim, n_state, device=dev, dtype=f32)
    g_A = torch.empty(batch, dim, n_state, device=dev, dtype=f32)
    g_D = torch.empty(batch, dim, device=dev, dtype=f32) if t["D"] is not None else None
    g_bias = torch.empty(batch, dim, device=dev, dtype=f32) if t["bias"] is not None else None
    grid = (triton.cdiv(dim, cfg["BD"]), batch)
    _scan_bwd_kernel[grid](
        u, t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["bias"], t["seq"], t["mask"], ckpt,
        g_y, None if g_hT is None else g_hT.float().contiguous(),
        g_u, g_delta, g_z, g_B, g_C, g_h0, g_A, g_D, g_bias,
        dim, length, n_state, shape["dpg_B"], shape["dpg_C"],
        t["B"].shape[1] if tv_B else 1, t["C"].shape[1] if tv_C else 1,
        *_big_strides(u), *_big_strides(t["delta"]), *_big_strides(t["z"]), *_big_strides(g_y),
        *_big_strides(g_u), *_big_strides(g_delta), *_big_strides(g_z), *bc_strides,
        HAS_GHT=g_hT is not None, **flags,
    )
    return dict(u=g_u, delta=g_delta, z=g_z, B=g_B if tv_B else g_B.sum(0), C=g_C if tv_C else g_C.sum(0),
                h0=g_h0, A=g_A.sum(0), D=None if g_D is None else g_D.sum(0),
                bias=None if g_bias is None else g_bias.sum(0))


class _TritonScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p: ScanInputs, u_, delta_, A_, B_, C_, D_, z_, bias_, h0_):
        y, hT, ckpt = _scan_fwd(p, save_ckpt=True)
        ctx.p = p
        ctx.save_for_backward(ckpt)
        return y, hT

    @staticmethod
    def backward(ctx, g_y, g_hT):
        p: ScanInputs = ctx.p
        (ckpt,) = ctx.saved_tensors
        g = _scan_bwd(p, ckpt, g_y, g_hT)

        def cast(grad, ref):
            return None if grad is None or ref is None or not ref.requires_grad else grad.to(ref.dtype)

        return (None, cast(g["u"], p.u), cast(g["delta"], p.delta), cast(g["A"], p.A), cast(g["B"], p.B),
                cast(g["C"], p.C), cast(g["D"], p.D), cast(g["z"], p.z), cast(g["bias"], p.delta_bias),
                cast(g["h0"], p.initial_state))


def selective_scan_triton(p: ScanInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(y, final_state)``: y (batch, dim, L) in u's dtype, final state (batch, dim, N) fp32."""
    if p.u.shape[2] == 0:
        from .chunked import selective_scan_chunked

        return selective_scan_chunked(p)
    if torch.is_grad_enabled() and any(
        x is not None and x.requires_grad
        for x in (p.u, p.delta, p.A, p.B, p.C, p.D, p.z, p.delta_bias, p.initial_state)
    ):
        return _TritonScan.apply(p, p.u, p.delta, p.A, p.B, p.C, p.D, p.z, p.delta_bias, p.initial_state)
    y, hT, _ = _scan_fwd(p, save_ckpt=False)
    return y, hT
