"""Causal depthwise conv1d in Triton: forward and backward kernels.

One program owns a [BD, BL] tile (channels x steps) of one batch row. The width
is at most 4, so each tap is one shifted, masked load of the tile; taps that
reach before step 0 read ``initial_state``, taps that cross a document boundary
(``seq_idx`` differs from the output step's) or land on a padded step (``mask``
is 0) read zero.

The backward recomputes the pre-activation where it needs it instead of
saving it: the gradient of x at step s collects the output gradients of steps
s .. s + width - 1, so each program recomputes those width shifted copies of
its tile (all reads hit the cache). Weight and bias gradients are per-tile
partial sums that the host adds up.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .spec import ConvInputs


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
def _tap_input(x_ptr, h0_ptr, mask_ptr, i_b, o_d, m_d, o_src, dim, length, W: tl.constexpr,
               HAS_H0: tl.constexpr, HAS_MASK: tl.constexpr):
    """x'[o_src] as [BD, BL] fp32: masked input, initial state before step 0, zero elsewhere."""
    m_in = (o_src >= 0) & (o_src < length)
    p_x = x_ptr + i_b.to(tl.int64) * dim * length + o_d[:, None] * length + o_src[None, :]
    b_x = tl.load(p_x, mask=m_d[:, None] & m_in[None, :], other=0.0).to(tl.float32)
    if HAS_MASK:
        b_x *= tl.load(mask_ptr + i_b * length + o_src, mask=m_in, other=0.0)[None, :]
    if HAS_H0:
        m_h = (o_src < 0) & (o_src >= 1 - W)
        p_h = h0_ptr + i_b.to(tl.int64) * dim * (W - 1) + o_d[:, None] * (W - 1) + (o_src + W - 1)[None, :]
        b_x += tl.load(p_h, mask=m_d[:, None] & m_h[None, :], other=0.0).to(tl.float32)
    return b_x


@triton.jit
def _conv_pre(x_ptr, w_ptr, bias_ptr, h0_ptr, seq_ptr, mask_ptr, i_b, o_d, m_d, o_t, dim, length,
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
        b_x = _tap_input(x_ptr, h0_ptr, mask_ptr, i_b, o_d, m_d, o_src, dim, length, W, HAS_H0, HAS_MASK)
        if k < W - 1:
            b_x *= _same_doc(seq_ptr, i_b, o_src, o_t, m_t, length, HAS_SEQ)[None, :]
        b_acc += b_w[:, None] * b_x
    return b_acc


@triton.jit
def _grad_pre(x_ptr, w_ptr, bias_ptr, h0_ptr, seq_ptr, mask_ptr, go_ptr, i_b, o_d, m_d, o_t, dim, length,
              W: tl.constexpr, SILU: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr,
              HAS_SEQ: tl.constexpr, HAS_MASK: tl.constexpr, BD: tl.constexpr, BL: tl.constexpr):
    """d loss / d pre-activation at steps o_t, [BD, BL] fp32, zero outside [0, length)."""
    m_t = (o_t >= 0) & (o_t < length)
    p_go = go_ptr + i_b.to(tl.int64) * dim * length + o_d[:, None] * length + o_t[None, :]
    b_g = tl.load(p_go, mask=m_d[:, None] & m_t[None, :], other=0.0).to(tl.float32)
    if HAS_MASK:
        b_g *= tl.load(mask_ptr + i_b * length + o_t, mask=m_t, other=0.0)[None, :]
    if SILU:
        b_pre = _conv_pre(x_ptr, w_ptr, bias_ptr, h0_ptr, seq_ptr, mask_ptr, i_b, o_d, m_d, o_t, dim, length,
                          W, HAS_BIAS, HAS_H0, HAS_SEQ, HAS_MASK, BD, BL)
        b_sig = tl.sigmoid(b_pre)
        b_g *= b_sig * (1.0 + b_pre * (1.0 - b_sig))
    return b_g


@triton.jit
def _conv_fwd_kernel(x_ptr, w_ptr, bias_ptr, h0_ptr, seq_ptr, mask_ptr, out_ptr, dim, length,
                     W: tl.constexpr, SILU: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr,
                     HAS_SEQ: tl.constexpr, HAS_MASK: tl.constexpr, BD: tl.constexpr, BL: tl.constexpr):
    i_l, i_d, i_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    o_t = i_l * BL + tl.arange(0, BL)
    o_d = i_d * BD + tl.arange(0, BD)
    m_d = o_d < dim
    m_t = o_t < length
    b_out = _conv_pre(x_ptr, w_ptr, bias_ptr, h0_ptr, seq_ptr, mask_ptr, i_b, o_d, m_d, o_t, dim, length,
                      W, HAS_BIAS, HAS_H0, HAS_SEQ, HAS_MASK, BD, BL)  # [BD, BL]
    if SILU:
        b_out = b_out * tl.sigmoid(b_out)
    if HAS_MASK:
        b_out *= tl.load(mask_ptr + i_b * length + o_t, mask=m_t, other=0.0)[None, :]
    p_out = out_ptr + i_b.to(tl.int64) * dim * length + o_d[:, None] * length + o_t[None, :]
    tl.store(p_out, b_out.to(p_out.dtype.element_ty), mask=m_d[:, None] & m_t[None, :])


@triton.jit
def _conv_bwd_kernel(x_ptr, w_ptr, bias_ptr, h0_ptr, seq_ptr, mask_ptr, go_ptr,
                     gx_ptr, gw_ptr, gbias_ptr, gh0_ptr, dim, length, n_tiles,
                     W: tl.constexpr, SILU: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr,
                     HAS_SEQ: tl.constexpr, HAS_MASK: tl.constexpr, BD: tl.constexpr, BL: tl.constexpr):
    i_l, i_d, i_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    o_t = i_l * BL + tl.arange(0, BL)
    o_d = i_d * BD + tl.arange(0, BD)
    m_d = o_d < dim
    m_t = o_t < length
    # weight and bias: this tile's output steps o_t
    b_g = _grad_pre(x_ptr, w_ptr, bias_ptr, h0_ptr, seq_ptr, mask_ptr, go_ptr, i_b, o_d, m_d, o_t, dim, length,
                    W, SILU, HAS_BIAS, HAS_H0, HAS_SEQ, HAS_MASK, BD, BL)  # [BD, BL]
    p_part = (i_b * n_tiles + i_l) * dim + o_d  # per-tile partial sums, (batch * tiles, dim[, W])
    if HAS_BIAS:
        tl.store(gbias_ptr + p_part, tl.sum(b_g, axis=1), mask=m_d)
    for k in tl.static_range(W):
        o_src = o_t - (W - 1) + k
        b_x = _tap_input(x_ptr, h0_ptr, mask_ptr, i_b, o_d, m_d, o_src, dim, length, W, HAS_H0, HAS_MASK)
        b_gk = b_g
        if k < W - 1:
            b_gk = b_g * _same_doc(seq_ptr, i_b, o_src, o_t, m_t, length, HAS_SEQ)[None, :]
        tl.store(gw_ptr + p_part * W + k, tl.sum(b_gk * b_x, axis=1), mask=m_d)
    if HAS_H0:
        if i_l == 0:
            # the initial state's slot j feeds the output at step j - k through tap k (for k <= j)
            for j in tl.static_range(W - 1):
                b_gh = tl.zeros([BD], dtype=tl.float32)
                for k in tl.static_range(j + 1):
                    b_col = tl.sum(tl.where((o_t == j - k)[None, :], b_g, 0.0), axis=1)
                    if HAS_SEQ:
                        s_0 = tl.load(seq_ptr + i_b * length)
                        s_t = tl.load(seq_ptr + i_b * length + j - k, mask=j - k < length, other=0)
                        b_col = tl.where(s_0 == s_t, b_col, 0.0)
                    b_gh += b_col * tl.load(w_ptr + o_d * W + k, mask=m_d, other=0.0).to(tl.float32)
                tl.store(gh0_ptr + i_b.to(tl.int64) * dim * (W - 1) + o_d * (W - 1) + j, b_gh, mask=m_d)
    # input: x[s] feeds the outputs at s + W - 1 - k through tap k
    b_gx = tl.zeros([BD, BL], dtype=tl.float32)
    for k in tl.static_range(W):
        o_out = o_t + (W - 1) - k
        b_w = tl.load(w_ptr + o_d * W + k, mask=m_d, other=0.0).to(tl.float32)
        b_go = _grad_pre(x_ptr, w_ptr, bias_ptr, h0_ptr, seq_ptr, mask_ptr, go_ptr, i_b, o_d, m_d, o_out, dim,
                         length, W, SILU, HAS_BIAS, HAS_H0, HAS_SEQ, HAS_MASK, BD, BL)
        if k < W - 1:
            b_go *= _same_doc(seq_ptr, i_b, o_t, o_out, o_out < length, length, HAS_SEQ)[None, :]
        b_gx += b_w[:, None] * b_go
    if HAS_MASK:
        b_gx *= tl.load(mask_ptr + i_b * length + o_t, mask=m_t, other=0.0)[None, :]
    p_gx = gx_ptr + i_b.to(tl.int64) * dim * length + o_d[:, None] * length + o_t[None, :]
    tl.store(p_gx, b_gx.to(p_gx.dtype.element_ty), mask=m_d[:, None] & m_t[None, :])


def _launch(p: ConvInputs):
    batch, dim, length = p.x.shape
    BL = min(256, max(16, triton.next_power_of_2(length)))
    BD = max(1, min(16, 4096 // BL, triton.next_power_of_2(dim)))
    grid = (triton.cdiv(length, BL), triton.cdiv(dim, BD), batch)
    t = dict(x=p.x.contiguous(), w=p.weight.contiguous(), bias=None if p.bias is None else p.bias.contiguous(),
             h0=None if p.initial_state is None else p.initial_state.contiguous(),
             seq=None if p.seq_idx is None else p.seq_idx.to(torch.int32).contiguous(),
             mask=None if p.mask is None else p.mask.to(torch.float32).contiguous())
    flags = dict(W=p.width, SILU=p.activation == "silu", HAS_BIAS=t["bias"] is not None, HAS_H0=t["h0"] is not None,
                 HAS_SEQ=t["seq"] is not None, HAS_MASK=t["mask"] is not None, BD=BD, BL=BL, num_warps=4)
    return t, grid, flags


def _conv_fwd(p: ConvInputs) -> torch.Tensor:
    t, grid, flags = _launch(p)
    out = torch.empty_like(t["x"])
    batch, dim, length = p.x.shape
    _conv_fwd_kernel[grid](t["x"], t["w"], t["bias"], t["h0"], t["seq"], t["mask"], out, dim, length, **flags)
    return out


def _conv_bwd(p: ConvInputs, g_out: torch.Tensor):
    t, grid, flags = _launch(p)
    batch, dim, length = p.x.shape
    n_tiles = grid[0]
    dev, f32 = p.x.device, torch.float32
    g_x = torch.empty_like(t["x"])
    g_w = torch.empty(batch * n_tiles, dim, p.width, device=dev, dtype=f32)
    g_bias = torch.empty(batch * n_tiles, dim, device=dev, dtype=f32) if t["bias"] is not None else None
    g_h0 = torch.empty(batch, dim, p.width - 1, device=dev, dtype=f32) if t["h0"] is not None else None
    _conv_bwd_kernel[grid](t["x"], t["w"], t["bias"], t["h0"], t["seq"], t["mask"], g_out.contiguous(),
                           g_x, g_w, g_bias, g_h0, dim, length, n_tiles, **flags)
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
    """Returns the conv output (batch, dim, L) in x's dtype, same semantics as ``reference.causal_conv1d_reference``."""
    if p.x.shape[2] == 0:
        return torch.empty_like(p.x)
    if torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (p.x, p.weight, p.bias, p.initial_state)
    ):
        return _TritonConv.apply(p, p.x, p.weight, p.bias, p.initial_state)
    return _conv_fwd(p)
