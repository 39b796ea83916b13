"""Triton selective scan vs the fp32 reference loop: output, final state and every gradient.

On a CPU these run through Triton's interpreter (see conftest.py) at tiny sizes;
the ``gpu`` cases run at real lengths on CUDA.
"""
import pytest
import torch

from mambatune.kernels.selective_scan import selective_scan

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def make_inputs(batch, dim, length, n_state, groups=1, time_varying=True, z=True, D=True, bias=True,
                h0=True, seq=False, mask=False, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, dt=dtype):
        return (torch.randn(*shape, generator=g) * scale).to(dt).to(DEVICE)

    x = dict(
        u=rnd(batch, dim, length),
        delta=rnd(batch, dim, length, scale=0.5),
        A=(-0.5 - torch.rand(dim, n_state, generator=g)).to(DEVICE),
        B=rnd(batch, groups, n_state, length) if time_varying else rnd(dim, n_state, dt=torch.float32),
        C=rnd(batch, groups, n_state, length) if time_varying else rnd(dim, n_state, dt=torch.float32),
        D=rnd(dim, dt=torch.float32) if D else None,
        z=rnd(batch, dim, length) if z else None,
        delta_bias=rnd(dim, scale=0.3, dt=torch.float32) if bias else None,
        initial_state=rnd(batch, dim, n_state, dt=torch.float32) if h0 else None,
    )
    seq_idx = torch.cumsum((torch.rand(batch, length, generator=g) < 0.1).int(), 1).to(DEVICE) if seq else None
    pad = (torch.rand(batch, length, generator=g) > 0.2).to(DEVICE) if mask else None
    g_y = rnd(batch, dim, length, dt=torch.float32)
    g_h = rnd(batch, dim, n_state, dt=torch.float32)
    return x, seq_idx, pad, g_y, g_h


def run_backend(backend, x, seq_idx, pad, g_y, g_h, softplus=True):
    leaves = {k: (None if v is None else v.clone().requires_grad_(True)) for k, v in x.items()}
    y, last = selective_scan(
        leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], leaves["D"], leaves["z"],
        delta_bias=leaves["delta_bias"], delta_softplus=softplus, initial_state=leaves["initial_state"],
        return_final_state=True, seq_idx=seq_idx, mask=pad, backend=backend,
    )
    # the loss reads the final state too, so its gradient must flow back through every step
    ((y.float() * g_y).sum() + (last * g_h).sum()).backward()
    return y, last, {k: (None if v is None else v.grad) for k, v in leaves.items()}


def check(assert_close, x, seq_idx, pad, g_y, g_h, tol, softplus=True):
    y, last, grads = run_backend("triton", x, seq_idx, pad, g_y, g_h, softplus)
    y_ref, last_ref, grads_ref = run_backend("reference", x, seq_idx, pad, g_y, g_h, softplus)
    assert_close("y", y, y_ref, tol)
    assert_close("final_state", last, last_ref, tol)
    for name in GRAD_NAMES:
        assert_close(f"d{name}", grads[name], grads_ref[name], tol)


# CPU (interpreter) cases: tiny, few; each covers several options at once.
CPU_CASES = {
    "all-options": dict(batch=2, dim=4, length=21, n_state=5, seq=True, mask=True),
    "groups-2": dict(batch=1, dim=4, length=9, n_state=3, groups=2, D=False, seq=True),
    "groups-per-channel": dict(batch=1, dim=4, length=7, n_state=1, groups=4, bias=False, z=False, mask=True),
    "time-invariant": dict(batch=2, dim=4, length=11, n_state=4, time_varying=False, h0=False),
    "length-1": dict(batch=1, dim=2, length=1, n_state=2, z=False, D=False, bias=False),
    "two-chunks-bf16": dict(batch=1, dim=8, length=40, n_state=16, dtype=torch.bfloat16, seq=True, mask=True),
}


@pytest.mark.parametrize("case", list(CPU_CASES))
def test_scan_matches_reference_small(case, nan_empty, assert_close):
    kw = CPU_CASES[case]
    tol = 2e-2 if kw.get("dtype", torch.float32) != torch.float32 else 1e-4
    check(assert_close, *make_inputs(**kw), tol=tol, softplus=case != "groups-2")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("length", [1, 63, 1000])
@pytest.mark.parametrize("n_state", [1, 16, 24, 64])
def test_scan_matches_reference_gpu(length, n_state, nan_empty, assert_close):
    check(assert_close, *make_inputs(2, 96, length, n_state, seq=True, mask=True, seed=length + n_state), tol=1e-4)


GPU_OPTION_CASES = {
    "plain": dict(z=False, D=False, bias=False, h0=False),
    "groups-3": dict(groups=3),
    "groups-per-channel": dict(groups=96, seq=True),
    "time-invariant": dict(time_varying=False, mask=True),
    "seq-only": dict(seq=True, h0=False),
    "mask-only": dict(mask=True, z=False),
    "n-state-256": dict(n_state=256),
    "n-state-100": dict(n_state=100, seq=True),
    "bf16": dict(dtype=torch.bfloat16, seq=True, mask=True),
    "fp16": dict(dtype=torch.float16, groups=2),
}


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("case", list(GPU_OPTION_CASES))
def test_scan_options_gpu(case, nan_empty, assert_close):
    kw = dict(batch=2, dim=96, length=1000, n_state=16)
    kw.update(GPU_OPTION_CASES[case])
    tol = 2e-2 if kw.get("dtype", torch.float32) != torch.float32 else 1e-4
    check(assert_close, *make_inputs(**kw), tol=tol)


@pytest.mark.gpu
@gpu
def test_auto_backend_is_triton_on_cuda():
    from mambatune.kernels.selective_scan import resolve_backend

    assert resolve_backend("auto", torch.device("cuda")) == "triton"


def test_forward_without_grad_matches(nan_empty, assert_close):
    x, seq_idx, pad, _, _ = make_inputs(1, 4, 13, 3, seq=True, mask=True, seed=3)
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"])
    kw = dict(delta_bias=x["delta_bias"], delta_softplus=True, initial_state=x["initial_state"],
              return_final_state=True, seq_idx=seq_idx, mask=pad)
    with torch.no_grad():
        y, last = selective_scan(*args, backend="triton", **kw)
        y_ref, last_ref = selective_scan(*args, backend="reference", **kw)
    assert_close("y", y, y_ref, 1e-4)
    assert_close("final_state", last, last_ref, 1e-4)
