"""Non-finite losses and gradients never reach the weights or a checkpoint; messages name what is intact."""
import json

import pytest
import torch
from safetensors.torch import load_file

from mambatune.core.training import NonFiniteLossError, Trainer, list_checkpoints, read_metrics

from .conftest import collate, tiny_data, tiny_model


def inf_gradient_at(model, calls: set[int]):
    """A hook that makes the gradient of one weight inf on the given backward calls (the loss stays finite)."""
    count = {"n": 0}

    def hook(grad):
        count["n"] += 1
        return torch.full_like(grad, float("inf")) if count["n"] in calls else grad

    return model.backbone.layers[0].mixer.in_proj.weight.register_hook(hook)


def all_finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def test_inf_gradient_is_skipped_and_counted(fast_cfg, tmp_path):
    model = tiny_model()
    inf_gradient_at(model, {2, 4})
    result = Trainer(model, fast_cfg(max_steps=6, save_every=1), tiny_data(64), None, collate).train()
    assert result.steps == 6 and all_finite(model.state_dict().values())
    run = tmp_path / "run"
    for ckpt in list_checkpoints(run / "checkpoints"):
        assert all_finite(load_file(ckpt / "model.safetensors").values()), ckpt
    records = read_metrics(run / "metrics.jsonl")
    skips = [r for r in records if r.get("event") == "nonfinite_skip"]
    assert [r["step"] for r in skips] == [2, 4] and skips[-1]["nonfinite_skips"] == 2
    assert skips[0]["what"] == "gradients" and skips[0]["grad_norm"] == "inf"
    assert [r["nonfinite_skips"] for r in records if "train/loss" in r] == [0, 1, 1, 2, 2, 2]
    state = json.loads((list_checkpoints(run / "checkpoints")[-1] / "trainer_state.json").read_text())
    assert state["nonfinite_skips"] == 2


def test_stop_policy_and_the_limit_name_the_intact_checkpoint(fast_cfg, tmp_path):
    model = tiny_model()
    inf_gradient_at(model, {3})
    trainer = Trainer(model, fast_cfg(max_steps=6, save_every=1, nonfinite="stop"), tiny_data(64), None, collate)
    with pytest.raises(NonFiniteLossError, match=r"step 3 .*nonfinite=stop.*The newest intact checkpoint is .*step-00000002"):
        trainer.train()
    assert all_finite(model.state_dict().values())
    # every step non-finite from the start: stopped after the limit, and no checkpoint is intact
    model = tiny_model()
    inf_gradient_at(model, set(range(1, 100)))
    cfg = fast_cfg(output_dir=str(tmp_path / "r2"), max_steps=20, save_every=0, max_nonfinite_skips=3)
    with pytest.raises(NonFiniteLossError, match=r"3 steps in a row.*No intact checkpoint exists"):
        Trainer(model, cfg, tiny_data(64), None, collate).train()


def test_nan_weights_are_never_written(fast_cfg, tmp_path):
    model = tiny_model()
    trainer = Trainer(model, fast_cfg(max_steps=4, save_every=1), tiny_data(64), None, collate)
    trainer.train()
    with torch.no_grad():
        model.head.score.weight[0, 0] = float("nan")
    trainer.state["step"] = 5
    with pytest.raises(NonFiniteLossError, match=r"head.score.weight.*no checkpoint was written. The newest intact checkpoint is .*step-00000004"):
        trainer.save()
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")][-1] == "step-00000004"
    assert not (tmp_path / "run" / "checkpoints" / "step-00000005").exists()


def test_fp16_forward_overflow_is_a_clear_message(fast_cfg, tmp_path):
    model = tiny_model()
    with torch.no_grad():  # activations far past fp16's 65504
        model.backbone.embedding.weight.mul_(1e4)
        for layer in model.backbone.layers:
            layer.mixer.in_proj.weight.mul_(100)
    cfg = fast_cfg(max_steps=20, precision="fp16", max_nonfinite_skips=3)
    with pytest.raises(NonFiniteLossError, match=r"3 steps in a row.*precision=bf16 or fp32.*No intact checkpoint"):
        Trainer(model, cfg, tiny_data(64), None, collate).train()
    assert all_finite(model.state_dict().values())
