"""LoRA adapters saved in Hugging Face PEFT's format load with PeftModel.from_pretrained onto
transformers' MambaForCausalLM and give our model's logits; what PEFT cannot hold is said, not written."""
import json

import pytest
import torch

from mambatune.core import MambaConfig, MambaForTask, peft
from mambatune.core.checkpoints import export_hf

transformers = pytest.importorskip("transformers")
hf_peft = pytest.importorskip("peft")


def lm(seed=0):
    torch.manual_seed(seed)
    return MambaForTask(MambaConfig(d_model=16, n_layer=2, vocab_size=32, d_state=4)).eval()


def randomise_lora(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)


def test_lora_and_lorap_load_in_hf_peft_with_the_same_logits(tmp_path):
    model = lm()
    export_hf(model, tmp_path / "base")
    peft.apply(model, peft.PeftConfig.from_dict({"methods": [
        {"method": "lora", "targets": ["x_proj"], "rank": 4, "alpha": 8},
        {"method": "lora", "targets": ["in_proj"], "rank": 2, "alpha": 8, "output_slice": "x"},  # LoRAp(X)
    ]}))
    randomise_lora(model)
    peft.save_adapter(model, tmp_path / "adapter", base_model=str(tmp_path / "base"))
    assert model.peft_state.hf_note is None
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["rank_pattern"]  # ranks 4 and 2
    ids = torch.randint(0, 32, (2, 23))
    base = transformers.MambaForCausalLM.from_pretrained(tmp_path / "base")
    loaded = hf_peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        ours, theirs = model(ids).logits, loaded(input_ids=ids).logits
        plain = transformers.MambaForCausalLM.from_pretrained(tmp_path / "base")(input_ids=ids).logits
    assert (ours - plain).abs().max() > 1e-3  # the adapter changes the output ...
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)  # ... and PEFT applies it as we do
    # our own files load back as before
    again = lm()
    peft.load_adapter(again, tmp_path / "adapter")
    torch.testing.assert_close(again(ids).logits, ours)


def test_targets_transformers_would_skip_are_reported(tmp_path):
    model = lm()
    peft.apply(model, peft.PeftConfig.from_dict({"methods": [{"method": "lora", "targets": ["in_proj", "out_proj",
                                                                                          "dt_proj"]}]}))
    peft.save_adapter(model, tmp_path / "a")
    assert "a LoRA on dt_proj, out_proj does not reach transformers' Mamba" in model.peft_state.hf_note
    assert not (tmp_path / "a" / "adapter_model.safetensors").exists() and (tmp_path / "a" / "adapter.safetensors").is_file()


def test_methods_peft_cannot_hold_are_reported_and_legacy_folders_load(tmp_path):
    model = lm()
    peft.apply(model, peft.PeftConfig.from_dict({"methods": [{"method": "prompt", "num_tokens": 2}]}))
    peft.save_adapter(model, tmp_path / "a")
    assert "holds LoRA only; this adapter also uses prompt" in model.peft_state.hf_note
    assert not (tmp_path / "a" / "adapter_config.json").exists()
    # a folder written before PEFT's files: our config under adapter_config.json
    (tmp_path / "a" / "mambatune_adapter.json").rename(tmp_path / "a" / "adapter_config.json")
    peft.load_adapter(lm(), tmp_path / "a")
