"""Selective scan in Triton, long time chunks: one program per channel, states walked one by one.

The design of mamba_ssm's CUDA kernel, in plain ``tl``. One program owns one
batch row and BD channels (BD = 1 by default; the kernels take any BD that
divides the channels of a group) and walks the sequence
in chunks of BT steps (hundreds to a thousand). Inside a chunk it loops over the
N states: for state n, ``h[t] = a[t] * h[t-1] + b[t]`` over the chunk is one
``tl.associative_scan`` along a [BD, BT] tile whose time axis Triton spreads over
the threads in runs of consecutive steps, so each thread scans its run serially
and only the run ends cross lanes and warps. y accumulates over the states in
registers (no reduction over N), and exp2 takes A pre-multiplied by log2(e).

Carries between chunks go through memory: the last thread of a state's scan
stores the chunk-end state into a (batch, chunks + 1, dim, N) fp32 buffer that
the next chunk reads after a barrier. That buffer is also all the forward saves
for the backward (one state per chunk: with BT = 1024, 1/512 of a bf16 u's bytes
for N = 16), and its last slot is the final state.

The backward walks the chunks in reverse. Per chunk and state it recomputes the
forward scan from the saved chunk-start state, runs the adjoint
``g[t] = gy[t] C[t] + a[t+1] g[t+1]`` as a reverse scan (the carry from the next
chunk passes through a second buffer the same way), and forms the gradients:
du, ddelta and dz accumulate over the states in registers; dB and dC of the
state are summed over the program's BD channels and added with relaxed fp32
atomics (one add per step and state per program: B*D/BD adds per element);
dA goes to a per-batch partial sum the host adds up.

Supports time-varying B and C (any number of groups), D, z gating, delta_bias
with softplus, seq_idx resets, mask, initial and final state. The kernels take
any strides, but the launchers first copy inputs that are not contiguous along
time (the mixer's (batch, L, dim) views): only a time stride of 1, which Triton
specialises on, gives each thread 8 consecutive steps in 16-byte loads.
Time-invariant (dim, N) B or C go to ``triton.py``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .spec import ScanInputs
from .triton import _affine_combine, _big_strides, _load_dt, _load_keep

# Register cap of the backward kernel (Triton's ``maxnreg``; None: the compiler's choice). Uncapped it takes
# 203 registers at BT = 1024 with 4 warps, two programs an SM; at 168 three fit, and the compiler's spills
# (32 bytes) all sit outside the state loop. Measured on an H200 (RESULTS.md, eighth session): forward +
# backward 0-7% faster at the benchmark shapes, and on the mixer's views. The interpreter ignores it.
BWD_MAXNREG: int | None = 168
# the same for the forward kernel (None: 83 registers, six programs an SM)
FWD_MAXNREG: int | None = None

# y and the gradients of u, delta, z in their inputs' layouts (channels-last for the mixer's views, so its
# transposes back are free), else contiguous (batch, dim, L)
OUTPUTS_IN_INPUT_LAYOUT = True


@triton.jit
def _long_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, seq_ptr, mask_ptr,
    y_ptr, state_ptr,
    dim, length, n_state, n_chunks, dpg_B, dpg_C,
    su_b, su_d, su_t, sdl_b, sdl_d, sdl_t, sz_b, sz_d, sz_t, sy_b, sy_d, sy_t,
    sB_b, sB_g, sB_n, sB_t, sC_b, sC_g, sC_n, sC_t,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_SEQ: tl.constexpr, HAS_MASK: tl.constexpr, BD: tl.constexpr, BT: tl.constexpr,
):
    i_d, i_b = tl.program_id(0), tl.program_id(1)
    o_d = i_d * BD + tl.arange(0, BD)  # [BD]; BD divides dim and the channels per group
    o_t = tl.arange(0, BT)
    m_d = o_d < dim
    i_b64, o_d64 = i_b.to(tl.int64), o_d.to(tl.int64)[:, None]
    p_u = u_ptr + i_b64 * su_b + o_d64 * su_d  # [BD, 1]
    p_delta = delta_ptr + i_b64 * sdl_b + o_d64 * sdl_d
    if HAS_Z:
        p_z = z_ptr + i_b64 * sz_b + o_d64 * sz_d
    p_y = y_ptr + i_b64 * sy_b + o_d64 * sy_d
    p_B = B_ptr + i_b64 * sB_b + ((i_d * BD) // dpg_B).to(tl.int64) * sB_g
    p_C = C_ptr + i_b64 * sC_b + ((i_d * BD) // dpg_C).to(tl.int64) * sC_g
    p_A = A_ptr + o_d * n_state  # [BD]
    slot = dim * n_state  # one chunk's states in the state buffer
    p_h = state_ptr + i_b64 * (n_chunks + 1) * slot + o_d.to(tl.int64) * n_state  # [BD]
    p_hst = p_h[:, None] + o_t[None, :] * 0  # [BD, BT], all alike: where the last column stores
    m_last = m_d[:, None] & (o_t == BT - 1)[None, :]
    if HAS_D:
        b_Dk = tl.load(D_ptr + o_d).to(tl.float32)

    for i_c in range(0, n_chunks):
        o_tt = i_c * BT + o_t
        m_t = o_tt < length
        o_tl = o_tt.to(tl.int64)
        m = m_d[:, None] & m_t[None, :]
        b_dt, _ = _load_dt(p_delta, bias_ptr, mask_ptr, i_b, o_d, m_d, o_tt, m_t, sdl_t, length,
                           HAS_BIAS, SOFTPLUS, HAS_MASK)  # [BD, BT]
        b_u = tl.load(p_u + o_tl[None, :] * su_t, mask=m, other=0.0).to(tl.float32)
        b_keep = _load_keep(seq_ptr, i_b, o_tt, length, HAS_SEQ)[None, :]
        b_dtu = b_dt * b_u
        if HAS_D:
            b_y = b_Dk[:, None] * b_u
        else:
            b_y = tl.zeros([BD, BT], dtype=tl.float32)
        p_hc = p_h + i_c * slot
        p_hs = p_hst + (i_c + 1) * slot
        for i_n in range(0, n_state):
            b_A2 = tl.load(p_A + i_n).to(tl.float32) * 1.4426950408889634  # [BD]
            b_h0 = tl.load(p_hc + i_n)[:, None]  # [BD, 1]: the chunk-start state
            b_B = tl.load(p_B + i_n * sB_n + o_tl * sB_t, mask=m_t, other=0.0).to(tl.float32)  # [BT]
            b_C = tl.load(p_C + i_n * sC_n + o_tl * sC_t, mask=m_t, other=0.0).to(tl.float32)
            b_a = tl.exp2(b_dt * b_A2[:, None]) * b_keep  # [BD, BT]
            b_x = b_dtu * b_B[None, :]
            b_ac, b_xc = tl.associative_scan((b_a, b_x), axis=1, combine_fn=_affine_combine)
            b_hs = b_ac * b_h0 + b_xc
            b_y += b_hs * b_C[None, :]
            # padded steps are identity steps, so column BT - 1 holds the chunk's last state
            tl.store(p_hs + i_n, b_hs, mask=m_last)
        if HAS_Z:
            b_z = tl.load(p_z + o_tl[None, :] * sz_t, mask=m, other=0.0).to(tl.float32)
            b_y *= b_z * tl.sigmoid(b_z)
        if HAS_MASK:
            b_y *= tl.load(mask_ptr + i_b * length + o_tt, mask=m_t, other=0.0)[None, :]
        tl.store(p_y + o_tl[None, :] * sy_t, b_y.to(y_ptr.dtype.element_ty), mask=m)
        tl.debug_barrier()  # the next chunk reads the states this one stored



@triton.jit
def _load_dt_rel(p_delta, bias_ptr, p_mask, o_d, m_d, o_t, m_t, st_delta,
                 HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_MASK: tl.constexpr):
    """``triton._load_dt`` with offsets o_t relative to the chunk start that p_delta ([BD, 1]) and p_mask
    (this row's mask) already point at, so the tiles stay int32: dt and the pre-activation, [BD, BT] fp32."""
    m = m_d[:, None] & m_t[None, :]
    b_pre = tl.load(p_delta + o_t[None, :] * st_delta, mask=m, other=0.0).to(tl.float32)
    if HAS_BIAS:
        b_pre += tl.load(bias_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)[:, None]
    if SOFTPLUS:
        b_dt = tl.where(b_pre > 20.0, b_pre, tl.log(1.0 + tl.exp(b_pre)))
    else:
        b_dt = b_pre
    if HAS_MASK:
        b_dt *= tl.load(p_mask + o_t, mask=m_t, other=0.0)[None, :]
    b_dt = tl.where(m, b_dt, 0.0)
    return b_dt, b_pre


@triton.jit
def _gated_gy(p_gy, p_z, mask_ptr, i_b, o_t, o_tt, m, m_t, sgy_t, sz_t, length,
              HAS_Z: tl.constexpr, HAS_MASK: tl.constexpr):
    """d loss / d y before the gate, [BD, BT] fp32, for the chunk whose pointers p_gy, p_z point at."""
    b_go = tl.load(p_gy + o_t[None, :] * sgy_t, mask=m, other=0.0).to(tl.float32)
    if HAS_MASK:
        b_go *= tl.load(mask_ptr + i_b * length + o_tt, mask=m_t, other=0.0)[None, :]
    if HAS_Z:
        b_z = tl.load(p_z + o_t[None, :] * sz_t, mask=m, other=0.0).to(tl.float32)
        b_go = b_go * b_z * tl.sigmoid(b_z)
    return b_go


@triton.jit
def _long_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, seq_ptr, mask_ptr, state_ptr,
    gy_ptr, gstate_ptr,
    gu_ptr, gdelta_ptr, gz_ptr, gB_ptr, gC_ptr, gA_ptr, gD_ptr, gbias_ptr,
    dim, length, n_state, n_chunks, dpg_B, dpg_C, n_groups_B, n_groups_C,
    su_b, su_d, su_t, sdl_b, sdl_d, sdl_t, sz_b, sz_d, sz_t, sgy_b, sgy_d, sgy_t,
    sgu_b, sgu_d, sgu_t, sgdl_b, sgdl_d, sgdl_t, sgz_b, sgz_d, sgz_t,
    sB_b, sB_g, sB_n, sB_t, sC_b, sC_g, sC_n, sC_t,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_SEQ: tl.constexpr, HAS_MASK: tl.constexpr, BD: tl.constexpr, BN: tl.constexpr, BT: tl.constexpr,
):
    i_d, i_b = tl.program_id(0), tl.program_id(1)
    o_d = i_d * BD + tl.arange(0, BD)
    o_t = tl.arange(0, BT)
    o_n = tl.arange(0, BN)
    m_d = o_d < dim
    i_b64, o_d64 = i_b.to(tl.int64), o_d.to(tl.int64)[:, None]
    p_u = u_ptr + i_b64 * su_b + o_d64 * su_d  # [BD, 1]
    p_delta = delta_ptr + i_b64 * sdl_b + o_d64 * sdl_d
    p_gy = gy_ptr + i_b64 * sgy_b + o_d64 * sgy_d
    p_gu = gu_ptr + i_b64 * sgu_b + o_d64 * sgu_d
    p_gdelta = gdelta_ptr + i_b64 * sgdl_b + o_d64 * sgdl_d
    if HAS_Z:
        p_z = z_ptr + i_b64 * sz_b + o_d64 * sz_d
        p_gz = gz_ptr + i_b64 * sgz_b + o_d64 * sgz_d
    else:
        p_z = p_gy  # not read: _gated_gy reads z only when HAS_Z
    i_gB = (i_d * BD) // dpg_B
    i_gC = (i_d * BD) // dpg_C
    p_B = B_ptr + i_b64 * sB_b + i_gB.to(tl.int64) * sB_g
    p_C = C_ptr + i_b64 * sC_b + i_gC.to(tl.int64) * sC_g
    # dB, dC: contiguous fp32 (batch, groups, N, L)
    p_gB = gB_ptr + (i_b64 * n_groups_B + i_gB) * n_state * length
    p_gC = gC_ptr + (i_b64 * n_groups_C + i_gC) * n_state * length
    p_A = A_ptr + o_d * n_state
    slot = dim * n_state
    p_h = state_ptr + i_b64 * (n_chunks + 1) * slot + o_d.to(tl.int64) * n_state  # [BD]
    p_g = gstate_ptr + i_b64 * (n_chunks + 1) * slot + o_d.to(tl.int64) * n_state
    p_gst = p_g[:, None] + o_t[None, :] * 0  # [BD, BT], all alike: where the first column stores
    m_first = m_d[:, None] & (o_t == 0)[None, :]
    if HAS_D:
        b_Dk = tl.load(D_ptr + o_d).to(tl.float32)
        b_gD = tl.zeros([BD], dtype=tl.float32)
    if HAS_BIAS:
        b_gbias = tl.zeros([BD], dtype=tl.float32)
    b_gA = tl.zeros([BD, BN], dtype=tl.float32)

    for i_r in range(0, n_chunks):
        i_c = n_chunks - 1 - i_r
        o_tt = i_c * BT + o_t
        m_t = o_tt < length
        m = m_d[:, None] & m_t[None, :]
        i_t0 = (i_c * BT).to(tl.int64)  # the chunk's first step: scalar offsets, int32 tiles
        p_dc = p_delta + i_t0 * sdl_t
        if HAS_MASK:
            p_mc = mask_ptr + i_b * length + i_c * BT
        else:
            p_mc = mask_ptr  # not read
        b_dt, _ = _load_dt_rel(p_dc, bias_ptr, p_mc, o_d, m_d, o_t, m_t, sdl_t, HAS_BIAS, SOFTPLUS, HAS_MASK)
        b_keep = _load_keep(seq_ptr, i_b, o_tt, length, HAS_SEQ)[None, :]
        # a[t + 1] for the adjoint; 1 at the chunk's last column, whose successor's factor the carry holds
        o_tn = o_tt + 1
        m_tn = (o_tn < length) & (o_t < BT - 1)
        b_dtn, _ = _load_dt_rel(p_dc, bias_ptr, p_mc, o_d, m_d, o_t + 1, m_tn, sdl_t, HAS_BIAS, SOFTPLUS, HAS_MASK)
        b_keepn = _load_keep(seq_ptr, i_b, tl.where(m_tn, o_tn, 0), length, HAS_SEQ)[None, :]
        b_dtu = b_dt * tl.load(p_u + i_t0 * su_t + o_t[None, :] * su_t, mask=m, other=0.0).to(tl.float32)
        b_gy = _gated_gy(p_gy + i_t0 * sgy_t, p_z + i_t0 * sz_t, mask_ptr, i_b, o_t, o_tt, m, m_t, sgy_t, sz_t,
                         length, HAS_Z, HAS_MASK)
        if HAS_Z:
            if HAS_D:
                b_ypre = b_Dk[:, None] * tl.load(p_u + i_t0 * su_t + o_t[None, :] * su_t, mask=m,
                                                 other=0.0).to(tl.float32)
            else:
                b_ypre = tl.zeros([BD, BT], dtype=tl.float32)
        b_sB = tl.zeros([BD, BT], dtype=tl.float32)  # sum over states of g[t] B[t]
        b_sdA = tl.zeros([BD, BT], dtype=tl.float32)  # sum over states of d loss / d (dt A)[t] * A
        p_hc = p_h + i_c * slot
        p_gc = p_g + (i_c + 1) * slot
        p_gs = p_gst + i_c * slot
        p_Bc = p_B + i_t0 * sB_t
        p_Cc = p_C + i_t0 * sC_t
        p_gBc = p_gB + i_t0
        p_gCc = p_gC + i_t0
        for i_n in range(0, n_state):
            b_A = tl.load(p_A + i_n).to(tl.float32)  # [BD]
            b_A2 = b_A * 1.4426950408889634
            b_h0 = tl.load(p_hc + i_n)[:, None]  # [BD, 1]: state before the chunk
            b_g = tl.load(p_gc + i_n)[:, None]  # [BD, 1]: d loss / d state after the chunk
            b_B = tl.load(p_Bc + i_n * sB_n + o_t * sB_t, mask=m_t, other=0.0).to(tl.float32)  # [BT]
            b_C = tl.load(p_Cc + i_n * sC_n + o_t * sC_t, mask=m_t, other=0.0).to(tl.float32)
            b_a = tl.exp2(b_dt * b_A2[:, None]) * b_keep
            b_x = b_dtu * b_B[None, :]
            b_ac, b_xc = tl.associative_scan((b_a, b_x), axis=1, combine_fn=_affine_combine)
            b_hs = b_ac * b_h0 + b_xc  # [BD, BT]: state after each step
            if HAS_Z:
                b_ypre += b_hs * b_C[None, :]
            b_an = tl.exp2(b_dtn * b_A2[:, None]) * b_keepn
            b_gc, b_sc = tl.associative_scan((b_an, b_gy * b_C[None, :]), axis=1, combine_fn=_affine_combine,
                                             reverse=True)
            b_gs = b_gc * b_g + b_sc  # [BD, BT]: d loss / d h[t]
            tl.store(p_gs + i_n, b_gs * b_a, mask=m_first)  # d loss / d state before the chunk
            b_gda = b_gs * (b_hs - b_x)  # d loss / d (dt A)[t] = g[t] a[t] h[t-1]
            b_sdA += b_gda * b_A[:, None]
            b_sB += b_gs * b_B[None, :]
            b_gA += tl.where(o_n[None, :] == i_n, tl.sum(b_gda * b_dt, axis=1)[:, None], 0.0)
            tl.atomic_add(p_gBc + i_n * length + o_t, tl.sum(b_gs * b_dtu, axis=0), mask=m_t, sem="relaxed")
            tl.atomic_add(p_gCc + i_n * length + o_t, tl.sum(b_gy * b_hs, axis=0), mask=m_t, sem="relaxed")
        # u, the pre-activation and z are read again here rather than kept live through the state loop
        b_u = tl.load(p_u + i_t0 * su_t + o_t[None, :] * su_t, mask=m, other=0.0).to(tl.float32)
        b_gu = b_sB * b_dt
        b_gdt = b_sdA + b_sB * b_u
        if HAS_D:
            b_gu += b_gy * b_Dk[:, None]
            b_gD += tl.sum(b_gy * b_u, axis=1)
        tl.store(p_gu + i_t0 * sgu_t + o_t[None, :] * sgu_t, b_gu.to(gu_ptr.dtype.element_ty), mask=m)
        if HAS_MASK:
            b_gdt *= tl.load(mask_ptr + i_b * length + o_tt, mask=m_t, other=0.0)[None, :]
        if SOFTPLUS:
            _, b_pre = _load_dt_rel(p_dc, bias_ptr, p_mc, o_d, m_d, o_t, m_t, sdl_t, HAS_BIAS, False, False)
            b_gdt *= tl.sigmoid(b_pre)
        b_gdt = tl.where(m, b_gdt, 0.0)
        if HAS_BIAS:
            b_gbias += tl.sum(b_gdt, axis=1)
        tl.store(p_gdelta + i_t0 * sgdl_t + o_t[None, :] * sgdl_t, b_gdt.to(gdelta_ptr.dtype.element_ty), mask=m)
        if HAS_Z:
            b_go = tl.load(p_gy + i_t0 * sgy_t + o_t[None, :] * sgy_t, mask=m, other=0.0).to(tl.float32)
            if HAS_MASK:
                b_go *= tl.load(mask_ptr + i_b * length + o_tt, mask=m_t, other=0.0)[None, :]
            b_z = tl.load(p_z + i_t0 * sz_t + o_t[None, :] * sz_t, mask=m, other=0.0).to(tl.float32)
            b_sig = tl.sigmoid(b_z)
            b_gz = b_go * b_ypre * b_sig * (1.0 + b_z * (1.0 - b_sig))
            tl.store(p_gz + i_t0 * sgz_t + o_t[None, :] * sgz_t, b_gz.to(gz_ptr.dtype.element_ty), mask=m)
        tl.debug_barrier()  # the previous chunk reads the carries this one stored

    # per-batch partial sums of the parameters shared across the batch; the host adds them up
    p_dn = i_b64 * dim * n_state + o_d64 * n_state + o_n[None, :]
    tl.store(gA_ptr + p_dn, b_gA, mask=m_d[:, None] & (o_n < n_state)[None, :])
    if HAS_D:
        tl.store(gD_ptr + i_b * dim + o_d, b_gD, mask=m_d)
    if HAS_BIAS:
        tl.store(gbias_ptr + i_b * dim + o_d, b_gbias, mask=m_d)


def supports(p: ScanInputs) -> bool:
    """Whether this kernel takes these inputs: time-varying B and C, at least one step."""
    return p.B.dim() == 4 and p.C.dim() == 4 and p.u.shape[2] > 0


def _config(p: ScanInputs) -> dict:
    """Channels per program BD, chunk length BT and warps, from sweeps on an H200 (benchmarks/scan.py
    --sweep): 8 steps per thread (BT = 256 per warp) won; wider BD made the backward 2-3x slower."""
    length = p.u.shape[2]
    BT = min(1024, max(16, triton.next_power_of_2(length)))
    return dict(BD=1, BT=BT, num_warps=max(1, min(4, BT // 256)), bwd_maxnreg=BWD_MAXNREG,
                fwd_maxnreg=FWD_MAXNREG)


def _time_contiguous(p: ScanInputs) -> ScanInputs:
    """p with u, delta, z, B and C contiguous along time (copies only of those that are not), so each
    program reads its channel's steps in 16-byte runs: the (batch, L, dim) views the mixer passes would
    otherwise cost one 32-byte sector per 2-byte step (measured 2-3x slower: RESULTS.md)."""
    def tc(t):
        return t if t is None or t.stride(-1) == 1 else t.contiguous()

    return ScanInputs(tc(p.u), tc(p.delta), p.A, tc(p.B), tc(p.C), p.D, tc(p.z), p.delta_bias, p.delta_softplus,
                      p.initial_state, p.seq_idx, p.mask)


def _bc_strides(t: torch.Tensor) -> tuple[int, int, int, int]:
    return tuple(t.stride())


def _common(p: ScanInputs, cfg: dict):
    batch, dim, length = p.u.shape
    n_state = p.A.shape[1]
    seq = p.seq_idx.to(torch.int32).contiguous() if p.seq_idx is not None else None
    mask = p.mask.to(torch.float32).contiguous() if p.mask is not None else None
    D = p.D.contiguous() if p.D is not None else None
    bias = p.delta_bias.contiguous() if p.delta_bias is not None else None
    n_chunks = triton.cdiv(length, cfg["BT"])
    flags = dict(HAS_D=D is not None, HAS_Z=p.z is not None, HAS_BIAS=bias is not None, SOFTPLUS=p.delta_softplus,
                 HAS_SEQ=seq is not None, HAS_MASK=mask is not None, BD=cfg["BD"], BT=cfg["BT"],
                 num_warps=cfg["num_warps"])
    return dict(A=p.A.contiguous(), D=D, bias=bias, seq=seq, mask=mask, n_chunks=n_chunks, n_state=n_state,
                dpg_B=dim // p.B.shape[1], dpg_C=dim // p.C.shape[1]), flags


def _empty_like_layout(t: torch.Tensor, dtype=None) -> torch.Tensor:
    """An empty (batch, dim, L) tensor laid out as t: channels-last when t is a (batch, L, dim) view."""
    from .triton import empty_in_layout_of

    return empty_in_layout_of(t, dtype)


def scan_fwd(p: ScanInputs, cfg: dict | None = None, out_like: torch.Tensor | None = None):
    """y in the layout of ``out_like`` (default u) and u's dtype, and the (batch, chunks + 1, dim, N) fp32
    chunk-start states (the last is the final state)."""
    cfg = cfg or _config(p)
    c, flags = _common(p, cfg)
    batch, dim, length = p.u.shape
    y = _empty_like_layout(p.u if out_like is None else out_like, p.u.dtype)
    states = torch.empty(batch, c["n_chunks"] + 1, dim, c["n_state"], device=p.u.device, dtype=torch.float32)
    if p.initial_state is not None:
        states[:, 0] = p.initial_state
    else:
        states[:, 0] = 0.0
    grid = (dim // cfg["BD"], batch)
    _long_fwd_kernel[grid](
        p.u, p.delta, c["A"], p.B, p.C, c["D"], p.z, c["bias"], c["seq"], c["mask"], y, states,
        dim, length, c["n_state"], c["n_chunks"], c["dpg_B"], c["dpg_C"],
        *_big_strides(p.u), *_big_strides(p.delta), *_big_strides(p.z), *_big_strides(y),
        *_bc_strides(p.B), *_bc_strides(p.C), **flags,
        **({"maxnreg": cfg["fwd_maxnreg"]} if cfg.get("fwd_maxnreg") else {}),
    )
    return y, states


def scan_bwd(p: ScanInputs, states: torch.Tensor, g_y: torch.Tensor | None, g_hT: torch.Tensor | None,
             cfg: dict | None = None, grads_like: ScanInputs | None = None) -> dict:
    """Every input's gradient; those of u, delta and z in the layouts of ``grads_like``'s (default p's)."""
    cfg = cfg or _config(p)
    c, flags = _common(p, cfg)
    batch, dim, length = p.u.shape
    n_state, dev, f32 = c["n_state"], p.u.device, torch.float32
    g_y = torch.zeros_like(p.u) if g_y is None else (g_y if g_y.stride(-1) == 1 else g_y.contiguous())
    like = p if grads_like is None else grads_like
    g_u = _empty_like_layout(like.u, p.u.dtype)
    g_delta = _empty_like_layout(like.delta, p.delta.dtype)
    g_z = _empty_like_layout(like.z, p.z.dtype) if p.z is not None else None
    g_states = torch.empty(batch, c["n_chunks"] + 1, dim, n_state, device=dev, dtype=f32)
    if g_hT is not None:
        g_states[:, -1] = g_hT
    else:
        g_states[:, -1] = 0.0
    g_B = torch.zeros(p.B.shape, device=dev, dtype=f32)
    g_C = torch.zeros(p.C.shape, device=dev, dtype=f32)
    g_A = torch.empty(batch, dim, n_state, device=dev, dtype=f32)
    g_D = torch.empty(batch, dim, device=dev, dtype=f32) if c["D"] is not None else None
    g_bias = torch.empty(batch, dim, device=dev, dtype=f32) if c["bias"] is not None else None
    grid = (dim // cfg["BD"], batch)
    _long_bwd_kernel[grid](
        p.u, p.delta, c["A"], p.B, p.C, c["D"], p.z, c["bias"], c["seq"], c["mask"], states,
        g_y, g_states, g_u, g_delta, g_z, g_B, g_C, g_A, g_D, g_bias,
        dim, length, n_state, c["n_chunks"], c["dpg_B"], c["dpg_C"], p.B.shape[1], p.C.shape[1],
        *_big_strides(p.u), *_big_strides(p.delta), *_big_strides(p.z), *_big_strides(g_y),
        *_big_strides(g_u), *_big_strides(g_delta), *_big_strides(g_z),
        *_bc_strides(p.B), *_bc_strides(p.C), BN=max(2, triton.next_power_of_2(n_state)), **flags,
        **({"maxnreg": cfg["bwd_maxnreg"]} if cfg.get("bwd_maxnreg") else {}),
    )
    return dict(u=g_u, delta=g_delta, z=g_z, B=g_B, C=g_C, h0=g_states[:, 0], A=g_A.sum(0),
                D=None if g_D is None else g_D.sum(0), bias=None if g_bias is None else g_bias.sum(0))


class _LongScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p: ScanInputs, u_, delta_, A_, B_, C_, D_, z_, bias_, h0_):
        cfg = _config(p)
        y, states = scan_fwd(_time_contiguous(p), cfg, out_like=p.u if OUTPUTS_IN_INPUT_LAYOUT else None)
        ctx.p, ctx.cfg = p, cfg
        ctx.save_for_backward(states)
        return y, states[:, -1].clone()

    @staticmethod
    def backward(ctx, g_y, g_hT):
        p: ScanInputs = ctx.p
        (states,) = ctx.saved_tensors
        g = scan_bwd(_time_contiguous(p), states, g_y, g_hT, ctx.cfg,
                     grads_like=p if OUTPUTS_IN_INPUT_LAYOUT else None)

        def cast(grad, ref):
            return None if grad is None or ref is None or not ref.requires_grad else grad.to(ref.dtype)

        return (None, cast(g["u"], p.u), cast(g["delta"], p.delta), cast(g["A"], p.A), cast(g["B"], p.B),
                cast(g["C"], p.C), cast(g["D"], p.D), cast(g["z"], p.z), cast(g["bias"], p.delta_bias),
                cast(g["h0"], p.initial_state))


def selective_scan_triton_long(p: ScanInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(y, final_state)``: y (batch, dim, L) in u's dtype and layout, final state (batch, dim, N) fp32.
    Needs ``supports(p)``."""
    if torch.is_grad_enabled() and any(
        x is not None and x.requires_grad
        for x in (p.u, p.delta, p.A, p.B, p.C, p.D, p.z, p.delta_bias, p.initial_state)
    ):
        return _LongScan.apply(p, p.u, p.delta, p.A, p.B, p.C, p.D, p.z, p.delta_bias, p.initial_state)
    y, states = scan_fwd(_time_contiguous(p), out_like=p.u if OUTPUTS_IN_INPUT_LAYOUT else None)
    return y, states[:, -1].clone()
