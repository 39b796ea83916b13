"""Fused residual add + RMSNorm / LayerNorm: the Triton kernels against the PyTorch reference, output,
residual_out and every gradient, and the reference against the model's own norm.

On a CPU the Triton cases run through Triton's interpreter (see conftest.py) at tiny sizes; the ``gpu``
cases run at real sizes on CUDA. Every loss also reads residual_out, so the gradient flowing into the
residual stream (what the next block sends back) is checked being added to the norm's. bf16 cases
allow 1e-2: Triton's interpreter (Triton 3.x) truncates fp32 -> bf16 stores where the GPU rounds to
nearest, so on a CPU the kernel's bf16 outputs sit up to one bf16 step from the reference's.
"""
import pytest
import torch

from mambatune.kernels.norm import BACKENDS, add_layer_norm, add_rms_norm

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def check(assert_close, shape, dtype=torch.float32, residual=True, residual_in_fp32=False, rms=True,
          use_normed=True, use_residual_out=True, out_dtype=None, seed=0, tol=None):
    """Runs triton and reference on the same inputs; compares normed, residual_out and every gradient."""
    tol = tol if tol is not None else (1e-5 if dtype == torch.float32 else 1e-2)
    g = torch.Generator().manual_seed(seed)
    d = shape[-1]
    res_dtype = torch.float32 if residual_in_fp32 else dtype  # the model's stream: fp32 when residual_in_fp32
    x = torch.randn(*shape, generator=g).to(dtype).to(DEVICE)
    res = (2 * torch.randn(*shape, generator=g)).to(res_dtype).to(DEVICE) if residual else None
    w = (1 + 0.3 * torch.randn(d, generator=g)).to(DEVICE)  # fp32, as the model's norm keeps it
    b = (0.1 * torch.randn(d, generator=g)).to(DEVICE) if not rms else None
    g_y = torch.randn(*shape, generator=g).to(DEVICE)
    g_r = torch.randn(*shape, generator=g).to(DEVICE)
    results = {}
    for backend in ("triton", "reference"):
        leaves = [None if t is None else t.clone().requires_grad_(True) for t in (x, w, b, res)]
        lx, lw, lb, lres = leaves
        if rms:
            y, r = add_rms_norm(lx, lw, lres, eps=1e-5, residual_in_fp32=residual_in_fp32, out_dtype=out_dtype,
                                backend=backend)
        else:
            y, r = add_layer_norm(lx, lw, lb, lres, eps=1e-5, residual_in_fp32=residual_in_fp32,
                                  out_dtype=out_dtype, backend=backend)
        loss = 0
        if use_normed:
            loss = loss + (y.float() * g_y).sum()
        if use_residual_out:
            loss = loss + (r.float() * g_r).sum()
        loss.backward()
        results[backend] = [y, r] + [None if t is None else t.grad for t in leaves]
    names = ("normed", "residual_out", "dx", "dweight", "dbias", "dresidual")
    for name, got, want in zip(names, results["triton"], results["reference"]):
        if not use_normed and name in ("dweight", "dbias") and got is not None:
            # normed unread: autograd leaves the reference's weight outside the graph, the kernel gives zeros
            assert want is None
            want = torch.zeros_like(got)
        assert_close(name, got, want, tol)
    return results["triton"]


# (rows, d): odd widths (48, 100 and 768 need masked columns or a full tile) and odd row counts
CPU_SHAPES = [(1, 48), (7, 100), (5, 768), (33, 48)]


@pytest.mark.parametrize("shape", CPU_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("residual,residual_in_fp32", [(True, True), (True, False), (False, True), (False, False)],
                         ids=["res-fp32", "res", "nores-fp32", "nores"])
def test_add_rms_norm_matches_reference(shape, dtype, residual, residual_in_fp32, nan_empty, assert_close):
    y, r = check(assert_close, shape, dtype, residual, residual_in_fp32)[:2]
    assert y.dtype == dtype
    assert r.dtype == (torch.float32 if residual_in_fp32 else dtype)


@pytest.mark.parametrize("shape", [(7, 100), (3, 768)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("residual", [True, False], ids=["res", "nores"])
def test_add_layer_norm_matches_reference(shape, dtype, residual, nan_empty, assert_close):
    check(assert_close, shape, dtype, residual, residual_in_fp32=True, rms=False)


@pytest.mark.parametrize("rms", [True, False], ids=["rms", "layer"])
def test_backward_runs_of_tiles(rms, monkeypatch, nan_empty, assert_close):
    """Few backward programs, each reducing several tiles (and a ragged last one) into its weight partials."""
    from mambatune.kernels.norm import triton as norm_triton

    monkeypatch.setattr(norm_triton, "BWD_PROGRAMS", 2)
    check(assert_close, (37, 48), residual_in_fp32=True, rms=rms)  # 3 tiles of 16 rows: runs of 2 and 1
    check(assert_close, (9, 100), torch.bfloat16, rms=rms)


@pytest.mark.parametrize("use_normed,use_residual_out", [(True, False), (False, True)],
                         ids=["normed-only", "residual-only"])
def test_one_output_unused(use_normed, use_residual_out, nan_empty, assert_close):
    """The last block's residual_out, or a normed output nobody reads, gets no gradient: still right."""
    check(assert_close, (5, 100), residual_in_fp32=True, use_normed=use_normed, use_residual_out=use_residual_out)


def test_leading_axes_layout_and_out_dtype(nan_empty, assert_close):
    """(batch, L, d) inputs, x a strided slice of a wider tensor (rows not adjacent), normed in another dtype."""
    g = torch.Generator().manual_seed(3)
    wide = torch.randn(2, 5, 2 * 48, generator=g).to(DEVICE)
    x = wide[..., :48]
    res = torch.randn(2, 5, 48, generator=g).to(DEVICE)
    w = torch.randn(48, generator=g).to(DEVICE)
    outs = [add_rms_norm(x, w, res, residual_in_fp32=True, out_dtype=torch.bfloat16, backend=b)
            for b in ("triton", "reference")]
    for name, got, want in zip(("normed", "residual_out"), *outs):
        assert got.shape == (2, 5, 48)
        assert_close(name, got, want, 1e-2 if name == "normed" else 1e-6)
    assert outs[0][0].dtype == torch.bfloat16


def test_no_grad_path(nan_empty, assert_close):
    g = torch.Generator().manual_seed(4)
    x, res, w = torch.randn(6, 100, generator=g), torch.randn(6, 100, generator=g), torch.randn(100, generator=g)
    with torch.no_grad():
        got = add_rms_norm(x.to(DEVICE), w.to(DEVICE), res.to(DEVICE), backend="triton")
    want = add_rms_norm(x, w, res, backend="reference")
    for name, a, b in zip(("normed", "residual_out"), got, want):
        assert not a.requires_grad
        assert_close(name, a.cpu(), b, 1e-5)


def test_reference_is_the_models_block():
    """add_rms_norm(mixer_out, w, residual, residual_in_fp32=True) is exactly what the model computes now:
    the next block's residual ``residual + out`` in fp32 and its norm ``RMSNorm(hidden)``."""
    from mambatune.core.model import RMSNorm

    g = torch.Generator().manual_seed(5)
    d = 100
    out = torch.randn(2, 7, d, generator=g).to(torch.bfloat16)  # a mixer's output under autocast
    residual = 3 * torch.randn(2, 7, d, generator=g)  # the fp32 stream
    norm = RMSNorm(d, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.3 * torch.randn(d, generator=g))
    hidden = residual + out
    normed, residual_out = add_rms_norm(out, norm.weight, residual, eps=norm.eps, residual_in_fp32=True,
                                        out_dtype=torch.float32, backend="reference")
    torch.testing.assert_close(residual_out, hidden, rtol=0, atol=0)
    torch.testing.assert_close(normed, norm(hidden.to(norm.weight.dtype)), rtol=1e-6, atol=1e-6)


def test_layer_norm_reference_is_torchs():
    g = torch.Generator().manual_seed(6)
    x, w, b = torch.randn(4, 30, generator=g), torch.randn(30, generator=g), torch.randn(30, generator=g)
    normed, _ = add_layer_norm(x, w, b, eps=1e-5, backend="reference")
    torch.testing.assert_close(normed, torch.nn.functional.layer_norm(x, (30,), w, b, 1e-5))


def test_bad_inputs_raise():
    x, w = torch.randn(3, 8), torch.randn(8)
    with pytest.raises(ValueError, match="unknown add_norm backend"):
        add_rms_norm(x, w, backend="apex")
    with pytest.raises(ValueError, match="weight must have shape"):
        add_rms_norm(x, torch.randn(7))
    with pytest.raises(ValueError, match="residual must have"):
        add_rms_norm(x, w, torch.randn(3, 9))
    with pytest.raises(ValueError, match="bias must have"):
        add_layer_norm(x, w, torch.randn(2))
    assert BACKENDS == ("auto", "triton", "reference")


def test_auto_is_reference_on_cpu():
    x, w = torch.randn(3, 8), torch.randn(8)
    got = add_rms_norm(x, w, x, backend="auto")
    want = add_rms_norm(x, w, x, backend="reference")
    torch.testing.assert_close(got, want, rtol=0, atol=0)


# -- GPU: real widths and row counts ---------------------------------------------------------------

GPU_SHAPES = [(4096, 768), (2000, 1536), (1023, 2560), (517, 1000), (64, 4096), (3, 8192)]


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_add_rms_norm_gpu(shape, dtype, nan_empty, assert_close):
    check(assert_close, shape, dtype, residual=True, residual_in_fp32=dtype != torch.float32, seed=shape[0])


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("residual,residual_in_fp32", [(False, True), (False, False), (True, False)],
                         ids=["nores-fp32", "nores", "res"])
def test_add_rms_norm_options_gpu(residual, residual_in_fp32, nan_empty, assert_close):
    check(assert_close, (3000, 768), torch.bfloat16, residual, residual_in_fp32)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_add_layer_norm_gpu(dtype, nan_empty, assert_close):
    check(assert_close, (4096, 1536), dtype, residual=True, residual_in_fp32=True, rms=False)


@pytest.mark.gpu
@gpu
def test_many_rows_per_program_gpu(nan_empty, assert_close):
    """131072 rows: each of the backward's programs reduces a long run of tiles into its partial sums."""
    check(assert_close, (131072, 768), torch.bfloat16, residual=True, residual_in_fp32=True)
