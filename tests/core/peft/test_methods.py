"""Every method on every CPU scan backend: one optimizer step changes the output, every adapter
parameter gets a gradient, the frozen parameters stay put, and the output length is unchanged."""
import pytest
import torch

from peft_fixtures import tiny_batch, tiny_model
from mambatune.core import peft

CASES = {
    "lora": [peft.LoRAConfig(targets=["in_proj", "x_proj", "dt_proj", "out_proj"], rank=4)],
    "lora_head": [peft.LoRAConfig(targets=["score"], rank=2)],
    "lorap_x": [peft.LoRAConfig(targets=["in_proj"], output_slice="x", rank=4)],
    "lorap_z": [peft.LoRAConfig(targets=["in_proj"], output_slice="z", rank=4)],
    "lora_rows": [peft.LoRAConfig(targets=["x_proj"], output_slice=[2, 6], rank=2, layers=[-1])],
    "dora": [peft.LoRAConfig(targets=["in_proj", "out_proj"], rank=4, dora=True, dropout=0.1)],
    "prompt": [peft.PromptConfig(num_tokens=4)],
    "affix": [peft.AffixConfig(num_tokens=3, init_std=0.5)],
    "additional_scan_copy": [peft.AdditionalScanConfig(num_states=3, init="copy")],
    "additional_scan_s4d": [peft.AdditionalScanConfig(num_states=6, init="s4d_real")],
    "partial": [peft.PartialConfig(groups=["A_log", "D", "dt_bias", "conv1d", "norms", "embeddings"])],
    "top_layers": [peft.TopLayersConfig(k=1)],
    "head_only": [peft.HeadOnlyConfig()],
    "full": [peft.FullConfig()],
    "parallel_mixer": [peft.ParallelAdapterConfig(bottleneck=4, position="mixer")],
    "parallel_block": [peft.ParallelAdapterConfig(bottleneck=4, position="block", activation="gelu")],
    "hybrid": [peft.LoRAConfig(targets=["in_proj"], output_slice="x"), peft.AdditionalScanConfig(num_states=2),
               peft.PartialConfig(groups=["D"])],
}


def train_step(model, batch, opt):
    ids, mask, labels = batch
    loss = model(ids, mask, labels=labels).loss
    loss.backward()
    opt.step()
    opt.zero_grad()


def check_one_step(model, methods, train_head=False):
    batch = tiny_batch()
    ids, mask, _ = batch
    peft.apply(model, peft.PeftConfig(methods, train_head=train_head))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    adapter = peft.get_adapter_params(model)
    assert adapter and {n for n, p in model.named_parameters() if p.requires_grad} == set(adapter)
    model.eval()
    with torch.no_grad():
        y0 = model(ids, mask).logits
    assert y0.shape == (*ids.shape, 3)
    model.train()
    opt = torch.optim.Adam(adapter.values(), lr=1e-2)
    train_step(model, batch, opt)
    model.eval()
    with torch.no_grad():
        y1 = model(ids, mask).logits
    assert y1.shape == y0.shape
    assert (y1 - y0).abs().max() > 1e-5, "one optimizer step did not change the output"
    # a second backward: parameters that start behind a zero (LoRA's A, new states' B) now get gradient too
    model.train()
    ids, mask, labels = batch
    model(ids, mask, labels=labels).loss.backward()
    for n, p in adapter.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{n} received no gradient"
    for n, p in model.named_parameters():
        if n not in adapter:
            assert p.grad is None, f"frozen {n} has a gradient"
            assert torch.equal(p.detach(), before[n]), f"frozen {n} changed"
    return model


@pytest.mark.parametrize("case", list(CASES))
def test_one_step(case, backend):
    head = "lm" if case == "full_lm" else "token"
    check_one_step(tiny_model(backend, head), CASES[case], train_head=case == "head_only")


@pytest.mark.parametrize("case", ["lora", "affix", "additional_scan_copy"])
def test_one_step_triton(case):
    """The fused Triton kernels honour adapters on every projection, prefixes and extra states too
    (on a CPU through Triton's interpreter, which is slow: hence the three methods that touch the
    kernels' inputs most directly; all methods were also run once on an H100)."""
    check_one_step(tiny_model("triton", "token"), CASES[case])


def test_bidirectional_hybrid(backend):
    """Tied projections: LoRA on in_proj serves both directions; affix and extra states go to each direction."""
    model = tiny_model(backend, bidirectional=True, bidirectional_strategy="gate")
    check_one_step(model, [peft.LoRAConfig(targets=["in_proj", "x_proj"]), peft.AffixConfig(num_tokens=2),
                           peft.AdditionalScanConfig(num_states=2), peft.PartialConfig(groups=["gate"])])
    names = peft.get_adapter_params(model)
    assert any(".rev.ssm_extension." in n for n in names) and any(".rev.prefix." in n for n in names)


@pytest.mark.parametrize("methods", [
    [peft.LoRAConfig(targets=["in_proj", "x_proj", "dt_proj", "out_proj"])],
    [peft.LoRAConfig(targets=["in_proj"], output_slice="z", dora=True)],
    [peft.AdditionalScanConfig(num_states=3, init="copy")],
    [peft.AdditionalScanConfig(num_states=5, init="s4d_real")],
    [peft.ParallelAdapterConfig(position="block")],
], ids=["lora", "dora_z", "scan_copy", "scan_s4d", "parallel"])
def test_identity_at_init(methods, backend):
    model = tiny_model(backend).eval()
    ids, mask, _ = tiny_batch()
    with torch.no_grad():
        y0 = model(ids, mask).logits
        peft.apply(model, methods)
        y1 = model(ids, mask).logits
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("methods", [
    [peft.PromptConfig(num_tokens=3)],
    [peft.AffixConfig(num_tokens=2, init_std=0.5)],
    [peft.AdditionalScanConfig(num_states=3), peft.LoRAConfig(targets=["in_proj"])],
], ids=["prompt", "affix", "scan"])
def test_step_by_step_matches_full_forward(methods):
    """The recurrent cache reads the prompt / prefix once and carries the extra states."""
    model = tiny_model(head="lm").eval()
    peft.apply(model, methods)
    for p in peft.get_adapter_params(model).values():
        torch.nn.init.normal_(p, std=0.1)  # make every adapter matter
    ids, _, _ = tiny_batch(length=10)
    with torch.no_grad():
        full = model(ids).logits
        cache = model.backbone.new_cache(ids.shape[0])
        steps = [model(ids[:, :6], cache=cache).logits]
        steps += [model(ids[:, t:t + 1], cache=cache).logits for t in range(6, 10)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-4, atol=1e-5)


def test_prompt_and_affix_keep_padding_invariance():
    """Padded steps stay identity steps: a right-padded row gives the same outputs on its real tokens."""
    model = tiny_model().eval()
    peft.apply(model, [peft.PromptConfig(num_tokens=3), peft.AffixConfig(num_tokens=2, init_std=0.5)])
    ids, _, _ = tiny_batch(batch=1, length=12)
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=ids.dtype)], 1)
    mask = torch.cat([torch.ones(1, 12), torch.zeros(1, 4)], 1).long()
    with torch.no_grad():
        a = model(ids).logits
        b = model(padded, mask).logits[:, :12]
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_packed_sequences_refused_with_prompt():
    model = tiny_model()
    peft.apply(model, peft.PromptConfig(num_tokens=2))
    ids, _, _ = tiny_batch()
    with pytest.raises(ValueError, match="packed"):
        model(ids, seq_idx=torch.zeros_like(ids))


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model = tiny_model()
        peft.apply(model, [peft.PromptConfig(num_tokens=2), peft.AffixConfig(num_tokens=2),
                           peft.AdditionalScanConfig(num_states=2), peft.ParallelAdapterConfig(bottleneck=4),
                           peft.LoRAConfig(targets=["in_proj"], output_slice="z")])
        model.backbone.gradient_checkpointing = checkpointing
        ids, mask, labels = tiny_batch()
        params = list(peft.get_adapter_params(model).values())
        grads.append(torch.autograd.grad(model(ids, mask, labels=labels).loss, params))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
