"""PEFT on a Mamba-2 model: every method that applies trains; the one that does not says so."""
import pytest
import torch

from helpers import assert_close
from mambatune.core import MambaConfig
from mambatune.core.config import ConfigError
from mambatune.core.heads import MambaForTask, SequenceClassificationHead
from mambatune.core import peft

TINY = dict(d_model=32, n_layer=2, vocab_size=50, d_state=8, arch="mamba2", headdim=8, ngroups=2, chunk_size=8)


def tiny(head=None, **kw):
    torch.manual_seed(0)
    cfg = MambaConfig(**{**TINY, **kw})
    return MambaForTask(cfg, head=head)


def test_lora_on_in_proj_and_out_proj_changes_the_output_and_merges():
    m = tiny().eval()
    ids = torch.randint(0, 50, (2, 13))
    with torch.no_grad():
        base = m(ids).logits
    peft.apply(m, {"method": "lora", "targets": ["in_proj", "out_proj"], "rank": 4})
    with torch.no_grad():
        assert_close(m(ids).logits, base, 1e-6, "LoRA starts as the base model")
        for name, p in m.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(std=0.1)
        adapted = m(ids).logits
        assert (adapted - base).abs().max() > 1e-3, "LoRA on in_proj/out_proj must change a Mamba-2 model's output"
        peft.merge(m)
        assert_close(m(ids).logits, adapted, 1e-5, "merged")


@pytest.mark.parametrize("part", ["x", "z"])
def test_lorap_slices_name_mamba2_rows(part):
    m = tiny()
    peft.apply(m, {"method": "lora", "targets": ["in_proj"], "output_slice": part, "rank": 2})
    mixer = m.backbone.layers[0].mixer
    d_ssm, conv_dim = mixer.d_ssm, mixer.conv_dim
    assert mixer.in_proj.rows == ((0, d_ssm) if part == "z" else (d_ssm, d_ssm + conv_dim))


CASES = {
    "lora": [{"method": "lora", "targets": ["in_proj", "out_proj"], "rank": 2}],
    "lorap_x_dora": [{"method": "lora", "targets": ["in_proj"], "output_slice": "x", "rank": 2, "dora": True}],
    "prompt": [{"method": "prompt", "num_tokens": 3}],
    "affix": [{"method": "affix", "num_tokens": 2}],
    "partial": [{"method": "partial", "groups": ["A_log", "D", "dt_bias", "norms", "conv1d"]}],
    "parallel_adapter": [{"method": "parallel_adapter", "bottleneck": 4}],
    "top_layers": [{"method": "top_layers", "k": 1}],
    "head_only": [{"method": "head_only"}],
    "hybrid": [{"method": "lora", "rank": 2}, {"method": "partial", "groups": ["dt_bias"]}],
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_method_trains_on_mamba2(case, tmp_path):
    m = tiny(head=SequenceClassificationHead(32, 3)).train()
    peft.apply(m, CASES[case])
    params = peft.get_adapter_params(m)
    assert params
    ids, labels = torch.randint(0, 50, (2, 11)), torch.tensor([0, 2])
    m(ids, labels=labels).loss.backward()
    touched = [n for n, p in params.items() if p.grad is not None and p.grad.abs().sum() > 0]
    assert touched, f"{case}: no adapter parameter got a gradient"
    if case == "partial":
        names = set(params)
        assert any(n.endswith("mixer.dt_bias") for n in names) and any(n.endswith("mixer.norm.weight") for n in names)
    peft.save_adapter(m, tmp_path)
    fresh = tiny(head=SequenceClassificationHead(32, 3))
    peft.load_adapter(fresh, tmp_path)
    fresh.load_state_dict(m.state_dict())
    m.eval(), fresh.eval()
    with torch.no_grad():
        assert_close(fresh(ids).logits, m(ids).logits, 1e-6, "adapter round trip")


def test_additional_scan_is_refused_clearly_on_mamba2():
    with pytest.raises(ConfigError, match="Mamba-2"):
        peft.apply(tiny(), {"method": "additional_scan", "num_states": 2})


def test_mamba1_targets_say_what_mamba2_has():
    with pytest.raises(ConfigError, match="x_proj.*matches nothing"):
        peft.apply(tiny(), {"method": "lora", "targets": ["x_proj"]})


def test_generation_cache_reads_prompt_affix_and_lora_once():
    m = tiny().eval()
    peft.apply(m, [{"method": "prompt", "num_tokens": 3}, {"method": "affix", "num_tokens": 2},
                   {"method": "lora", "targets": ["in_proj", "out_proj"], "rank": 2}])
    for p in peft.get_adapter_params(m).values():
        torch.nn.init.normal_(p, std=0.1)  # make every adapter matter
    ids = torch.randint(0, 50, (2, 10))
    with torch.no_grad():
        full = m(ids).logits
        cache = m.backbone.new_cache(2)
        steps = [m(ids[:, :6], cache=cache).logits] + [m(ids[:, t:t + 1], cache=cache).logits for t in range(6, 10)]
    assert_close(torch.cat(steps, 1), full, 1e-5, "cached steps")
