"""Causal depthwise conv1d in Triton: forward and backward kernels.

One program owns a [BD, BL] tile (channels x steps) of one batch row. The width
is at most 4, so each tap is one shifted, masked load of the tile; taps that
reach before step 0 read ``initial_state``, taps that cross a document boundary
(``seq_idx`` differs from the output step's) or land on a padded step (``mask``
is 0) read zero. Inputs and outputs take any strides: a channels-last view (the
transpose of a (batch, L, dim) tensor, as the mixer passes) is read in place,
and the output and input gradient are allocated in the input's layout, with
tiles wide in the channels (contiguous) direction.

The backward runs two kernels. The first forms the gradient of the
pre-activation once per step (recomputing the pre-activation for the SiLU),
writes it to a buffer, and reduces the weight and bias gradients over a run of
tiles into per-program partial sums that the host adds up (no atomics). The
second forms the input gradient from W shifted reads of that buffer.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .spec import ConvInputs

# the weight-gradient kernel gives each program a run of tiles: about this many programs in all
WGRAD_PROGRAMS = 4096


@triton.jit
def _same_doc(seq_ptr, i_b, o_src, o_t, m_t, length, HAS_SEQ: tl.constexpr):
    """[BL] fp32: 1 where step o_src (clamped to >= 0: history belongs to step 0's document) is in o_t's document."""
    if HAS_SEQ:
        s_t = tl.load(seq_ptr + i_b * length + o_t, mask=m_t, other=0)
        s_src = tl.load(seq_ptr + i_b * length + tl.maximum(o_src, 0), mask=m_t & (o_src < length), other=0)
        same = tl.where(s_src == s_t, 1.0, 0.0)
    else:
        same = tl.full(o_t.shape, 1.0, tl.float32)
    return same


@triton.jit
def _tap_input(p_x, sx_t, h0_ptr, mask_ptr, i_b, o_d, m_d, o_src, dim, length, W: tl.constexpr,
               HAS_H0: tl.constexpr, HAS_MASK: tl.constexpr):
    """x'[o_src] as [BD, BL] fp32: masked input, initial state before step 0, zero elsewhere.
    p_x: [BD, 1] pointers to step 0 of this row's channels; sx_t: x's time stride."""
    m_in = (o_src >= 0) & (o_src < length)
    b_x = tl.load(p_x + o_src.to(tl.int64)[None, :] * sx_t, mask=m_d[:, None] & m_in[None, :], other=0.0).to(tl.float32)
    if HAS_MASK:
        b_x *= tl.load(mask_ptr + i_b * length + o_src, mask=m_in, other=0.0)[None, :]
    if HAS_H0:
        m_h = (o_src < 0) & (o_src >= 1 - W)
        p_h = h0_ptr + i_b.to(tl.int64) * dim * (W - 1) + o_d[:, None] * (W - 1) + (o_src + W - 1)[None, :]
        b_x += tl.load(p_h, mask=m_d[:, None] & m_h[None, :], other=0.0).to(tl.float32)
    return b_x


@triton.jit
def _conv_pre(p_x, sx_t, w_ptr, bias_ptr, h0_ptr, seq_ptr, mask_ptr, i_b, o_d, m_d, o_t, dim, length,
              W: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr, HAS_SEQ: tl.constexpr,
              HAS_MASK: tl.constexpr, BD: tl.constexpr, BL: tl.constexpr):
    """Pre-activation bias + sum_k w[k] x'[t - W + 1 + k] at steps o_t, [BD, BL] fp32."""
    m_t = (o_t >= 0) & (o_t < length)
    if HAS_BIAS:
        b_acc = tl.zeros([BD, BL], dtype=tl.float32) + tl.load(bias_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)[:, None]
    else:
        b_acc = tl.zeros([BD, BL], dtype=tl.float32)
    for k in tl.static_range(W):
        o_src = o_t - (W - 1) + k
        b_w = tl.load(w_ptr + o_d * W + k, mask=m_d, other=0.0).to(tl.float32)
        b_x = _tap_input(p_x, sx_t, h0_ptr, mask_ptr, i_b, o_d, m_d, o_src, dim, length, W, HAS_H0, HAS_MASK)
        if k < W - 1:
            b_x *= _same_doc(seq_ptr, i_b, o_src, o_t, m_t, length, HAS_SEQ)[None, :]
        b_acc += b_w[:, None] * b_x
    return b_acc


@triton.jit
def _conv_fwd_kernel(x_ptr, w_ptr, bias_ptr, h0_ptr, seq_ptr, mask_ptr, out_ptr, dim, length,
                     sx_b, sx_d, sx_t, so_b, so_d, so_t,
                     W: tl.constexpr, SILU: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr,
                     HAS_SEQ: tl.constexpr, HAS_MASK: tl.constexpr, BD: tl.constexpr, BL: tl.constexpr):
    i_l, i_d, i_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    o_t = i_l * BL + tl.arange(0, BL)
    o_d = i_d * BD + tl.arange(0, BD)
    m_d = o_d < dim
    m_t = o_t < length
    i_b64, o_d64 = i_b.to(tl.int64), o_d.to(tl.int64)[:, None]
    p_x = x_ptr + i_b64 * sx_b + o_d64 * sx_d
    b_out = _conv_pre(p_x, sx_t, w_ptr, bias_ptr, h0_ptr, seq_ptr, mask_ptr, i_b, o_d, m_d, o_t, dim, length,
                      W, HAS_BIAS, HAS_H0, HAS_SEQ, HAS_MASK, BD, BL)  # [BD, BL]
    if SILU:
        b_out = b_out * tl.sigmoid(b_out)
    if HAS_MASK:
        b_out *= tl.load(mask_ptr + i_b * length + o_t, mask=m_t, other=0.0)[None, :]
    p_out = out_ptr + i_b64 * so_b + o_d64 * so_d + o_t.to(tl.int64)[None, :] * so_t
    tl.store(p_out, b_out.to(out_ptr.dtype.element_ty), mask=m_d[:, None] & m_t[None, :])


@triton.jit
def _conv_bwd_pre_kernel(x_ptr, w_ptr, bias_ptr, h0_ptr, seq_ptr, mask_ptr, go_ptr,
                         gp_ptr, gw_ptr, gbias_ptr, gh0_ptr, dim, length, tiles_per_prog,
                         sx_b, sx_d, sx_t, sgo_b, sgo_d, sgo_t, sgp_b, sgp_d, sgp_t,
                         W: tl.constexpr, SILU: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr,
                         HAS_SEQ: tl.constexpr, HAS_MASK: tl.constexpr, BD: tl.constexpr, BL: tl.constexpr):
    """gp = d loss / d pre-activation for a run of tiles_per_prog tiles, and this run's weight/bias partials."""
    i_p, i_d, i_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    o_d = i_d * BD + tl.arange(0, BD)
    m_d = o_d < dim
    i_b64, o_d64 = i_b.to(tl.int64), o_d.to(tl.int64)[:, None]
    p_x = x_ptr + i_b64 * sx_b + o_d64 * sx_d
    p_go = go_ptr + i_b64 * sgo_b + o_d64 * sgo_d
    p_gp = gp_ptr + i_b64 * sgp_b + o_d64 * sgp_d
    b_gw0 = tl.zeros([BD], dtype=tl.float32)
    b_gw1 = tl.zeros([BD], dtype=tl.float32)
    b_gw2 = tl.zeros([BD], dtype=tl.float32)
    b_gw3 = tl.zeros([BD], dtype=tl.float32)
    b_gb = tl.zeros([BD], dtype=tl.float32)
    for j in range(0, tiles_per_prog):
        o_t = (i_p * tiles_per_prog + j) * BL + tl.arange(0, BL)
        m_t = o_t < length
        m_dt = m_d[:, None] & m_t[None, :]
        o_tl = o_t.to(tl.int64)[None, :]
        b_g = tl.load(p_go + o_tl * sgo_t, mask=m_dt, other=0.0).to(tl.float32)  # [BD, BL]
        if HAS_MASK:
            b_g *= tl.load(mask_ptr + i_b * length + o_t, mask=m_t, other=0.0)[None, :]
        if SILU:
            b_pre = _conv_pre(p_x, sx_t, w_ptr, bias_ptr, h0_ptr, seq_ptr, mask_ptr, i_b, o_d, m_d, o_t, dim,
                              length, W, HAS_BIAS, HAS_H0, HAS_SEQ, HAS_MASK, BD, BL)
            b_sig = tl.sigmoid(b_pre)
            b_g *= b_sig * (1.0 + b_pre * (1.0 - b_sig))
        tl.store(p_gp + o_tl * sgp_t, b_g.to(gp_ptr.dtype.element_ty), mask=m_dt)
        b_gb += tl.sum(b_g, axis=1)
        # tap k of output step t reads x'[t - W + 1 + k] (the loads hit the cache: _conv_pre just read them)
        for k in tl.static_range(W):
            o_src = o_t - (W - 1) + k
            b_x = _tap_input(p_x, sx_t, h0_ptr, mask_ptr, i_b, o_d, m_d, o_src, dim, length, W, HAS_H0, HAS_MASK)
            if k < W - 1:
                b_x *= _same_doc(seq_ptr, i_b, o_src, o_t, m_t, length, HAS_SEQ)[None, :]
            b_part = tl.sum(b_g * b_x, axis=1)
            if k == 0:
                b_gw0 += b_part
            elif k == 1:
                b_gw1 += b_part
            elif k == 2:
                b_gw2 += b_part
            else:
                b_gw3 += b_part
        if HAS_H0:
            if i_p * tiles_per_prog + j == 0:
                # the initial state's slot s feeds the output at step s - k through tap k (for k <= s)
                for s in tl.static_range(W - 1):
                    b_gh = tl.zeros([BD], dtype=tl.float32)
                    for k in tl.static_range(s + 1):
                        b_col = tl.sum(tl.where((o_t == s - k)[None, :], b_g, 0.0), axis=1)
                        if HAS_SEQ:
                            s_0 = tl.load(seq_ptr + i_b * length)
                            s_t = tl.load(seq_ptr + i_b * length + s - k, mask=s - k < length, other=0)
                            b_col = tl.where(s_0 == s_t, b_col, 0.0)
                        b_gh += b_col * tl.load(w_ptr + o_d * W + k, mask=m_d, other=0.0).to(tl.float32)
                    tl.store(gh0_ptr + i_b64 * dim * (W - 1) + o_d * (W - 1) + s, b_gh, mask=m_d)
    p_part = (i_b64 * tl.num_programs(0) + i_p) * dim + o_d  # per-program partial sums, (batch * programs, dim[, W])
    if HAS_BIAS:
        tl.store(gbias_ptr + p_part, b_gb, mask=m_d)
    tl.store(gw_ptr + p_part * W, b_gw0, mask=m_d)
    if W > 1:
        tl.store(gw_ptr + p_part * W + 1, b_gw1, mask=m_d)
    if W > 2:
        tl.store(gw_ptr + p_part * W + 2, b_gw2, mask=m_d)
    if W > 3:
        tl.store(gw_ptr + p_part * W + 3, b_gw3, mask=m_d)


@triton.jit
def _conv_bwd_x_kernel(w_ptr, seq_ptr, mask_ptr, gp_ptr, gx_ptr, dim, length,
                       sgp_b, sgp_d, sgp_t, sgx_b, sgx_d, sgx_t,
                       W: tl.constexpr, HAS_SEQ: tl.constexpr, HAS_MASK: tl.constexpr,
                       BD: tl.constexpr, BL: tl.constexpr):
    """gx[s] = mask[s] * sum_k w[k] gp[s + W - 1 - k] (x[s] feeds output s + W - 1 - k through tap k)."""
    i_l, i_d, i_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    o_t = i_l * BL + tl.arange(0, BL)
    o_d = i_d * BD + tl.arange(0, BD)
    m_d = o_d < dim
    m_t = o_t < length
    i_b64, o_d64 = i_b.to(tl.int64), o_d.to(tl.int64)[:, None]
    p_gp = gp_ptr + i_b64 * sgp_b + o_d64 * sgp_d
    b_gx = tl.zeros([BD, BL], dtype=tl.float32)
    for k in tl.static_range(W):
        o_out = o_t + (W - 1) - k
        m_out = o_out < length
        b_w = tl.load(w_ptr + o_d * W + k, mask=m_d, other=0.0).to(tl.float32)
        b_go = tl.load(p_gp + o_out.to(tl.int64)[None, :] * sgp_t, mask=m_d[:, None] & m_out[None, :],
                       other=0.0).to(tl.float32)
        if k < W - 1:
            b_go *= _same_doc(seq_ptr, i_b, o_t, o_out, m_out, length, HAS_SEQ)[None, :]
        b_gx += b_w[:, None] * b_go
    if HAS_MASK:
        b_gx *= tl.load(mask_ptr + i_b * length + o_t, mask=m_t, other=0.0)[None, :]
    p_gx = gx_ptr + i_b64 * sgx_b + o_d64 * sgx_d + o_t.to(tl.int64)[None, :] * sgx_t
    tl.store(p_gx, b_gx.to(gx_ptr.dtype.element_ty), mask=m_d[:, None] & m_t[None, :])


def _channels_last(t: torch.Tensor) -> bool:
    """A (batch, dim, L) tensor whose channels are adjacent in memory (a transposed (batch, L, dim) view)."""
    return t.stride(1) == 1 and t.stride(2) != 1 and t.shape[1] > 1


def empty_in_layout_of(t: torch.Tensor) -> torch.Tensor:
    """An empty tensor shaped and typed like the (batch, dim, L) tensor t: channels-last ((batch, L, dim)
    memory, seen transposed) when t is, else contiguous."""
    batch, dim, length = t.shape
    if _channels_last(t):
        return torch.empty(batch, length, dim, device=t.device, dtype=t.dtype).transpose(1, 2)
    return torch.empty(batch, dim, length, device=t.device, dtype=t.dtype)


def _tiles(x: torch.Tensor) -> tuple[int, int]:
    """[BD, BL]: wide in the direction that is contiguous in memory, so every load is a long run."""
    dim, length = x.shape[1], x.shape[2]
    if _channels_last(x):
        BD = max(1, min(64, triton.next_power_of_2(dim)))
        BL = max(16, min(32, triton.next_power_of_2(length)))
    else:
        BL = min(256, max(16, triton.next_power_of_2(length)))
        BD = max(1, min(16, 4096 // BL, triton.next_power_of_2(dim)))
    return BD, BL


def _launch(p: ConvInputs):
    BD, BL = _tiles(p.x)
    t = dict(w=p.weight.contiguous(), bias=None if p.bias is None else p.bias.contiguous(),
             h0=None if p.initial_state is None else p.initial_state.contiguous(),
             seq=None if p.seq_idx is None else p.seq_idx.to(torch.int32).contiguous(),
             mask=None if p.mask is None else p.mask.to(torch.float32).contiguous())
    flags = dict(W=p.width, SILU=p.activation == "silu", HAS_BIAS=t["bias"] is not None, HAS_H0=t["h0"] is not None,
                 HAS_SEQ=t["seq"] is not None, HAS_MASK=t["mask"] is not None, BD=BD, BL=BL, num_warps=4)
    return t, flags


def _conv_fwd(p: ConvInputs) -> torch.Tensor:
    t, flags = _launch(p)
    x = p.x
    batch, dim, length = x.shape
    out = empty_in_layout_of(x)
    grid = (triton.cdiv(length, flags["BL"]), triton.cdiv(dim, flags["BD"]), batch)
    _conv_fwd_kernel[grid](x, t["w"], t["bias"], t["h0"], t["seq"], t["mask"], out, dim, length,
                           *x.stride(), *out.stride(), **flags)
    return out


def _conv_bwd(p: ConvInputs, g_out: torch.Tensor):
    t, flags = _launch(p)
    x = p.x
    batch, dim, length = x.shape
    BD, BL = flags["BD"], flags["BL"]
    n_tiles, n_dblocks = triton.cdiv(length, BL), triton.cdiv(dim, BD)
    # runs of tiles per program: enough programs to fill the GPU, few partial sums to add up
    n_runs = max(1, min(n_tiles, triton.cdiv(WGRAD_PROGRAMS, n_dblocks * batch)))
    tiles_per_prog = triton.cdiv(n_tiles, n_runs)
    n_runs = triton.cdiv(n_tiles, tiles_per_prog)
    dev, f32 = x.device, torch.float32
    g_pre = empty_in_layout_of(x)
    g_x = empty_in_layout_of(x)
    g_w = torch.empty(batch * n_runs, dim, p.width, device=dev, dtype=f32)
    g_bias = torch.empty(batch * n_runs, dim, device=dev, dtype=f32) if t["bias"] is not None else None
    g_h0 = torch.empty(batch, dim, p.width - 1, device=dev, dtype=f32) if t["h0"] is not None else None
    _conv_bwd_pre_kernel[(n_runs, n_dblocks, batch)](
        x, t["w"], t["bias"], t["h0"], t["seq"], t["mask"], g_out, g_pre, g_w, g_bias, g_h0, dim, length,
        tiles_per_prog, *x.stride(), *g_out.stride(), *g_pre.stride(), **flags)
    _conv_bwd_x_kernel[(n_tiles, n_dblocks, batch)](
        t["w"], t["seq"], t["mask"], g_pre, g_x, dim, length, *g_pre.stride(), *g_x.stride(),
        W=flags["W"], HAS_SEQ=flags["HAS_SEQ"], HAS_MASK=flags["HAS_MASK"], BD=BD, BL=BL, num_warps=4)
    return g_x, g_w.sum(0), None if g_bias is None else g_bias.sum(0), g_h0


class _TritonConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p: ConvInputs, x_, weight_, bias_, h0_):
        ctx.p = p
        return _conv_fwd(p)

    @staticmethod
    def backward(ctx, g_out):
        p: ConvInputs = ctx.p
        g_x, g_w, g_bias, g_h0 = _conv_bwd(p, g_out)

        def cast(grad, ref):
            return None if grad is None or ref is None or not ref.requires_grad else grad.to(ref.dtype)

        return None, cast(g_x, p.x), cast(g_w, p.weight), cast(g_bias, p.bias), cast(g_h0, p.initial_state)


def causal_conv1d_triton(p: ConvInputs) -> torch.Tensor:
    """Returns the conv output (batch, dim, L) in x's dtype, same semantics as ``reference.causal_conv1d_reference``;
    channels-last when x is a channels-last view."""
    if p.x.shape[2] == 0:
        return torch.empty_like(p.x)
    if torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (p.x, p.weight, p.bias, p.initial_state)
    ):
        return _TritonConv.apply(p, p.x, p.weight, p.bias, p.initial_state)
    return _conv_fwd(p)
