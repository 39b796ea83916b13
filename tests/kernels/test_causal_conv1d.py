"""The chunked conv and the step update against the reference loop."""
import pytest
import torch

from helpers import assert_close
from mambatune.kernels import causal_conv1d, causal_conv1d_update


def inputs(batch=2, dim=5, length=31, width=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        x=torch.randn(batch, dim, length, generator=g, requires_grad=True),
        weight=torch.randn(dim, width, generator=g, requires_grad=True),
        bias=torch.randn(dim, generator=g, requires_grad=True),
        seq_idx=torch.cumsum((torch.rand(batch, length, generator=g) < 0.15).long(), 1),
        mask=torch.rand(batch, length, generator=g) > 0.2,
        initial_state=torch.randn(batch, dim, width - 1, generator=g, requires_grad=True),
    )


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("drop", [(), ("seq_idx",), ("mask",), ("initial_state", "bias")])
def test_chunked_matches_reference(width, activation, drop):
    kw = inputs(width=width)
    for k in drop:
        kw[k] = None
    if width == 1:
        kw["initial_state"] = None
    outs = {}
    for backend in ("reference", "chunked"):
        for v in kw.values():
            if isinstance(v, torch.Tensor) and v.grad is not None:
                v.grad = None
        y = causal_conv1d(**kw, activation=activation, backend=backend)
        (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        outs[backend] = [y] + [v.grad.clone() for v in kw.values() if isinstance(v, torch.Tensor) and v.requires_grad]
    for a, b in zip(outs["chunked"], outs["reference"]):
        assert_close(a, b, 1e-5)


def test_update_matches_full_conv():
    kw = inputs(batch=2, length=10)
    with torch.no_grad():
        y = causal_conv1d(kw["x"], kw["weight"], kw["bias"], "silu", backend="reference")
        state = torch.zeros(2, 5, 3)
        steps = [causal_conv1d_update(kw["x"][..., t], state, kw["weight"], kw["bias"], "silu") for t in range(10)]
    assert_close(torch.stack(steps, -1), y, 1e-6)
    assert_close(state, kw["x"][..., -3:], 0)


def test_bad_inputs_raise():
    kw = inputs()
    with pytest.raises(ValueError, match="unknown causal_conv1d backend"):
        causal_conv1d(kw["x"], kw["weight"], backend="cudnn")
    with pytest.raises(ValueError, match="width must be in 1..4"):
        causal_conv1d(kw["x"], torch.randn(5, 6))
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d(kw["x"], kw["weight"], activation="relu")
    with pytest.raises(ValueError, match="x must be"):
        causal_conv1d(kw["x"][0], kw["weight"])
