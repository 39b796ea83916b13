"""Mamba-2 in the model: config checks, recurrent steps, padding and packing, Hugging Face parity."""
import json

import pytest
import torch

from helpers import assert_close
from mambatune.core import MambaConfig
from mambatune.core.checkpoints import CheckpointError, atomic_save_safetensors, export_hf, load_config, load_pretrained
from mambatune.core.config import ConfigError
from mambatune.core.heads import MambaForTask

TINY = dict(d_model=32, n_layer=2, vocab_size=50, d_state=8, arch="mamba2", headdim=8, ngroups=2, chunk_size=8)


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return MambaForTask(MambaConfig(**{**TINY, **kw})).eval()


def test_config_checks_mamba2_fields():
    cfg = MambaConfig(**TINY)
    assert cfg.nheads == 8 and MambaConfig().arch == "mamba1"
    with pytest.raises(ConfigError, match="arch must be one of"):
        MambaConfig(arch="mamba3")
    with pytest.raises(ConfigError, match="multiple of headdim"):
        MambaConfig(**{**TINY, "headdim": 7})
    with pytest.raises(ConfigError, match="must divide the number of heads"):
        MambaConfig(**{**TINY, "ngroups": 3})
    with pytest.raises(ConfigError, match="d_ssm"):
        MambaConfig(**{**TINY, "d_ssm": 128})
    with pytest.raises(ConfigError, match="dt_limit"):
        MambaConfig(**{**TINY, "dt_limit": [0.5, 0.1]})
    assert MambaConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("kw", [{}, {"d_ssm": 48, "norm_before_gate": True, "dt_limit": [0.0, 0.5]}])
def test_steps_and_prefill_match_the_full_forward(kw):
    m = tiny(**kw)
    ids = torch.randint(0, 50, (2, 21))
    with torch.no_grad():
        full = m(ids).logits
        cache = m.backbone.new_cache(2)
        steps = torch.cat([m(ids[:, t:t + 1], cache=cache).logits for t in range(21)], 1)
        cache = m.backbone.new_cache(2)
        parts = torch.cat([m(ids[:, :13], cache=cache).logits, m(ids[:, 13:], cache=cache).logits], 1)
    assert_close(steps, full, 1e-5, "step by step")
    assert_close(parts, full, 1e-5, "prefill then the rest")


def test_padding_and_packing():
    m = tiny()
    a, b = torch.randint(0, 50, (1, 11)), torch.randint(0, 50, (1, 7))
    with torch.no_grad():
        la, lb = m(a).logits, m(b).logits
        padded = torch.cat([b, torch.zeros(1, 4, dtype=torch.long)], 1)
        mask = torch.ones(1, 11, dtype=torch.long)
        mask[:, 7:] = 0
        assert_close(m(padded, attention_mask=mask).logits[:, :7], lb, 1e-5, "right padding")
        packed = torch.cat([a, b], 1)
        seq_idx = torch.tensor([[0] * 11 + [1] * 7])
        out = m(packed, seq_idx=seq_idx).logits
    assert_close(out[:, :11], la, 1e-5, "first document")
    assert_close(out[:, 11:], lb, 1e-5, "second document")


def test_bidirectional_mamba2_runs_and_trains():
    m = tiny(bidirectional=True, bidirectional_strategy="gate").train()
    ids = torch.randint(0, 50, (2, 9))
    out = m(ids, labels=ids)
    out.loss.backward()
    assert torch.isfinite(out.loss) and m.backbone.layers[0].mixer.rev.A_log.grad is not None


def hf_tiny(tmp_path, tie: bool, seed: int = 0):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = transformers.Mamba2Config(
        hidden_size=32, num_hidden_layers=2, vocab_size=64, state_size=8, head_dim=8, num_heads=8, n_groups=2,
        expand=2, conv_kernel=4, chunk_size=8, tie_word_embeddings=tie, use_conv_bias=True, residual_in_fp32=True,
        **({} if tie else {"time_step_limit": (0.0, 2.0)}),  # the default (0, inf) is saved as {"__float__": ...}
    )
    hf = transformers.Mamba2ForCausalLM(cfg).eval()
    with torch.no_grad():  # move the parameters HF initialises to constants
        for name, p in hf.named_parameters():
            if name.endswith(("A_log", "D", "dt_bias", "norm.weight", "norm_f.weight")):
                p.add_(0.3 * torch.randn_like(p))
    hf.save_pretrained(tmp_path / "hf")
    return hf


@pytest.mark.parametrize("tie", [False, True])
def test_hf_mamba2_logits_match_and_export_round_trips(tmp_path, tie):
    hf = hf_tiny(tmp_path, tie)
    ours = load_pretrained(tmp_path / "hf").eval()
    assert ours.config.arch == "mamba2" and ours.load_report.source_format == "hf_mamba2"
    assert ours.config.dt_limit == (None if tie else [0.0, 2.0])
    ids = torch.randint(0, 64, (2, 19))
    with torch.no_grad():
        ref = hf(ids).logits.float()
        assert_close(ours(ids).logits, ref, 1e-5, "logits")
        mask = torch.ones(2, 19, dtype=torch.long)
        mask[0, :5] = 0  # left padding, as HF batches generation
        ref_m = hf(ids, attention_mask=mask).logits.float()
        assert_close(ours(ids, attention_mask=mask).logits[0, 5:], ref_m[0, 5:], 1e-5, "left-padded logits")
    transformers = pytest.importorskip("transformers")
    export_hf(ours, tmp_path / "export")
    back = transformers.Mamba2ForCausalLM.from_pretrained(tmp_path / "export").eval()
    with torch.no_grad():
        assert_close(back(ids).logits.float(), ref, 1e-5, "exported logits")


def test_mamba_ssm_mamba2_config_and_refusals(tmp_path):
    cfg = {"d_model": 32, "n_layer": 1, "vocab_size": 16, "pad_vocab_size_multiple": 8,
           "ssm_cfg": {"layer": "Mamba2", "d_state": 8, "headdim": 16, "ngroups": 1, "chunk_size": 16}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    config, _, fmt = load_config(tmp_path)
    assert fmt == "mamba_ssm" and config.arch == "mamba2" and config.nheads == 4 and config.d_state == 8
    sd = {k.replace("head.weight", "lm_head.weight"): v for k, v in MambaForTask(config).state_dict().items()}
    atomic_save_safetensors(sd, tmp_path / "model.safetensors")
    assert load_pretrained(tmp_path).config.arch == "mamba2"
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "ssm_cfg": {**cfg["ssm_cfg"], "D_has_hdim": True}}))
    with pytest.raises(CheckpointError, match="D_has_hdim"):
        load_config(tmp_path)
    with pytest.raises(CheckpointError, match="cannot hold this model"):
        export_hf(tiny(bidirectional=True), tmp_path / "out")


def test_mamba2_triton_backend_matches_chunked():
    """The model on backend='triton' (conv and SSD kernels; under TRITON_INTERPRET=1 without a GPU, tiny)."""
    pytest.importorskip("triton")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    length = 300 if device == "cuda" else 20
    ids = torch.randint(0, 50, (2 if device == "cuda" else 1, length), device=device)
    seq_idx = (torch.arange(length, device=device) >= length // 2).long().expand_as(ids)
    outs = {}
    for backend in ("chunked", "triton"):
        kw = dict(d_model=32, headdim=16, d_state=16, chunk_size=64) if device == "cuda" else \
            dict(d_model=16, n_layer=1, headdim=8, d_state=4, ngroups=1, chunk_size=16)
        m = tiny(backend=backend, **kw).to(device).train()
        out = m(ids, labels=ids, seq_idx=seq_idx)
        out.loss.backward()
        outs[backend] = (out.logits.detach(), {n: p.grad for n, p in m.named_parameters()})
    assert_close(outs["triton"][0], outs["chunked"][0], 1e-4, "logits")
    for n, g in outs["chunked"][1].items():
        assert_close(outs["triton"][1][n], g, 1e-3, f"grad {n}")
