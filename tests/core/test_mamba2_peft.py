"""PEFT on a Mamba-2 model: every method trains, additional-scan as extra states or extra heads included
(identity at first, the recurrent cache carries them, merge and adapter-only save as on Mamba-1)."""
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
    "additional_scan_states": [{"method": "additional_scan", "num_states": 3}],
    "additional_scan_heads": [{"method": "additional_scan", "mode": "heads", "num_heads": 3}],
    "additional_scan_heads_s4d": [{"method": "additional_scan", "mode": "heads", "num_heads": 1, "init": "s4d_real"}],
    "hybrid_scan": [{"method": "lora", "targets": ["in_proj"], "output_slice": "x", "rank": 2},
                    {"method": "additional_scan", "mode": "heads", "num_heads": 2}],
}
SCANS = {"states": {"method": "additional_scan", "num_states": 3},
         "heads": {"method": "additional_scan", "mode": "heads", "num_heads": 3},
         "heads_s4d": {"method": "additional_scan", "mode": "heads", "num_heads": 2, "init": "s4d_real"}}


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
    if case.startswith("additional_scan"):
        # parameters behind a zero (C columns, the heads' out projection) get gradient once it has moved
        torch.optim.SGD(params.values(), lr=0.5).step()
        m.zero_grad()
        m(ids, labels=labels).loss.backward()
        for n, p in params.items():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{case}: {n} received no gradient"
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


@pytest.mark.parametrize("scan", list(SCANS))
@pytest.mark.parametrize("backend", ["chunked", "reference"])
def test_additional_scan_starts_as_the_base_model(scan, backend):
    m = tiny(backend=backend).eval()
    ids = torch.randint(0, 50, (2, 13))
    with torch.no_grad():
        base = m(ids).logits
        peft.apply(m, SCANS[scan])
        assert_close(m(ids).logits, base, 1e-6, f"additional_scan {scan} at init")


@pytest.mark.parametrize("scan", list(SCANS))
def test_additional_scan_shapes_and_trainable_parameters(scan):
    m = tiny()
    peft.apply(m, SCANS[scan])
    mixer = m.backbone.layers[0].mixer
    state = mixer.new_state(2, "cpu")
    if scan == "states":
        assert state.ssm.shape == (2, mixer.nheads, mixer.headdim, 8 + 3)
    else:
        k = SCANS[scan]["num_heads"]
        assert state.ssm.shape == (2, mixer.nheads + k, mixer.headdim, 8)
        ext = mixer.ssm_extension
        assert ext.x_proj.shape == (k * mixer.headdim, mixer.d_ssm) and ext.out.shape == (32, k * mixer.headdim)
        if scan == "heads":  # copies of the last heads
            assert_close(ext.A_log.detach(), mixer.A_log.detach()[-k:], 0, "A_log copied")
    names = set(peft.get_adapter_params(m))
    assert names and all(".ssm_extension." in n for n in names)


@pytest.mark.parametrize("scan", list(SCANS))
def test_additional_scan_generation_cache_matches_the_full_forward(scan):
    m = tiny().eval()
    peft.apply(m, [SCANS[scan], {"method": "affix", "num_tokens": 2}])
    for p in peft.get_adapter_params(m).values():
        torch.nn.init.normal_(p, std=0.1)
    ids = torch.randint(0, 50, (2, 10))
    with torch.no_grad():
        full = m(ids).logits
        cache = m.backbone.new_cache(2)
        steps = [m(ids[:, :4], cache=cache).logits] + [m(ids[:, t:t + 1], cache=cache).logits for t in range(4, 10)]
    assert_close(torch.cat(steps, 1), full, 1e-5, f"cached steps with additional_scan {scan}")


@pytest.mark.parametrize("scan", list(SCANS))
def test_additional_scan_packed_rows_match_separate_rows(scan):
    """seq_idx resets the extra states / heads at document boundaries as it resets the mixer's own."""
    m = tiny().eval()
    peft.apply(m, SCANS[scan])
    for p in peft.get_adapter_params(m).values():
        torch.nn.init.normal_(p, std=0.1)
    a, b = torch.randint(0, 50, (1, 7)), torch.randint(0, 50, (1, 6))
    seq_idx = torch.tensor([[0] * 7 + [1] * 6])
    with torch.no_grad():
        packed = m.backbone(torch.cat([a, b], 1), seq_idx=seq_idx)
        alone = torch.cat([m.backbone(a), m.backbone(b)], 1)
    assert_close(packed, alone, 1e-5, "packed")


@pytest.mark.parametrize("scan", list(SCANS))
def test_additional_scan_merge_and_adapter_only_save(scan, tmp_path):
    """As on Mamba-1: LoRA beside it merges (the extra states / heads stay adapter modules), and the
    adapter-only folder restores the trained extension onto a fresh base model."""
    m = tiny(head=SequenceClassificationHead(32, 3)).eval()
    peft.apply(m, [SCANS[scan], {"method": "lora", "targets": ["in_proj", "out_proj"], "rank": 2}])
    for p in peft.get_adapter_params(m).values():
        torch.nn.init.normal_(p, std=0.1)
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        adapted = m(ids).logits
    peft.save_adapter(m, tmp_path)
    fresh = tiny(head=SequenceClassificationHead(32, 3)).eval()
    peft.load_adapter(fresh, tmp_path)
    with torch.no_grad():
        assert_close(fresh(ids).logits, adapted, 1e-6, "adapter-only round trip")
        peft.merge(m)
        assert_close(m(ids).logits, adapted, 1e-5, "merged LoRA beside additional_scan")


def test_additional_scan_on_bidirectional_mamba2_extends_both_directions():
    m = tiny(bidirectional=True).eval()
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        base = m(ids).logits
        peft.apply(m, SCANS["heads"])
        assert_close(m(ids).logits, base, 1e-6, "bidirectional at init")
    names = peft.get_adapter_params(m)
    assert any(".rev.ssm_extension." in n for n in names) and any(".fwd.ssm_extension." in n for n in names)


def test_additional_scan_errors_name_the_problem():
    with pytest.raises(ConfigError, match="mode must be one of"):
        peft.apply(tiny(), {"method": "additional_scan", "mode": "head"})
    with pytest.raises(ValueError, match="limit of 256"):
        peft.apply(tiny(), {"method": "additional_scan", "num_states": 250})
    mamba1 = MambaForTask(MambaConfig(d_model=16, n_layer=1, vocab_size=50, d_state=4))
    with pytest.raises(ConfigError, match="needs a Mamba-2 model"):
        peft.apply(mamba1, {"method": "additional_scan", "mode": "heads"})


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


@pytest.mark.parametrize("scan", ["states", "heads"])
def test_additional_scan_through_the_triton_kernels(scan):
    """The extension only changes the scan's inputs, so the Triton SSD kernels (here under the interpreter)
    run it too: same output as the chunked path, and the adapter's parameters get their gradients."""
    ids, labels = torch.randint(0, 50, (2, 11)), torch.tensor([0, 2])
    outs = {}
    for backend in ("chunked", "triton"):
        m = tiny(head=SequenceClassificationHead(32, 3), backend=backend, n_layer=1)
        peft.apply(m, [SCANS[scan], {"method": "lora", "targets": ["in_proj"], "rank": 2}])
        torch.manual_seed(1)
        for p in peft.get_adapter_params(m).values():
            torch.nn.init.normal_(p, std=0.1)
        out = m(ids, labels=labels)
        out.loss.backward()
        outs[backend] = (out.logits.detach(), {n: p.grad for n, p in peft.get_adapter_params(m).items()})
    assert_close(outs["triton"][0], outs["chunked"][0], 1e-5, "logits")
    for n, g in outs["chunked"][1].items():
        assert outs["triton"][1][n] is not None, n
        assert_close(outs["triton"][1][n], g, 1e-4, f"grad {n}")
