"""core.model.FUSED_ADD_NORM: the blocks' residual adds and norms through kernels/norm in the pair form
(mixer output, residual) give the unfused model's outputs and gradients, for every norm and residual setting,
Mamba-1 and Mamba-2, padding, packing, a parallel adapter and the generation cache."""
import pytest
import torch

from mambatune.core import MambaConfig, MambaForTask, model as core_model
from mambatune.core import peft


def build(**kw):
    base = dict(d_model=16, n_layer=3, vocab_size=32, d_state=4, backend="chunked")
    if kw.get("arch") == "mamba2":
        base.update(headdim=8, chunk_size=8)
    base.update(kw)
    torch.manual_seed(0)
    m = MambaForTask(MambaConfig(**base))
    with torch.no_grad():  # norms away from their init of ones (and zero bias), so a wrong weight shows
        for name, p in m.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return m


def step(m, fused, ids, **inputs):
    core_model.FUSED_ADD_NORM = fused
    try:
        m.zero_grad(set_to_none=True)
        out = m(ids, labels=ids, **inputs)
        out.loss.backward()
    finally:
        core_model.FUSED_ADD_NORM = False
    return out.logits.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


def assert_same(a, b, tol=1e-5):
    (la, ga), (lb, gb) = a, b
    torch.testing.assert_close(la, lb, rtol=tol, atol=tol)
    assert ga.keys() == gb.keys()
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=tol, atol=tol, msg=n)


@pytest.mark.parametrize("kw", [{}, {"rms_norm": False}, {"residual_in_fp32": False}, {"arch": "mamba2"},
                                {"bidirectional": True}])
def test_fused_blocks_match_the_unfused_ones(kw):
    m = build(**kw)
    ids = torch.randint(0, 32, (2, 13))
    mask = torch.ones(2, 13, dtype=torch.long)
    mask[1, 9:] = 0
    seq_idx = torch.tensor([[0] * 6 + [1] * 7, [0] * 13])
    assert_same(step(m, True, ids, attention_mask=mask, seq_idx=seq_idx),
                step(m, False, ids, attention_mask=mask, seq_idx=seq_idx))


def test_fused_blocks_keep_the_parallel_adapter():
    m = build()
    peft.apply(m, peft.ParallelAdapterConfig(bottleneck=4, position="block"))
    with torch.no_grad():
        for b in m.backbone.layers:
            b.parallel_adapter.up.weight.normal_()
    ids = torch.randint(0, 32, (2, 11))
    fused, plain = step(m, True, ids), step(m, False, ids)
    assert any("parallel_adapter" in n for n in plain[1])
    assert_same(fused, plain)


def test_fused_generation_cache_matches_the_full_forward():
    m = build().eval()
    ids = torch.randint(0, 32, (1, 9))
    core_model.FUSED_ADD_NORM = True
    try:
        with torch.no_grad():
            full = m(ids).logits
            cache = m.backbone.new_cache(1)
            steps = [m(ids[:, t:t + 1], cache=cache).logits for t in range(9)]
    finally:
        core_model.FUSED_ADD_NORM = False
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("arch", ["mamba1", "mamba2"])
def test_fused_triton_blocks_match_under_bf16_autocast_on_gpu(arch):
    kw = {"arch": "mamba2", "headdim": 32, "chunk_size": 64} if arch == "mamba2" else {}
    torch.manual_seed(0)
    m = MambaForTask(MambaConfig(d_model=256, n_layer=4, vocab_size=512, backend="triton", **kw)).cuda()
    ids = torch.randint(0, 512, (2, 1000), device="cuda")

    def run(fused):
        core_model.FUSED_ADD_NORM = fused
        try:
            m.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = m(ids, labels=ids)
            out.loss.backward()
        finally:
            core_model.FUSED_ADD_NORM = False
        return out.loss.item(), {n: p.grad.float() for n, p in m.named_parameters() if p.grad is not None}

    (loss_f, g_f), (loss_u, g_u) = run(True), run(False)
    assert abs(loss_f - loss_u) < 1e-2 * abs(loss_u)
    for n in g_u:
        err = ((g_f[n] - g_u[n]).norm() / g_u[n].norm().clamp_min(1e-12)).item()
        assert err < 5e-2, f"{n}: relative error {err:.2e}"
