"""Fused residual add + RMSNorm / LayerNorm in Triton: forward and backward kernels.

Rows are the flattened leading axes of (..., d); a program owns a [BM, BN] tile of BM whole rows
(BN = d rounded up to a power of two), so every reduction is over one row held in registers.

Forward, one program per tile: load x (+ residual) in fp32, store residual_out in its dtype, normalize
the stored value (so the norm sees exactly the residual the next block reads), store normed and each
row's rstd (and mean, LayerNorm) for the backward.

Backward: a fixed number of programs (``BWD_PROGRAMS``, fewer when there are fewer tiles), each walking
a run of consecutive tiles. Per tile it recomputes xhat from the saved residual_out and rstd, forms

    wdy = dy * weight;  dr = rstd * (wdy - xhat * mean(xhat * wdy) [- mean(wdy)]) + d residual_out

and stores dr as the gradient of x and of residual (each in its own dtype). The weight and bias
gradients, sum over rows of dy * xhat and dy, are accumulated in registers across the run and stored
once per program into a (programs, d) fp32 buffer that the host sums: no atomics.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .spec import MAX_TRITON_DIM

# programs of the backward; each reduces a run of tiles into one row of the weight-gradient buffer
BWD_PROGRAMS = 1024


@triton.jit
def _add_norm_fwd_kernel(x_ptr, res_ptr, w_ptr, b_ptr, y_ptr, res_out_ptr, mean_ptr, rstd_ptr,
                         n_rows, n_cols, sx, sres, sy, sro, eps,
                         IS_RMS: tl.constexpr, HAS_RES: tl.constexpr, HAS_BIAS: tl.constexpr,
                         BM: tl.constexpr, BN: tl.constexpr):
    i_m = tl.program_id(0)
    o_m = (i_m * BM + tl.arange(0, BM)).to(tl.int64)
    o_n = tl.arange(0, BN)
    m_m = o_m < n_rows
    m_n = o_n < n_cols
    m_mn = m_m[:, None] & m_n[None, :]
    b_x = tl.load(x_ptr + o_m[:, None] * sx + o_n[None, :], mask=m_mn, other=0.0).to(tl.float32)  # [BM, BN]
    if HAS_RES:
        b_x += tl.load(res_ptr + o_m[:, None] * sres + o_n[None, :], mask=m_mn, other=0.0).to(tl.float32)
    b_r = b_x.to(res_out_ptr.dtype.element_ty)
    tl.store(res_out_ptr + o_m[:, None] * sro + o_n[None, :], b_r, mask=m_mn)
    b_r = b_r.to(tl.float32)
    if IS_RMS:
        b_xc = b_r
    else:
        b_mean = tl.sum(b_r, axis=1) / n_cols  # [BM]
        tl.store(mean_ptr + o_m, b_mean, mask=m_m)
        b_xc = tl.where(m_n[None, :], b_r - b_mean[:, None], 0.0)
    b_rstd = 1.0 / tl.sqrt(tl.sum(b_xc * b_xc, axis=1) / n_cols + eps)  # [BM]
    tl.store(rstd_ptr + o_m, b_rstd, mask=m_m)
    b_y = b_xc * b_rstd[:, None] * tl.load(w_ptr + o_n, mask=m_n, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        b_y += tl.load(b_ptr + o_n, mask=m_n, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + o_m[:, None] * sy + o_n[None, :], b_y.to(y_ptr.dtype.element_ty), mask=m_mn)


@triton.jit
def _add_norm_bwd_kernel(res_out_ptr, w_ptr, mean_ptr, rstd_ptr, dy_ptr, dres_out_ptr, dx_ptr, dres_ptr,
                         dw_ptr, db_ptr, n_rows, n_cols, tiles_per_prog, sro, sdy, sdro, sdx, sdres,
                         IS_RMS: tl.constexpr, HAS_DRES_OUT: tl.constexpr, HAS_DRES: tl.constexpr,
                         HAS_BIAS: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
    i_p = tl.program_id(0)
    o_n = tl.arange(0, BN)
    m_n = o_n < n_cols
    b_w = tl.load(w_ptr + o_n, mask=m_n, other=0.0).to(tl.float32)  # [BN]
    b_dw = tl.zeros([BN], dtype=tl.float32)
    b_db = tl.zeros([BN], dtype=tl.float32)
    for j in range(0, tiles_per_prog):
        o_m = ((i_p * tiles_per_prog + j) * BM + tl.arange(0, BM)).to(tl.int64)
        m_m = o_m < n_rows
        m_mn = m_m[:, None] & m_n[None, :]
        b_r = tl.load(res_out_ptr + o_m[:, None] * sro + o_n[None, :], mask=m_mn, other=0.0).to(tl.float32)
        b_rstd = tl.load(rstd_ptr + o_m, mask=m_m, other=0.0)  # [BM]
        if IS_RMS:
            b_xhat = b_r * b_rstd[:, None]  # [BM, BN], zero outside the tile
        else:
            b_mean = tl.load(mean_ptr + o_m, mask=m_m, other=0.0)
            b_xhat = tl.where(m_mn, (b_r - b_mean[:, None]) * b_rstd[:, None], 0.0)
        b_dy = tl.load(dy_ptr + o_m[:, None] * sdy + o_n[None, :], mask=m_mn, other=0.0).to(tl.float32)
        b_dw += tl.sum(b_dy * b_xhat, axis=0)
        if HAS_BIAS:
            b_db += tl.sum(b_dy, axis=0)
        b_wdy = b_dy * b_w[None, :]
        b_c1 = tl.sum(b_xhat * b_wdy, axis=1) / n_cols  # [BM]
        if IS_RMS:
            b_dr = (b_wdy - b_xhat * b_c1[:, None]) * b_rstd[:, None]
        else:
            b_c2 = tl.sum(b_wdy, axis=1) / n_cols
            b_dr = (b_wdy - b_xhat * b_c1[:, None] - b_c2[:, None]) * b_rstd[:, None]
        if HAS_DRES_OUT:
            b_dr += tl.load(dres_out_ptr + o_m[:, None] * sdro + o_n[None, :], mask=m_mn, other=0.0).to(tl.float32)
        tl.store(dx_ptr + o_m[:, None] * sdx + o_n[None, :], b_dr.to(dx_ptr.dtype.element_ty), mask=m_mn)
        if HAS_DRES:
            tl.store(dres_ptr + o_m[:, None] * sdres + o_n[None, :], b_dr.to(dres_ptr.dtype.element_ty), mask=m_mn)
    tl.store(dw_ptr + i_p * n_cols + o_n, b_dw, mask=m_n)
    if HAS_BIAS:
        tl.store(db_ptr + i_p * n_cols + o_n, b_db, mask=m_n)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(..., d) as (rows, d) with unit stride along d (a copy only where the layout needs one)."""
    t = t.reshape(-1, t.shape[-1])
    return t if t.stride(-1) == 1 else t.contiguous()


def _tile(n_cols: int) -> dict:
    """[BM, BN] and warps: a whole row in BN, rows stacked to about 4096 elements per tile."""
    BN = triton.next_power_of_2(n_cols)
    BM = max(1, min(16, 4096 // BN))
    return dict(BM=BM, BN=BN, num_warps=min(max(BM * BN // 512, 1), 8))


def _add_norm_fwd(x, weight, bias, residual, eps, rms, residual_dtype, out_dtype):
    n_cols = x.shape[-1]
    x2 = _rows(x)
    res2 = None if residual is None else _rows(residual)
    n_rows = x2.shape[0]
    dev = x.device
    y = torch.empty(n_rows, n_cols, device=dev, dtype=out_dtype)
    res_out = torch.empty(n_rows, n_cols, device=dev, dtype=residual_dtype)
    mean = None if rms else torch.empty(n_rows, device=dev, dtype=torch.float32)
    rstd = torch.empty(n_rows, device=dev, dtype=torch.float32)
    tile = _tile(n_cols)
    grid = (triton.cdiv(n_rows, tile["BM"]),)
    _add_norm_fwd_kernel[grid](x2, res2, weight, bias, y, res_out, mean, rstd, n_rows, n_cols,
                               x2.stride(0), 0 if res2 is None else res2.stride(0), y.stride(0), res_out.stride(0),
                               eps, IS_RMS=rms, HAS_RES=res2 is not None, HAS_BIAS=bias is not None, **tile)
    return y, res_out, mean, rstd


def _add_norm_bwd(res_out, weight, bias, mean, rstd, dy, dres_out, rms, x_dtype, residual_dtype):
    """Gradients (dx (rows, d) in x_dtype, dresidual in residual_dtype or None, dweight fp32, dbias fp32 or None)."""
    n_rows, n_cols = res_out.shape
    dev, f32 = res_out.device, torch.float32
    tile = _tile(n_cols)
    n_tiles = triton.cdiv(n_rows, tile["BM"])
    tiles_per_prog = triton.cdiv(n_tiles, max(1, min(n_tiles, BWD_PROGRAMS)))
    n_progs = triton.cdiv(n_tiles, tiles_per_prog)
    dy = _rows(dy)
    dres_out = None if dres_out is None else _rows(dres_out)
    dx = torch.empty(n_rows, n_cols, device=dev, dtype=x_dtype)
    dres = None if residual_dtype is None else torch.empty(n_rows, n_cols, device=dev, dtype=residual_dtype)
    dw = torch.empty(n_progs, n_cols, device=dev, dtype=f32)
    db = None if bias is None else torch.empty(n_progs, n_cols, device=dev, dtype=f32)
    _add_norm_bwd_kernel[(n_progs,)](
        res_out, weight, mean, rstd, dy, dres_out, dx, dres, dw, db, n_rows, n_cols, tiles_per_prog,
        res_out.stride(0), dy.stride(0), 0 if dres_out is None else dres_out.stride(0), dx.stride(0),
        0 if dres is None else dres.stride(0),
        IS_RMS=rms, HAS_DRES_OUT=dres_out is not None, HAS_DRES=dres is not None, HAS_BIAS=bias is not None, **tile)
    return dx, dres, dw.sum(0), None if db is None else db.sum(0)


class _AddNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, residual, eps, rms, residual_dtype, out_dtype):
        y, res_out, mean, rstd = _add_norm_fwd(x, weight, bias, residual, eps, rms, residual_dtype, out_dtype)
        ctx.save_for_backward(res_out, weight, bias, mean, rstd)
        ctx.rms = rms
        ctx.x_dtype = x.dtype
        ctx.residual_dtype = None if residual is None else residual.dtype
        ctx.shape = x.shape
        ctx.set_materialize_grads(False)
        return y.view(x.shape), res_out.view(x.shape)

    @staticmethod
    def backward(ctx, dy, dres_out):
        res_out, weight, bias, mean, rstd = ctx.saved_tensors
        if dy is None:  # only residual_out was used downstream
            dy = torch.zeros(res_out.shape, device=res_out.device, dtype=res_out.dtype)
        dx, dres, dw, db = _add_norm_bwd(res_out, weight, bias, mean, rstd, dy, dres_out, ctx.rms, ctx.x_dtype,
                                         ctx.residual_dtype if ctx.needs_input_grad[3] else None)
        shape = ctx.shape
        return (dx.view(shape) if ctx.needs_input_grad[0] else None,
                dw.to(weight.dtype) if ctx.needs_input_grad[1] else None,
                db.to(bias.dtype) if bias is not None and ctx.needs_input_grad[2] else None,
                dres.view(shape) if dres is not None else None,
                None, None, None, None)


def add_norm_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    residual: torch.Tensor | None, eps: float, rms: bool, residual_dtype: torch.dtype,
                    out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as ``reference.add_norm_reference``: (normed in out_dtype, residual_out in residual_dtype)."""
    if x.shape[-1] > MAX_TRITON_DIM:
        raise ValueError(f"add_norm backend 'triton' holds a row in registers: d = {x.shape[-1]} is over "
                         f"{MAX_TRITON_DIM}; use backend='reference'")
    if x.numel() == 0:
        return (torch.empty(x.shape, device=x.device, dtype=out_dtype),
                torch.empty(x.shape, device=x.device, dtype=residual_dtype))
    weight = weight.contiguous()
    bias = None if bias is None else bias.contiguous()
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias, residual)):
        return _AddNorm.apply(x, weight, bias, residual, eps, rms, residual_dtype, out_dtype)
    y, res_out, _, _ = _add_norm_fwd(x, weight, bias, residual, eps, rms, residual_dtype, out_dtype)
    return y.view(x.shape), res_out.view(x.shape)
