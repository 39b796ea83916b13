"""Export to Hugging Face: our native model (project defaults, not an HF config) loads in transformers
with the same logits, and the tokenizer travels as files transformers reads."""
import pytest
import torch

from helpers import assert_close
from mambatune.core import MambaConfig, MambaForTask
from mambatune.core.checkpoints import config_to_hf, export_hf

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("tie", [True, False])
def test_native_model_round_trips_through_transformers(tmp_path, tie):
    torch.manual_seed(3)
    # the project's defaults (rescale_prenorm_residual among them), small shapes, a vocab that pads (13 -> 16)
    cfg = MambaConfig(d_model=32, n_layer=3, vocab_size=13, d_state=8, tie_embeddings=tie, backend="reference")
    model = MambaForTask(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ids = torch.randint(0, 13, (2, 21), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = model(ids).logits
    export_hf(model, tmp_path)
    back = transformers.MambaForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        got = back(ids).logits
    assert_close(got[..., :expected.shape[-1]], expected, 1e-5, "logits in transformers")
    ours = model.state_dict()
    for name, p in back.state_dict().items():  # no weight changed at load
        name = "backbone.embeddings.weight" if tie and name == "lm_head.weight" else name
        mine = ours[name.replace("backbone.embeddings.", "backbone.embedding.").replace("lm_head.", "head.")]
        assert torch.equal(p[:mine.shape[0]], mine), name


def test_exported_config_has_no_load_time_rewrites():
    hf = config_to_hf(MambaConfig(d_model=16, n_layer=2, vocab_size=8))
    assert hf["rescale_prenorm_residual"] is False
    assert hf["dtype"] == "float32"
