"""Triton causal conv1d vs the fp32 reference loop: output and every gradient.

On a CPU these run through Triton's interpreter (see conftest.py) at tiny sizes;
the ``gpu`` cases run at real lengths on CUDA, where lengths of 256 and more are
compared with the ``chunked`` backend on fp32 copies (checked against the
reference loop in test_causal_conv1d.py). ``layout="channels_last"`` passes x as
the mixer does: the transpose of a slice of a (batch, L, 2 * dim) tensor.
"""
import pytest
import torch

from mambatune.kernels.causal_conv1d import causal_conv1d

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def reference_for(length: int) -> str:
    """The backend a GPU case is checked against: the loop for short lengths, else chunked in fp32."""
    return "reference" if length < 256 else "chunked"


def check(assert_close, batch, dim, length, width, bias=True, activation="silu", seq=False, mask=False, h0=False,
          dtype=torch.float32, seed=0, tol=1e-4, layout="contiguous", ref="reference"):
    g = torch.Generator().manual_seed(seed)
    if layout == "channels_last":  # the leaf is the wide (batch, L, 2 * dim) tensor; x a view of it
        x = torch.randn(batch, length, 2 * dim, generator=g).to(dtype).to(DEVICE)
    else:
        x = torch.randn(batch, dim, length, generator=g).to(dtype).to(DEVICE)
    w = torch.randn(dim, 1, width, generator=g).to(DEVICE)  # nn.Conv1d layout
    b = torch.randn(dim, generator=g).to(DEVICE) if bias else None
    state = torch.randn(batch, dim, width - 1, generator=g).to(DEVICE) if h0 else None
    seq_idx = torch.cumsum((torch.rand(batch, length, generator=g) < 0.1).int(), 1).to(DEVICE) if seq else None
    pad = (torch.rand(batch, length, generator=g) > 0.2).to(DEVICE) if mask else None
    g_out = torch.randn(batch, dim, length, generator=g).to(DEVICE)
    results = {}
    for backend in ("triton", ref):
        up = backend == "chunked"  # the long-length ground truth runs in fp32, its results cast back
        leaves = [None if t is None else (t.float() if up else t).clone().requires_grad_(True) for t in (x, w, b, state)]
        x_in = leaves[0][..., :dim].transpose(1, 2) if layout == "channels_last" else leaves[0]
        out = causal_conv1d(x_in, leaves[1], leaves[2], activation, seq_idx, pad, leaves[3], backend=backend)
        if backend == "triton" and layout == "channels_last" and dim > 1:
            assert out.transpose(1, 2).is_contiguous(), "a channels-last x must give a channels-last output"
        (out.float() * g_out).sum().backward()
        # an empty initial state (width 1) has no values to compare: chunked leaves its grad None
        results[backend] = [out.to(dtype)] + [None if t is None or t.grad is None or t.numel() == 0
                                              else t.grad.to(r.dtype) for t, r in zip(leaves, (x, w, b, state))]
    for name, got, want in zip(("out", "dx", "dweight", "dbias", "dinitial_state"), results["triton"], results[ref]):
        assert_close(name, got, want, tol)


CPU_CASES = {
    "w4-all-options": dict(batch=2, dim=5, length=37, width=4, seq=True, mask=True, h0=True),
    "w3-no-act": dict(batch=1, dim=3, length=20, width=3, activation=None, bias=False, h0=True),
    "w2-seq": dict(batch=2, dim=2, length=9, width=2, seq=True),
    "w1-mask": dict(batch=1, dim=2, length=5, width=1, mask=True),
    "length-1": dict(batch=1, dim=2, length=1, width=4, h0=True, seq=True),
    "bf16": dict(batch=1, dim=4, length=16, width=4, dtype=torch.bfloat16, mask=True, tol=1e-2),
    "channels-last-w4": dict(batch=2, dim=5, length=37, width=4, seq=True, mask=True, h0=True, layout="channels_last"),
    "channels-last-bf16": dict(batch=1, dim=4, length=16, width=3, dtype=torch.bfloat16, layout="channels_last",
                               tol=1e-2),
}


@pytest.mark.parametrize("case", list(CPU_CASES))
def test_conv_matches_reference_small(case, nan_empty, assert_close):
    check(assert_close, **CPU_CASES[case])


def test_conv_weight_grad_runs_of_tiles(monkeypatch, nan_empty, assert_close):
    """Few weight-gradient programs, each reducing a run of several tiles (as at long lengths)."""
    from mambatune.kernels.causal_conv1d import triton as conv_triton

    monkeypatch.setattr(conv_triton, "WGRAD_PROGRAMS", 2)
    check(assert_close, 1, 3, 70, 4, seq=True, mask=True, h0=True)
    check(assert_close, 1, 6, 70, 3, seq=True, h0=True, layout="channels_last")


# every width with every option; lengths 1, 63 and 1000 (each compiled variant costs seconds, so not the full product)
GPU_CONV_CASES = [(1000, w, "all") for w in (1, 2, 3, 4)] + [(63, w, "all") for w in (1, 3)] + \
    [(63, w, "plain") for w in (2, 4)] + [(1000, 4, "plain"), (1, 4, "all"), (1, 2, "plain")]


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("length,width,options", GPU_CONV_CASES)
def test_conv_matches_reference_gpu(length, width, options, nan_empty, assert_close):
    kw = dict(seq=True, mask=True, h0=True) if options == "all" else dict(bias=False, activation=None)
    check(assert_close, 2, 200, length, width, seed=length + width, ref=reference_for(length), **kw)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_conv_half_gpu(dtype, nan_empty, assert_close):
    check(assert_close, 2, 200, 1000, 4, seq=True, mask=True, h0=True, dtype=dtype, tol=1e-2, ref="chunked")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("length,dtype", [(63, torch.float32), (2048, torch.float32), (2048, torch.bfloat16)])
def test_conv_channels_last_gpu(length, dtype, nan_empty, assert_close):
    check(assert_close, 2, 200, length, 4, seq=True, mask=True, h0=True, dtype=dtype, layout="channels_last",
          tol=1e-4 if dtype == torch.float32 else 1e-2, ref=reference_for(length), seed=length)
