"""The chunked and Triton SSD scans and the step update against the reference loop: outputs, final state,
every gradient. Without a GPU the Triton kernel runs under TRITON_INTERPRET=1 at tiny sizes."""
import pytest
import torch

from mambatune.kernels import ssd_scan, ssd_state_update


def make_inputs(batch=2, length=37, heads=4, headdim=3, groups=2, n=5, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    t = dict(
        x=r(batch, length, heads, headdim).to(dtype), dt=(0.5 * r(batch, length, heads)).to(dtype),
        A=-(torch.rand(heads, generator=g) * 2 + 0.1), B=r(batch, length, groups, n).to(dtype),
        C=r(batch, length, groups, n).to(dtype), D=r(heads), z=r(batch, length, heads, headdim).to(dtype),
        dt_bias=r(heads), initial_state=r(batch, heads, headdim, n),
    )
    for v in t.values():
        v.requires_grad_(True)
    t["seq_idx"] = torch.cumsum((torch.rand(batch, length, generator=g) < 0.1).long(), 1)
    t["mask"] = torch.rand(batch, length, generator=g) > 0.2
    return t


def run(backend, inputs, seed=1, **kw):
    for v in inputs.values():
        if isinstance(v, torch.Tensor) and v.grad is not None:
            v.grad = None
    y, h = ssd_scan(**inputs, dt_softplus=True, return_final_state=True, backend=backend, **kw)
    g = torch.Generator().manual_seed(seed)
    w_y, w_h = torch.randn(y.shape, generator=g).to(y.device), torch.randn(h.shape, generator=g).to(h.device)
    loss = (y.float() * w_y).sum() + (h * w_h).sum()
    loss.backward()
    grads = {k: v.grad.clone() for k, v in inputs.items() if isinstance(v, torch.Tensor) and v.requires_grad}
    return y, h, grads


DROP = [(), ("seq_idx",), ("mask",), ("z", "D", "dt_bias", "initial_state"), ("seq_idx", "mask", "z")]


@pytest.mark.parametrize("drop", DROP, ids=lambda d: "without_" + "_".join(d) if d else "all")
@pytest.mark.parametrize("length,chunk,groups", [(1, 16, 1), (63, 16, 2), (100, 32, 1), (100, 16, 4)])
def test_chunked_matches_reference(nan_empty, assert_close, drop, length, chunk, groups):
    inputs = make_inputs(length=length, groups=groups)
    for k in drop:
        inputs[k] = None
    y_r, h_r, g_r = run("reference", inputs)
    y_c, h_c, g_c = run("chunked", inputs, chunk_size=chunk)
    assert_close("y", y_c, y_r, 1e-5)
    assert_close("final state", h_c, h_r, 1e-5)
    assert set(g_c) == set(g_r)
    for k in g_r:
        assert_close(f"grad {k}", g_c[k], g_r[k], 1e-4)


def test_chunked_dt_limit_and_half_precision(assert_close):
    inputs = make_inputs(length=40, dtype=torch.bfloat16)
    y_r, h_r, g_r = run("reference", inputs, dt_limit=(0.05, 0.8))
    y_c, h_c, g_c = run("chunked", inputs, dt_limit=(0.05, 0.8), chunk_size=16)
    assert y_c.dtype == torch.bfloat16 and h_c.dtype == torch.float32
    assert_close("y", y_c, y_r, 1e-2)
    assert_close("final state", h_c, h_r, 1e-4)
    for k in g_r:
        assert_close(f"grad {k}", g_c[k], g_r[k], 2e-2)



@pytest.mark.parametrize("drop", DROP, ids=lambda d: "without_" + "_".join(d) if d else "all")
def test_chunked_difference_form_matches_reference(nan_empty, assert_close, monkeypatch, drop):
    """The per-head difference form, which the chunked path takes where a chunk's decay range exceeds
    EXP_RANGE, forced here on ordinary inputs."""
    from mambatune.kernels.ssd import chunked

    monkeypatch.setattr(chunked, "EXP_RANGE", 0.0)
    inputs = make_inputs(length=63, groups=2)
    for k in drop:
        inputs[k] = None
    y_r, h_r, g_r = run("reference", inputs)
    y_c, h_c, g_c = run("chunked", inputs, chunk_size=16)
    assert_close("y", y_c, y_r, 1e-5)
    assert_close("final state", h_c, h_r, 1e-5)
    for k in g_r:
        assert_close(f"grad {k}", g_c[k], g_r[k], 1e-4)


@pytest.mark.parametrize("a_scale", [5.0, 9.0], ids=["range_near_limit", "range_beyond_limit"])
def test_chunked_fast_decays_match_reference(assert_close, a_scale):
    """Heads that decay fast: a chunk's range of summed log decay just under EXP_RANGE (the product of
    two exponentials, each near exp(+-60)) and far over it (the difference form, on its own). Faster
    decays still, about exp(-50) a step, leave grad A (a sum that nearly cancels) 1e-2 off the loop in
    any chunked form, before issue 18 too."""
    from mambatune.kernels.ssd import chunked

    inputs = make_inputs(length=50, groups=2)
    with torch.no_grad():
        inputs["dt_bias"].fill_(1.0)  # dt = softplus(1 + 0.5 * noise), about 1.3
        inputs["A"].mul_(a_scale / inputs["A"].abs().max())
    y_r, h_r, g_r = run("reference", inputs)
    y_c, h_c, g_c = run("chunked", inputs, chunk_size=16)
    with torch.no_grad():
        dA = torch.nn.functional.softplus(inputs["dt"] + inputs["dt_bias"]) * inputs["A"] * inputs["mask"][..., None]
    widest = max(dA[:, s:s + 16].sum(1).abs().max().item() for s in range(0, 50, 16))
    in_range = 0.75 * chunked.EXP_RANGE < widest < chunked.EXP_RANGE if a_scale < 6 else widest > 1.5 * chunked.EXP_RANGE
    assert in_range, widest  # the case this test means to cover
    assert_close("y", y_c, y_r, 1e-5)
    assert_close("final state", h_c, h_r, 1e-5)
    for k in g_r:
        assert_close(f"grad {k}", g_c[k], g_r[k], 1e-4)

@pytest.mark.parametrize("backend", ["reference", "chunked"])
def test_seq_idx_resets_state(assert_close, backend):
    inputs = make_inputs(batch=1, length=30)
    for k in ("mask", "initial_state"):
        inputs[k] = None
    seq = torch.zeros(1, 30, dtype=torch.long)
    seq[:, 12:] = 1
    y, h = ssd_scan(**{**inputs, "seq_idx": seq}, dt_softplus=True, return_final_state=True, chunk_size=8,
                    backend=backend)
    parts, last = [], None
    for s, e in [(0, 12), (12, 30)]:
        sub = {k: (v[:, s:e] if k in ("x", "dt", "B", "C", "z") else v) for k, v in inputs.items() if k != "seq_idx"}
        y_part, last = ssd_scan(**sub, dt_softplus=True, return_final_state=True, backend="reference")
        parts.append(y_part)
    assert_close("packed vs separate", y, torch.cat(parts, 1), 1e-5)
    assert_close("final state of the last document", h, last, 1e-5)


@pytest.mark.parametrize("backend", ["reference", "chunked"])
def test_masked_steps_are_identity(assert_close, backend):
    inputs = make_inputs(batch=1, length=20)
    for k in ("seq_idx", "initial_state"):
        inputs[k] = None
    mask = torch.ones(1, 20, dtype=torch.bool)
    mask[:, 15:] = False
    y, h = ssd_scan(**{**inputs, "mask": mask}, dt_softplus=True, return_final_state=True, chunk_size=8,
                    backend=backend)
    short = {k: (v[:, :15] if k in ("x", "dt", "B", "C", "z") else v) for k, v in inputs.items() if k != "mask"}
    y2, h2 = ssd_scan(**short, dt_softplus=True, return_final_state=True, backend="reference")
    assert_close("valid outputs", y[:, :15], y2, 1e-5)
    assert_close("state after padding", h, h2, 1e-5)
    assert torch.count_nonzero(y[:, 15:]) == 0


def test_step_update_matches_scan(assert_close):
    inputs = make_inputs(batch=2, length=9)
    for k in ("seq_idx", "mask"):
        inputs[k] = None
    with torch.no_grad():
        y, h = ssd_scan(**inputs, dt_softplus=True, dt_limit=(0.0, 1.0), return_final_state=True, backend="reference")
        state = inputs["initial_state"].clone()
        ys = [ssd_state_update(state, inputs["x"][:, t], inputs["dt"][:, t], inputs["A"], inputs["B"][:, t],
                               inputs["C"][:, t], inputs["D"], inputs["z"][:, t], inputs["dt_bias"], dt_softplus=True,
                               dt_limit=(0.0, 1.0)) for t in range(9)]
    assert_close("steps", torch.stack(ys, 1), y, 1e-5)
    assert_close("state", state, h, 1e-5)


def test_unknown_backend_and_bad_shapes_raise():
    inputs = make_inputs(length=8)
    with pytest.raises(ValueError, match="unknown ssd_scan backend"):
        ssd_scan(**inputs, backend="cuda")
    with pytest.raises(ValueError, match="dt must be"):
        ssd_scan(**{**inputs, "dt": inputs["dt"][:, :4]})
    with pytest.raises(ValueError, match="one scalar per head"):
        ssd_scan(**{**inputs, "A": torch.randn(4, 5)})
    with pytest.raises(ValueError, match="groups, which does not divide"):
        ssd_scan(**{**inputs, "B": torch.randn(2, 8, 3, 5), "C": torch.randn(2, 8, 3, 5)})
    with pytest.raises(TypeError, match="seq_idx must be an integer"):
        ssd_scan(**{**inputs, "seq_idx": inputs["seq_idx"].float()})
    with pytest.raises(ValueError, match="chunk_size"):
        ssd_scan(**inputs, chunk_size=0)


# -- Triton ------------------------------------------------------------------------------------

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def on_device(inputs):
    return {k: (v.detach().to(DEVICE).requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor) else v)
            for k, v in inputs.items()}


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
@pytest.mark.parametrize("length,groups,drop", [(37, 1, ()), (40, 2, ("seq_idx", "mask", "initial_state", "z"))])
def test_triton_matches_reference(nan_empty, assert_close, monkeypatch, length, groups, drop, parallel):
    """Both layouts: programs that walk the chunks, or a pass that carries the state (forward) or its
    gradient (backward) alone, then one program per chunk (``LAUNCH["fwd_parallel"]``, ``["bwd_parallel"]``)."""
    pytest.importorskip("triton")
    from mambatune.kernels.ssd import triton as ssd_triton

    monkeypatch.setattr(ssd_triton, "LAUNCH", {**ssd_triton.LAUNCH, "fwd_parallel": parallel,
                                               "bwd_parallel": parallel, "bwd_bp": 16})
    inputs = make_inputs(batch=1 if drop == () else 2, length=length, groups=groups)
    for k in drop:
        inputs[k] = None
    y_r, h_r, g_r = run("reference", inputs)
    y_t, h_t, g_t = run("triton", on_device(inputs), chunk_size=16)
    assert_close("y", y_t.cpu(), y_r, 1e-5)
    assert_close("final state", h_t.cpu(), h_r, 1e-5)
    assert set(g_t) == set(g_r)
    for k in g_r:
        assert_close(f"grad {k}", g_t[k].cpu(), g_r[k], 1e-4)


def test_triton_parallel_layout_with_several_channel_blocks(nan_empty, assert_close, monkeypatch):
    """The state passes split the channels into blocks of ``fwd_bp`` / ``bwd_bp`` (here 3 blocks of 16 for
    40 channels, the last one masked); the backward's per-chunk programs then hold every channel."""
    pytest.importorskip("triton")
    from mambatune.kernels.ssd import triton as ssd_triton

    monkeypatch.setattr(ssd_triton, "LAUNCH", {**ssd_triton.LAUNCH, "fwd_parallel": True, "fwd_bp": 16,
                                               "bwd_parallel": True, "bwd_bp": 16})
    inputs = make_inputs(batch=1, length=70, heads=2, headdim=40, groups=1, n=8)
    y_r, h_r, g_r = run("reference", inputs)
    y_t, h_t, g_t = run("triton", on_device(inputs), chunk_size=16)
    assert_close("y", y_t.cpu(), y_r, 1e-5)
    assert_close("final state", h_t.cpu(), h_r, 1e-5)
    for k in g_r:
        assert_close(f"grad {k}", g_t[k].cpu(), g_r[k], 1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_matches_chunked_on_gpu(assert_close, dtype):
    inputs = make_inputs(batch=2, length=1000, heads=8, headdim=64, groups=2, n=64, dtype=dtype)
    y_c, h_c, g_c = run("chunked", on_device(inputs), chunk_size=64)
    y_t, h_t, g_t = run("triton", on_device(inputs), chunk_size=64)
    tol = 1e-4 if dtype == torch.float32 else 1e-2
    assert_close("y", y_t, y_c, tol)
    assert_close("final state", h_t, h_c, tol)
    for k in g_c:
        assert_close(f"grad {k}", g_t[k], g_c[k], 10 * tol)


# -- Triton on the GPU: every gradient against the reference loop, at the kernels' real tile sizes ----------

GPU_CASES = [  # (batch, length, heads, headdim, groups, n, dropped inputs)
    (2, 1, 4, 64, 1, 128, ()),
    (2, 63, 4, 64, 2, 128, ()),
    (1, 257, 6, 48, 3, 100, ()),  # headdim and N not powers of two: masked tiles
    (2, 1000, 4, 64, 1, 128, ()),
    (2, 1000, 4, 64, 1, 128, ("seq_idx", "mask", "initial_state", "z", "D", "dt_bias")),
    (2, 517, 8, 32, 2, 64, ("mask",)),
]


@pytest.mark.gpu
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: f"B{c[0]}_L{c[1]}_H{c[2]}_P{c[3]}_G{c[4]}_N{c[5]}_"
                         + ("without_" + "_".join(c[6]) if c[6] else "all"))
def test_triton_matches_reference_on_gpu(nan_empty, assert_close, case):
    """Outputs, final state and every gradient (x, dt, A, B, C, D, z, dt_bias, initial state) in fp32, with
    seq_idx resets, padding and an initial state, against the fp32 loop on the same GPU."""
    batch, length, heads, headdim, groups, n, drop = case
    inputs = on_device(make_inputs(batch=batch, length=length, heads=heads, headdim=headdim, groups=groups, n=n))
    for k in drop:
        inputs[k] = None
    y_r, h_r, g_r = run("reference", inputs)
    y_t, h_t, g_t = run("triton", inputs, chunk_size=64)
    assert_close("y", y_t, y_r, 1e-5)
    assert_close("final state", h_t, h_r, 1e-5)
    assert set(g_t) == set(g_r)
    for k in g_r:
        assert_close(f"grad {k}", g_t[k], g_r[k], 1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("launch", [{"fwd_bp": 32}, {"fwd_bp": 16, "fwd_warps": 8, "bwd_warps": 8},
                                    {"bwd_parallel": True, "fwd_parallel": True},
                                    {"bwd_parallel": True, "bwd_bp": 64, "bwd_warps": 8, "fwd_parallel": True, "fwd_bp": 32}],
                         ids=["bp32", "bp16_warps8", "parallel", "parallel_bp_warps8"])
def test_triton_launch_settings_on_gpu(nan_empty, assert_close, monkeypatch, launch):
    """The launch settings benchmarks/ssd.py times give the same results."""
    from mambatune.kernels.ssd import triton as ssd_triton

    monkeypatch.setattr(ssd_triton, "LAUNCH", {**ssd_triton.LAUNCH, **launch})
    inputs = on_device(make_inputs(batch=2, length=300, heads=4, headdim=64, groups=2, n=128))
    y_r, h_r, g_r = run("reference", inputs)
    y_t, h_t, g_t = run("triton", inputs, chunk_size=64)
    assert_close("y", y_t, y_r, 1e-5)
    assert_close("final state", h_t, h_r, 1e-5)
    for k in g_r:
        assert_close(f"grad {k}", g_t[k], g_r[k], 1e-4)


@pytest.mark.gpu
def test_triton_bf16_on_gpu(assert_close):
    """bf16 inputs (TF32 products in the kernels) against the fp32 loop on the same rounded inputs."""
    inputs = on_device(make_inputs(batch=2, length=777, heads=4, headdim=64, groups=1, n=128, dtype=torch.bfloat16))
    ref = {k: (v.detach().float().requires_grad_(True) if isinstance(v, torch.Tensor) and v.is_floating_point()
               else v) for k, v in inputs.items()}
    y_r, h_r, g_r = run("reference", ref)
    y_t, h_t, g_t = run("triton", inputs, chunk_size=64)
    assert y_t.dtype == torch.bfloat16
    assert_close("y", y_t.float(), y_r, 1e-2)
    assert_close("final state", h_t, h_r, 5e-3)
    for k in g_r:
        assert_close(f"grad {k}", g_t[k].float(), g_r[k], 2e-2)
