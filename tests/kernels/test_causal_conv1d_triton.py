"""Triton causal conv1d vs the fp32 reference loop: output and every gradient.

On a CPU these run through Triton's interpreter (see conftest.py) at tiny sizes;
the ``gpu`` cases run at real lengths on CUDA.
"""
import pytest
import torch

from mambatune.kernels.causal_conv1d import causal_conv1d

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def check(assert_close, batch, dim, length, width, bias=True, activation="silu", seq=False, mask=False, h0=False,
          dtype=torch.float32, seed=0, tol=1e-4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, dim, length, generator=g).to(dtype).to(DEVICE)
    w = torch.randn(dim, 1, width, generator=g).to(DEVICE)  # nn.Conv1d layout
    b = torch.randn(dim, generator=g).to(DEVICE) if bias else None
    state = torch.randn(batch, dim, width - 1, generator=g).to(DEVICE) if h0 else None
    seq_idx = torch.cumsum((torch.rand(batch, length, generator=g) < 0.1).int(), 1).to(DEVICE) if seq else None
    pad = (torch.rand(batch, length, generator=g) > 0.2).to(DEVICE) if mask else None
    g_out = torch.randn(batch, dim, length, generator=g).to(DEVICE)
    results = {}
    for backend in ("triton", "reference"):
        leaves = [None if t is None else t.clone().requires_grad_(True) for t in (x, w, b, state)]
        out = causal_conv1d(leaves[0], leaves[1], leaves[2], activation, seq_idx, pad, leaves[3], backend=backend)
        (out.float() * g_out).sum().backward()
        results[backend] = [out] + [None if t is None else t.grad for t in leaves]
    for name, got, ref in zip(("out", "dx", "dweight", "dbias", "dinitial_state"), results["triton"], results["reference"]):
        assert_close(name, got, ref, tol)


CPU_CASES = {
    "w4-all-options": dict(batch=2, dim=5, length=37, width=4, seq=True, mask=True, h0=True),
    "w3-no-act": dict(batch=1, dim=3, length=20, width=3, activation=None, bias=False, h0=True),
    "w2-seq": dict(batch=2, dim=2, length=9, width=2, seq=True),
    "w1-mask": dict(batch=1, dim=2, length=5, width=1, mask=True),
    "length-1": dict(batch=1, dim=2, length=1, width=4, h0=True, seq=True),
    "bf16": dict(batch=1, dim=4, length=16, width=4, dtype=torch.bfloat16, mask=True, tol=1e-2),
}


@pytest.mark.parametrize("case", list(CPU_CASES))
def test_conv_matches_reference_small(case, nan_empty, assert_close):
    check(assert_close, **CPU_CASES[case])


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("length", [1, 63, 1000])
@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("options", ["plain", "all"])
def test_conv_matches_reference_gpu(length, width, options, nan_empty, assert_close):
    kw = dict(seq=True, mask=True, h0=True) if options == "all" else dict(bias=False, activation=None)
    check(assert_close, 2, 200, length, width, seed=length + width, **kw)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_conv_half_gpu(dtype, nan_empty, assert_close):
    check(assert_close, 2, 200, 1000, 4, seq=True, mask=True, h0=True, dtype=dtype, tol=1e-2)
