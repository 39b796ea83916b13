"""Kernel tests: run the Triton kernels through Triton's interpreter when no GPU is present.

Triton reads TRITON_INTERPRET when a kernel is decorated, i.e. when the module
defining it is imported, so it is set here, before any test module imports the
kernels; a kernel module imported earlier without it is reloaded.
"""
import importlib
import os
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
    for _name in ("mambatune.kernels.selective_scan.triton", "mambatune.kernels.selective_scan.triton_long",
                  "mambatune.kernels.causal_conv1d.triton"):
        if _name in sys.modules:
            importlib.reload(sys.modules[_name])

def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64 (the plain norm of out where ref is exactly zero, as when a
    gradient vanishes); NaN or inf anywhere in ``out`` gives inf, so it fails any bound."""
    out, ref = out.double(), ref.double()
    if not torch.isfinite(out).all():
        return float("inf")
    scale = ref.norm()
    return ((out - ref).norm() / (scale if scale > 0 else 1.0)).item()


def _assert_close(name: str, out: torch.Tensor | None, ref: torch.Tensor | None, tol: float) -> None:
    assert (out is None) == (ref is None), f"{name}: one of the two is None"
    if ref is None:
        return
    assert out.shape == ref.shape, f"{name}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    assert out.dtype == ref.dtype, f"{name}: dtype {out.dtype} != {ref.dtype}"
    err = rel_err(out, ref)
    assert err <= tol, f"{name}: relative error {err:.2e} > {tol:.0e}"


@pytest.fixture
def assert_close():
    """``assert_close(name, out, ref, tol)``: same shape and dtype, relative L2 error within tol, no NaN."""
    return _assert_close


@pytest.fixture
def nan_empty(monkeypatch):
    """Fills every torch.empty / empty_like with NaN, so an output the kernel never writes cannot pass."""
    real_empty, real_empty_like = torch.empty, torch.empty_like

    def empty(*args, **kwargs):
        t = real_empty(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    def empty_like(*args, **kwargs):
        t = real_empty_like(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch, "empty_like", empty_like)


@pytest.fixture(params=["long", "short"])
def scan_kernel(request, monkeypatch):
    """Runs a test once per Triton scan kernel: ``long`` (triton_long.py, what backend="triton" picks for
    time-varying B and C) and ``short`` (triton.py, forced by declaring the inputs unsupported by the other)."""
    if request.param == "short":
        from mambatune.kernels.selective_scan import triton_long

        monkeypatch.setattr(triton_long, "supports", lambda p: False)
    return request.param
