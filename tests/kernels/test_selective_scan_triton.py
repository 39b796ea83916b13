"""Triton selective scan vs the fp32 reference loop: output, final state and every gradient.

On a CPU these run through Triton's interpreter (see conftest.py) at tiny sizes;
the ``gpu`` cases run at real lengths on CUDA, where lengths of 256 and more are
compared with the ``chunked`` backend on fp32 copies of the inputs (the chunked
backend is itself checked against the reference loop in test_selective_scan.py;
the loop takes seconds per case at L = 1000). Inputs come contiguous and as the
channels-last views the mixer passes (transposes of (batch, L, channels) tensors,
sliced from a wider projection output).
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


def reference_for(length: int) -> str:
    """The backend a GPU case is checked against: the loop for short lengths, else chunked in fp32."""
    return "reference" if length < 256 else "chunked"


def run_ref(ref, x, seq_idx, pad, g_y, g_h, softplus=True):
    """The ground-truth run: the reference loop, or chunked on fp32 copies with results cast back."""
    if ref == "reference":
        return run_backend(ref, x, seq_idx, pad, g_y, g_h, softplus)
    x32 = {k: (None if v is None else v.float()) for k, v in x.items()}
    y, last, grads = run_backend(ref, x32, seq_idx, pad, g_y, g_h, softplus)
    return y.to(x["u"].dtype), last, {k: (None if g is None else g.to(x[k].dtype)) for k, g in grads.items()}


def check(assert_close, x, seq_idx, pad, g_y, g_h, tol, softplus=True, ref="reference"):
    y, last, grads = run_backend("triton", x, seq_idx, pad, g_y, g_h, softplus)
    y_ref, last_ref, grads_ref = run_ref(ref, x, seq_idx, pad, g_y, g_h, softplus)
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
def test_scan_matches_reference_small(case, scan_kernel, nan_empty, assert_close):
    kw = CPU_CASES[case]
    tol = 2e-2 if kw.get("dtype", torch.float32) != torch.float32 else 1e-4
    check(assert_close, *make_inputs(**kw), tol=tol, softplus=case != "groups-2")


@pytest.mark.gpu
@gpu
# lengths 1, 63, 1000 and d_state 1, 16, 24, 64, each at least twice (not the full product: each compiled
# variant costs seconds)
@pytest.mark.parametrize("length,n_state", [(1, 16), (1, 64), (63, 1), (63, 24), (63, 64), (1000, 1), (1000, 16),
                                            (1000, 24)])
def test_scan_matches_reference_gpu(length, n_state, scan_kernel, nan_empty, assert_close):
    check(assert_close, *make_inputs(2, 96, length, n_state, seq=True, mask=True, seed=length + n_state), tol=1e-4,
          ref=reference_for(length))


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
def test_scan_options_gpu(case, scan_kernel, nan_empty, assert_close):
    kw = dict(batch=2, dim=96, length=1000, n_state=16)
    kw.update(GPU_OPTION_CASES[case])
    tol = 2e-2 if kw.get("dtype", torch.float32) != torch.float32 else 1e-4
    check(assert_close, *make_inputs(**kw), tol=tol, ref=reference_for(kw["length"]))


@pytest.mark.gpu
@gpu
def test_auto_backend_is_triton_on_cuda():
    from mambatune.kernels.selective_scan import resolve_backend

    assert resolve_backend("auto", torch.device("cuda")) == "triton"


def test_forward_without_grad_matches(scan_kernel, nan_empty, assert_close):
    x, seq_idx, pad, _, _ = make_inputs(1, 4, 13, 3, seq=True, mask=True, seed=3)
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"])
    kw = dict(delta_bias=x["delta_bias"], delta_softplus=True, initial_state=x["initial_state"],
              return_final_state=True, seq_idx=seq_idx, mask=pad)
    with torch.no_grad():
        y, last = selective_scan(*args, backend="triton", **kw)
        y_ref, last_ref = selective_scan(*args, backend="reference", **kw)
    assert_close("y", y, y_ref, 1e-4)
    assert_close("final_state", last, last_ref, 1e-4)


# -- channels-last views, as the mixer passes them ---------------------------------------------

def make_views(batch, dim, length, n_state, dt_rank=3, dtype=torch.float32, seq=False, mask=False,
               delta_layout="channels_last", seed=0):
    """Base tensors and a function that cuts the scan inputs out of them as views: u and z from one
    (batch, L, 2 * dim) tensor (in_proj's output), B and C from a (batch, L, dt_rank + 2N) one
    (x_proj's), delta from (batch, L, dim), or a contiguous (batch, dim, L) tensor."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, dt=dtype):
        return (torch.randn(*shape, generator=g) * scale).to(dt).to(DEVICE)

    bases = dict(
        xz=rnd(batch, length, 2 * dim),
        dt=rnd(batch, length, dim, scale=0.5) if delta_layout == "channels_last" else rnd(batch, dim, length, scale=0.5),
        xdbl=rnd(batch, length, dt_rank + 2 * n_state),
        A=(-0.5 - torch.rand(dim, n_state, generator=g)).to(DEVICE),
        D=rnd(dim, dt=torch.float32),
        delta_bias=rnd(dim, scale=0.3, dt=torch.float32),
        initial_state=rnd(batch, dim, n_state, dt=torch.float32),
    )

    def build(t):
        return dict(
            u=t["xz"][..., :dim].transpose(1, 2), z=t["xz"][..., dim:].transpose(1, 2),
            delta=t["dt"].transpose(1, 2) if delta_layout == "channels_last" else t["dt"],
            B=t["xdbl"][..., dt_rank:dt_rank + n_state].transpose(1, 2),
            C=t["xdbl"][..., dt_rank + n_state:].transpose(1, 2),
            A=t["A"], D=t["D"], delta_bias=t["delta_bias"], initial_state=t["initial_state"],
        )

    seq_idx = torch.cumsum((torch.rand(batch, length, generator=g) < 0.1).int(), 1).to(DEVICE) if seq else None
    pad = (torch.rand(batch, length, generator=g) > 0.2).to(DEVICE) if mask else None
    g_y = rnd(batch, length, dim, dt=torch.float32).transpose(1, 2)  # a channels-last output gradient too
    g_h = rnd(batch, dim, n_state, dt=torch.float32)
    return bases, build, seq_idx, pad, g_y, g_h


def run_views(backend, bases, build, seq_idx, pad, g_y, g_h, fp32=False):
    leaves = {k: (v.float() if fp32 else v).clone().requires_grad_(True) for k, v in bases.items()}
    x = build(leaves)
    y, last = selective_scan(
        x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], delta_bias=x["delta_bias"], delta_softplus=True,
        initial_state=x["initial_state"], return_final_state=True, seq_idx=seq_idx, mask=pad, backend=backend,
    )
    ((y.float() * g_y).sum() + (last * g_h).sum()).backward()
    return y, last, {k: v.grad for k, v in leaves.items()}


def check_views(assert_close, bases, build, seq_idx, pad, g_y, g_h, tol, ref):
    from mambatune.kernels.selective_scan import triton_long

    y, last, grads = run_views("triton", bases, build, seq_idx, pad, g_y, g_h)
    if build(bases)["u"].stride(1) == 1 and triton_long.OUTPUTS_IN_INPUT_LAYOUT:
        assert y.transpose(1, 2).is_contiguous(), "a channels-last u must give a channels-last y"
    y_ref, last_ref, grads_ref = run_views(ref, bases, build, seq_idx, pad, g_y, g_h, fp32=ref == "chunked")
    assert_close("y", y, y_ref.to(y.dtype), tol)
    assert_close("final_state", last, last_ref, tol)
    for name, g in grads.items():
        assert_close(f"d{name}", g, grads_ref[name].to(g.dtype), tol)


VIEW_CPU_CASES = {
    "channels-last": dict(batch=2, dim=4, length=21, n_state=5, seq=True, mask=True),
    "channels-last-u-contiguous-delta-bf16": dict(batch=1, dim=8, length=19, n_state=16, dtype=torch.bfloat16,
                                                  delta_layout="contiguous"),
}


@pytest.mark.parametrize("case", list(VIEW_CPU_CASES))
def test_scan_channels_last_views_small(case, scan_kernel, nan_empty, assert_close):
    kw = VIEW_CPU_CASES[case]
    tol = 2e-2 if kw.get("dtype", torch.float32) != torch.float32 else 1e-4
    check_views(assert_close, *make_views(**kw), tol=tol, ref="reference")


def test_scan_channels_last_views_contiguous_outputs_small(monkeypatch, nan_empty, assert_close):
    """triton_long with OUTPUTS_IN_INPUT_LAYOUT off: y and the gradients come back contiguous (batch, dim, L)
    and autograd carries them into the views' bases."""
    from mambatune.kernels.selective_scan import triton_long

    monkeypatch.setattr(triton_long, "OUTPUTS_IN_INPUT_LAYOUT", False)
    bases, build, seq_idx, pad, g_y, g_h = make_views(**VIEW_CPU_CASES["channels-last"])
    y, _, _ = run_views("triton", bases, build, seq_idx, pad, g_y, g_h)
    assert y.is_contiguous()
    check_views(assert_close, bases, build, seq_idx, pad, g_y, g_h, tol=1e-4, ref="reference")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("length,n_state,dtype", [(63, 16, torch.float32), (1000, 16, torch.bfloat16),
                                                  (1000, 64, torch.float32)])
def test_scan_channels_last_views_gpu(length, n_state, dtype, scan_kernel, nan_empty, assert_close):
    tol = 2e-2 if dtype != torch.float32 else 1e-4
    check_views(assert_close, *make_views(2, 96, length, n_state, dtype=dtype, seq=True, mask=True, seed=length),
                tol=tol, ref=reference_for(length))


# -- triton_long.py with short chunks, so that CPU runs cross chunk boundaries ----------------

@pytest.mark.parametrize("BD,BT,case", [(2, 8, "all-options"), (1, 4, "groups-2"), (4, 16, "two-chunks-bf16")])
def test_long_kernel_carries_across_chunks_small(BD, BT, case, monkeypatch, nan_empty, assert_close):
    from mambatune.kernels.selective_scan import triton_long

    monkeypatch.setattr(triton_long, "_config", lambda p: dict(BD=BD, BT=BT, num_warps=1))
    kw = CPU_CASES[case]
    tol = 2e-2 if kw.get("dtype", torch.float32) != torch.float32 else 1e-4
    check(assert_close, *make_inputs(**kw), tol=tol, softplus=case != "groups-2")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("bwd_regs,fwd_regs,outputs_in_input", [
    (None, None, True), (168, None, True), (168, 64, False), (128, None, False)])
def test_long_kernel_register_caps_and_output_layouts_gpu(bwd_regs, fwd_regs, outputs_in_input, monkeypatch,
                                                          nan_empty, assert_close):
    """The register caps (spills) and output layouts the benchmarks compare give the same results: inputs
    contiguous and as the mixer's views, two 1024-step chunks and a partial third, every option on."""
    from mambatune.kernels.selective_scan import triton_long

    monkeypatch.setattr(triton_long, "BWD_MAXNREG", bwd_regs)
    monkeypatch.setattr(triton_long, "FWD_MAXNREG", fwd_regs)
    monkeypatch.setattr(triton_long, "OUTPUTS_IN_INPUT_LAYOUT", outputs_in_input)
    check(assert_close, *make_inputs(2, 64, 2500, 16, groups=2, seq=True, mask=True, seed=7), tol=1e-4, ref="chunked")
    check_views(assert_close, *make_views(2, 96, 2500, 16, dtype=torch.bfloat16, seq=True, mask=True, seed=8),
                tol=2e-2, ref="chunked")


def test_pick_triton_kernel():
    """long for time-varying B/C, except the mixer's channels-last views at small d_state and many channels
    (where triton.py measured faster); short for time-invariant B/C."""
    from mambatune.kernels.selective_scan import ScanInputs, pick_triton_kernel

    def inputs(batch, dim, n_state, channels_last, time_varying=True):
        shape = (batch, 2, dim) if channels_last else (batch, dim, 2)
        u = torch.zeros(shape)
        u = u.transpose(1, 2) if channels_last else u
        bc = torch.zeros(batch, 1, n_state, 2) if time_varying else torch.zeros(dim, n_state)
        return ScanInputs(u, u, -torch.ones(dim, n_state), bc, bc)

    assert pick_triton_kernel(inputs(4, 1536, 16, channels_last=False)) == "long"
    assert pick_triton_kernel(inputs(4, 1536, 16, channels_last=True)) == "short"
    assert pick_triton_kernel(inputs(4, 1536, 64, channels_last=True)) == "long"
    assert pick_triton_kernel(inputs(1, 1536, 16, channels_last=True)) == "long"
    assert pick_triton_kernel(inputs(2, 8, 4, channels_last=False, time_varying=False)) == "short"
