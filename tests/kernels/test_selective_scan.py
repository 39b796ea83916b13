"""The chunked scan and the step update against the reference loop: outputs, final state, every gradient."""
import pytest
import torch

from helpers import assert_close
from mambatune.kernels import selective_scan, selective_state_update
from mambatune.kernels.selective_scan import chunked as chunked_mod


def make_inputs(batch=2, dim=6, length=37, n=5, groups=2, time_varying=True, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    bc_shape = (batch, groups, n, length) if time_varying else (dim, n)
    t = dict(
        u=r(batch, dim, length).to(dtype), delta=(0.5 * r(batch, dim, length)).to(dtype),
        A=-(torch.rand(dim, n, generator=g) * 2 + 0.1), B=r(*bc_shape).to(dtype), C=r(*bc_shape).to(dtype),
        D=r(dim), z=r(batch, dim, length).to(dtype), delta_bias=r(dim), initial_state=r(batch, dim, n),
    )
    for v in t.values():
        v.requires_grad_(True)
    t["seq_idx"] = torch.cumsum((torch.rand(batch, length, generator=g) < 0.1).long(), 1)
    t["mask"] = torch.rand(batch, length, generator=g) > 0.2
    return t


def run(backend, inputs, seed=1):
    for v in inputs.values():
        if isinstance(v, torch.Tensor) and v.grad is not None:
            v.grad = None
    y, h = selective_scan(**inputs, delta_softplus=True, return_final_state=True, backend=backend)
    g = torch.Generator().manual_seed(seed)
    loss = (y.float() * torch.randn(y.shape, generator=g)).sum() + (h * torch.randn(h.shape, generator=g)).sum()
    loss.backward()
    grads = {k: v.grad.clone() for k, v in inputs.items() if isinstance(v, torch.Tensor) and v.requires_grad}
    return y, h, grads


DROP = [(), ("seq_idx",), ("mask",), ("z", "D", "delta_bias", "initial_state"), ("seq_idx", "mask", "z")]


@pytest.mark.parametrize("time_varying", [True, False])
@pytest.mark.parametrize("drop", DROP, ids=lambda d: "without_" + "_".join(d) if d else "all")
@pytest.mark.parametrize("length,n", [(1, 1), (63, 16), (200, 24)])
def test_chunked_matches_reference(monkeypatch, time_varying, drop, length, n):
    monkeypatch.setattr(chunked_mod, "_CHUNK_ELEMENTS", 6 * 2 * n * 16)  # several chunks even at tiny sizes
    inputs = make_inputs(length=length, n=n, time_varying=time_varying)
    for k in drop:
        inputs[k] = None
    y_r, h_r, g_r = run("reference", inputs)
    y_c, h_c, g_c = run("chunked", inputs)
    assert_close(y_c, y_r, 1e-5, "y")
    assert_close(h_c, h_r, 1e-5, "final state")
    assert set(g_c) == set(g_r)
    for k in g_r:
        assert_close(g_c[k], g_r[k], 1e-4, f"grad {k}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_chunked_half_precision_inputs(dtype):
    inputs = make_inputs(length=40, dtype=dtype)
    y_r, h_r, g_r = run("reference", inputs)
    y_c, h_c, g_c = run("chunked", inputs)
    assert y_c.dtype == dtype and h_c.dtype == torch.float32
    assert_close(y_c, y_r, 1e-2, "y")
    for k in g_r:
        assert g_c[k].dtype == g_r[k].dtype
        assert_close(g_c[k], g_r[k], 2e-2, f"grad {k}")


def test_seq_idx_resets_state():
    inputs = make_inputs(batch=1, length=30)
    inputs["mask"] = None
    inputs["initial_state"] = None
    seq = torch.zeros(1, 30, dtype=torch.long)
    seq[:, 12:] = 1
    y = selective_scan(**{**inputs, "seq_idx": seq}, delta_softplus=True, backend="chunked")
    parts = []
    for s, e in [(0, 12), (12, 30)]:
        sub = {k: (v[..., s:e] if isinstance(v, torch.Tensor) and v.dim() >= 3 and v.shape[-1] == 30 else v)
               for k, v in inputs.items() if k != "seq_idx"}
        parts.append(selective_scan(**sub, delta_softplus=True, backend="chunked"))
    assert_close(y, torch.cat(parts, -1), 1e-5, "packed vs separate")


def test_masked_steps_are_identity():
    inputs = make_inputs(batch=1, length=20)
    for k in ("seq_idx", "initial_state"):
        inputs[k] = None
    mask = torch.ones(1, 20, dtype=torch.bool)
    mask[:, 15:] = False
    y, h = selective_scan(**{**inputs, "mask": mask}, delta_softplus=True, return_final_state=True, backend="chunked")
    short = {k: (v[..., :15] if isinstance(v, torch.Tensor) and v.dim() >= 3 and v.shape[-1] == 20 else v)
             for k, v in inputs.items() if k != "mask"}
    y2, h2 = selective_scan(**short, delta_softplus=True, return_final_state=True, backend="chunked")
    assert_close(y[..., :15], y2, 1e-6, "valid outputs")
    assert_close(h, h2, 1e-6, "state after padding")
    assert torch.count_nonzero(y[..., 15:]) == 0


def test_step_update_matches_scan():
    inputs = make_inputs(batch=2, length=9, time_varying=True)
    for k in ("seq_idx", "mask"):
        inputs[k] = None
    with torch.no_grad():
        y, h = selective_scan(**inputs, delta_softplus=True, return_final_state=True, backend="reference")
        state = inputs["initial_state"].clone()
        ys = [selective_state_update(state, inputs["u"][..., t], inputs["delta"][..., t], inputs["A"],
                                     inputs["B"][..., t], inputs["C"][..., t], inputs["D"], inputs["z"][..., t],
                                     inputs["delta_bias"], delta_softplus=True) for t in range(9)]
    assert_close(torch.stack(ys, -1), y, 1e-5, "steps")
    assert_close(state, h, 1e-5, "state")


def test_unknown_backend_and_bad_shapes_raise():
    inputs = make_inputs(length=8)
    with pytest.raises(ValueError, match="unknown selective_scan backend"):
        selective_scan(**inputs, backend="cuda")
    with pytest.raises(ValueError, match="delta must have u's shape"):
        selective_scan(**{**inputs, "delta": inputs["delta"][..., :4]})
    with pytest.raises(ValueError, match="groups, which does not divide"):
        bad = torch.randn(2, 4, 5, 8)
        selective_scan(**{**inputs, "B": bad})
    with pytest.raises(TypeError, match="seq_idx must be an integer"):
        selective_scan(**{**inputs, "seq_idx": inputs["seq_idx"].float()})
    with pytest.raises(ValueError, match="d_state must be in 1..256"):
        selective_scan(**{**inputs, "A": torch.randn(6, 300), "B": torch.randn(6, 300), "C": torch.randn(6, 300),
                          "initial_state": None})


def test_nan_prefilled_outputs_are_overwritten(monkeypatch):
    real_empty = torch.Tensor.new_empty

    def nan_empty(self, *size, **kw):
        return real_empty(self, *size, **kw).fill_(float("nan"))

    monkeypatch.setattr(torch.Tensor, "new_empty", nan_empty)
    inputs = make_inputs(length=33)
    y, h, grads = run("chunked", inputs)
    assert torch.isfinite(y).all() and torch.isfinite(h).all()
    assert all(torch.isfinite(g).all() for g in grads.values())
