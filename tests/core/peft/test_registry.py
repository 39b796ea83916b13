"""Configs, errors, summary and adapter-only save / load."""
import json

import pytest
import torch
from safetensors.torch import load_file

from peft_fixtures import tiny_batch, tiny_model
from mambatune.core import ConfigError, peft


def test_bad_target_lists_available_names():
    with pytest.raises(ConfigError) as err:
        peft.apply(tiny_model(), peft.LoRAConfig(targets=["in_prj"]))
    msg = str(err.value)
    assert "'in_prj' matches nothing" in msg and "did you mean 'in_proj'" in msg.lower()
    assert "backbone.layers.*.mixer.x_proj" in msg and "head.score" in msg


def test_bad_partial_pattern_and_lm_head_only():
    with pytest.raises(ConfigError, match="matches nothing"):
        peft.apply(tiny_model(), peft.PartialConfig(groups=[], params=["mixer.nothing"]))
    with pytest.raises(ConfigError, match="tied to the embedding"):
        peft.apply(tiny_model(head="lm"), peft.HeadOnlyConfig())


@pytest.mark.parametrize("d, match", [
    ({"method": "lora", "rnk": 4}, "did you mean 'rank'"),
    ({"method": "lorra"}, "did you mean 'lora'"),
    ({"rank": 4}, "needs a 'method' key"),
    ({"method": "lora", "rank": 0}, "rank must be"),
    ({"method": "lora", "output_slice": "y"}, "output_slice"),
    ({"method": "additional_scan", "init": "s4d-real"}, "did you mean 's4d_real'"),
    ({"method": "partial", "groups": ["A_logs"]}, "did you mean 'A_log'"),
    ({"method": "parallel_adapter", "position": "blok"}, "did you mean 'block'"),
])
def test_config_errors(d, match):
    with pytest.raises(ConfigError, match=match):
        peft.method_config(d)


def test_peft_config_from_dict_round_trip():
    d = {"methods": [{"method": "lora", "targets": ["in_proj"], "output_slice": "x"},
                     {"method": "additional_scan", "num_states": 4}], "train_head": True}
    cfg = peft.PeftConfig.from_dict(d)
    assert isinstance(cfg.methods[0], peft.LoRAConfig) and cfg.methods[1].num_states == 4
    assert peft.PeftConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="did you mean 'methods'"):
        peft.PeftConfig.from_dict({"method_list": []})
    with pytest.raises(ConfigError, match="train_head"):
        peft.PeftConfig([], train_head="yes")


def test_apply_twice_refused():
    model = peft.apply(tiny_model(), peft.LoRAConfig())
    with pytest.raises(ValueError, match="already has PEFT adapters"):
        peft.apply(model, peft.AffixConfig())


def test_summary_counts():
    model = peft.apply(tiny_model(), [peft.LoRAConfig(targets=["in_proj"], rank=2), peft.AdditionalScanConfig(num_states=2)])
    text = peft.trainable_summary(model, file=None)
    d_inner, d_model = model.config.d_inner, model.config.d_model
    lora = 2 * (2 * (d_model + 2 * d_inner))
    scan = 2 * (2 * 2 * d_inner + d_inner * 2)
    head = 16 * 3 + 3
    assert f"{lora:,}" in text and f"{scan:,}" in text and f"{head:,}" in text
    assert f"{lora + scan + head:,}" in text.split("trainable")[1].splitlines()[0]


def test_summary_prints_to_stdout(capsys):
    text = peft.trainable_summary(peft.apply(tiny_model(), peft.AffixConfig()))
    assert capsys.readouterr().out.strip() == text.strip() and "affix" in text


def test_set_trainable_params():
    model = peft.apply(tiny_model(), peft.LoRAConfig())
    names = list(peft.get_adapter_params(model))[:1]
    peft.set_trainable_params(model, names)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == names
    with pytest.raises(ValueError, match="unknown parameter"):
        peft.set_trainable_params(model, ["nope"])


HYBRID = [peft.LoRAConfig(targets=["in_proj", "out_proj"], dora=True), peft.AdditionalScanConfig(num_states=2),
          peft.PromptConfig(num_tokens=2), peft.AffixConfig(num_tokens=2), peft.ParallelAdapterConfig(bottleneck=4),
          peft.PartialConfig(groups=["D", "norms"])]


def test_save_load_round_trip(tmp_path):
    model = peft.apply(tiny_model(seed=3), HYBRID)
    with torch.no_grad():
        for p in peft.get_adapter_params(model).values():
            p.add_(0.05 * torch.randn_like(p))
    model.eval()
    ids, mask, _ = tiny_batch()
    with torch.no_grad():
        y = model(ids, mask).logits
    folder = peft.save_adapter(model, tmp_path / "run")
    tensors = load_file(str(folder / "adapter.safetensors"))
    assert set(tensors) == set(peft.get_adapter_params(model))
    assert not any(n.endswith("mixer.in_proj.weight") or n.endswith("x_proj.weight") for n in tensors)
    fresh = tiny_model(seed=3).eval()  # the same base weights, no adapters
    peft.load_adapter(fresh, folder)
    with torch.no_grad():
        torch.testing.assert_close(fresh(ids, mask).logits, y)
    assert fresh.peft_state.config == model.peft_state.config


def test_load_into_mismatched_model(tmp_path):
    model = peft.apply(tiny_model(), peft.LoRAConfig())
    peft.save_adapter(model, tmp_path)
    other = peft.apply(tiny_model(), peft.LoRAConfig(rank=2))
    with pytest.raises(ValueError, match="differs"):
        peft.load_adapter(other, tmp_path)
    with pytest.raises(FileNotFoundError):
        peft.load_adapter(tiny_model(), tmp_path / "missing")
    peft.merge(model)
    with pytest.raises(ValueError, match="unmerge"):
        peft.save_adapter(model, tmp_path)
