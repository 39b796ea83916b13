import pytest
import torch

from mambatune.core.training import Precision, Trainer, fp32_parameter_names

from .conftest import accuracy, collate, tiny_data, tiny_model


def test_fp32_names_cover_alog_d_norms():
    names = set(fp32_parameter_names(tiny_model()))
    assert {"backbone.layers.0.mixer.A_log", "backbone.layers.0.mixer.D", "backbone.layers.0.norm.weight",
            "backbone.norm_f.weight"} <= names
    assert "backbone.layers.0.mixer.in_proj.weight" not in names


@pytest.mark.parametrize("mode", ["bf16", "fp16"])
def test_half_precision_trains_with_fp32_master_weights(mode, fast_cfg):
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, fast_cfg(precision=mode, max_steps=3), tiny_data(32), None, collate, accuracy)
    result = trainer.train()
    assert result.steps == 3
    assert all(p.dtype == torch.float32 for p in model.parameters())
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert "backbone.layers.0.mixer.in_proj.weight" in changed
    assert (trainer.precision.scaler is not None) == (mode == "fp16")
    if mode == "fp16":
        assert trainer.precision.state_dict()["scale"] > 0


def test_autocast_runs_projections_in_half():
    model = tiny_model()
    seen = {}

    def hook(module, args, out):
        seen["dtype"] = out.dtype

    model.backbone.layers[0].mixer.in_proj.register_forward_hook(hook)
    with Precision("bf16").autocast():
        model(torch.randint(1, 32, (2, 8)))
    assert seen["dtype"] == torch.bfloat16


def test_unknown_precision():
    with pytest.raises(ValueError, match="unknown precision"):
        Precision("fp8")
