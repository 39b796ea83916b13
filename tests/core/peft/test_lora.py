"""LoRA, LoRAp and DoRA: slices, merge / unmerge / unload with unchanged outputs."""
import pytest
import torch

from peft_fixtures import tiny_batch, tiny_model
from mambatune.core import peft
from mambatune.core.peft import LoRALinear


def trained(model, methods, steps=2):
    peft.apply(model, methods)
    opt = torch.optim.Adam(peft.get_adapter_params(model).values(), lr=5e-2)
    ids, mask, labels = tiny_batch()
    for _ in range(steps):
        model(ids, mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


@pytest.mark.parametrize("methods", [
    [peft.LoRAConfig(targets=["in_proj", "x_proj", "dt_proj", "out_proj", "score"])],
    [peft.LoRAConfig(targets=["in_proj"], output_slice="x")],
    [peft.LoRAConfig(targets=["in_proj"], output_slice="z", dora=True)],
    [peft.LoRAConfig(targets=["x_proj", "out_proj"], dora=True), peft.AdditionalScanConfig(num_states=2)],
], ids=["lora", "lorap_x", "dora_z", "dora_hybrid"])
def test_merge_unmerge_unload(methods, backend):
    model = trained(tiny_model(backend), methods)
    ids, mask, _ = tiny_batch()
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        y0 = model(ids, mask).logits
        peft.merge(model)
        weights_changed = any(not torch.equal(p, base[n]) for n, p in model.named_parameters())
        y1 = model(ids, mask).logits
        peft.unmerge(model)
        y2 = model(ids, mask).logits
        restored = {n: p.detach().clone() for n, p in model.named_parameters()}
        peft.merge(model, unload=True)
        y3 = model(ids, mask).logits
    assert weights_changed
    for y in (y1, y2, y3):
        torch.testing.assert_close(y, y0, rtol=1e-4, atol=1e-5)
    for n, p in restored.items():
        torch.testing.assert_close(p, base[n], rtol=1e-5, atol=1e-6)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert not any("lora_" in n for n in peft.get_adapter_params(model))


def test_partial_lora_touches_only_its_rows():
    model = tiny_model()
    peft.apply(model, peft.LoRAConfig(targets=["in_proj"], output_slice="x", rank=2))
    layer = model.backbone.layers[0].mixer.in_proj
    d_inner = model.config.d_inner
    assert layer.rows == (0, d_inner) and layer.lora_B.shape == (d_inner, 2)
    torch.nn.init.normal_(layer.lora_B)
    x = torch.randn(3, 16)
    delta = layer(x) - torch.nn.functional.linear(x, layer.weight, layer.bias)
    assert delta[:, :d_inner].abs().max() > 0 and delta[:, d_inner:].abs().max() == 0


def test_lora_keeps_base_parameter_names():
    model = tiny_model()
    before = {n for n, _ in model.named_parameters()}
    peft.apply(model, peft.LoRAConfig(targets=["in_proj", "score"], dora=True))
    after = {n for n, _ in model.named_parameters()}
    assert before <= after
    assert {n.rsplit(".", 1)[-1] for n in after - before} == {"lora_A", "lora_B", "lora_magnitude"}


def test_layers_option_limits_lora_to_chosen_blocks():
    model = tiny_model()
    peft.apply(model, peft.LoRAConfig(targets=["in_proj", "score"], layers=[1]))
    names = peft.get_adapter_params(model)
    assert any(n.startswith("backbone.layers.1.") for n in names)
    assert not any(n.startswith("backbone.layers.0.") for n in names)
    assert any(n.startswith("head.score.") for n in names)


def test_slice_outside_outputs_raises():
    with pytest.raises(ValueError, match="outside"):
        peft.apply(tiny_model(), peft.LoRAConfig(targets=["dt_proj"], output_slice=[0, 1000]))
