import json
import math

import pytest
import torch

from mambatune.core.training import NonFiniteLossError, Trainer, TrainConfig, list_checkpoints, read_metrics

from .conftest import accuracy, collate, tiny_data, tiny_model


def test_nan_loss_stops_with_clear_message(fast_cfg):
    model = tiny_model()
    data = tiny_data(32)
    data[5] = dict(data[5])
    cfg = fast_cfg(max_steps=4, save_every=1)
    with torch.no_grad():
        model.head.score.bias.fill_(float("nan"))
    trainer = Trainer(model, cfg, data, None, collate, accuracy)
    with pytest.raises(NonFiniteLossError, match=r"loss became non-finite .* at optimizer step 1 .*weights themselves"
                                                 r".*No intact checkpoint exists"):
        trainer.train()


def test_nan_guard_after_some_steps_keeps_checkpoint(fast_cfg, tmp_path):
    model = tiny_model()
    cfg = fast_cfg(max_steps=6, save_every=1)
    trainer = Trainer(model, cfg, tiny_data(64), None, collate, accuracy)
    original = trainer._step
    calls = {"n": 0}

    def poisoned(batches):
        calls["n"] += 1
        if calls["n"] == 3:
            with torch.no_grad():
                model.head.score.weight.fill_(float("inf"))
        return original(batches)

    trainer._step = poisoned
    with pytest.raises(NonFiniteLossError, match=r"step 3 .*newest intact checkpoint is .*step-00000002"):
        trainer.train()
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")][-1] == "step-00000002"


def test_run_folder_eval_best_and_early_stopping(fast_cfg, tmp_path):
    model = tiny_model()
    cfg = fast_cfg(epochs=50, eval_every=2, early_stopping_patience=2, metric_for_best="loss", lr=1e-9,
                   early_stopping_min_delta=1.0, monitor_every=2, plots=True, keep_last=1)
    result = Trainer(model, cfg, tiny_data(32), tiny_data(16, seed=3), collate, accuracy).train()
    assert result.stopped_early and result.steps == 6 and result.best_step == 2
    run = tmp_path / "run"
    records = read_metrics(run / "metrics.jsonl")
    evals = [r for r in records if "eval/loss" in r]
    assert [r["step"] for r in evals] == [2, 4, 6] and "eval/accuracy" in evals[0]
    train = [r for r in records if "train/loss" in r]
    assert all(k in train[0] for k in ("lr", "grad_norm", "tokens_per_s", "peak_memory_mb"))
    monitor = [r for r in records if any(k.startswith("monitor/") for k in r)]
    assert monitor and {"monitor/layer0/delta_mean", "monitor/layer1/B_rms", "monitor/layer1/C_rms"} <= set(monitor[0])
    assert all(math.isfinite(v) and v > 0 for k, v in monitor[0].items() if k != "step")
    steps = [p.name for p in list_checkpoints(run / "checkpoints")]
    assert steps == ["step-00000002", "step-00000006"]  # the best is kept beside the newest
    assert (run / "plots" / "loss.png").stat().st_size > 0 and (run / "plots" / "eval_accuracy.png").exists()
    state = json.loads((run / "checkpoints" / "step-00000006" / "trainer_state.json").read_text())
    assert state["best_step"] == 2 and state["stopped_early"]


def test_gradient_accumulation_matches_big_batch(fast_cfg, tmp_path):
    data = tiny_data(32)
    results = []
    for i, (bs, accum) in enumerate([(16, 1), (4, 4)]):
        model = tiny_model()
        cfg = fast_cfg(output_dir=str(tmp_path / f"r{i}"), batch_size=bs, grad_accum=accum, max_steps=2)
        Trainer(model, cfg, data, None, collate).train()
        results.append(model.state_dict())
    for k in results[0]:
        torch.testing.assert_close(results[0][k], results[1][k], atol=1e-5, rtol=1e-4)


def test_gradient_checkpointing_same_result(fast_cfg, tmp_path):
    data = tiny_data(16)
    results = []
    for i, ckpt in enumerate([False, True]):
        model = tiny_model()
        cfg = fast_cfg(output_dir=str(tmp_path / f"g{i}"), max_steps=2, gradient_checkpointing=ckpt)
        trainer = Trainer(model, cfg, data, None, collate)
        assert model.backbone.gradient_checkpointing is ckpt
        trainer.train()
        results.append(model.state_dict())
    for k in results[0]:
        torch.testing.assert_close(results[0][k], results[1][k], atol=1e-6, rtol=1e-5)


def test_peft_like_run_saves_trainable_only(fast_cfg, tmp_path):
    model = tiny_model()
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    frozen = model.backbone.layers[0].mixer.in_proj.weight.clone()
    Trainer(model, fast_cfg(max_steps=2), tiny_data(16), None, collate).train()
    ckpt = list_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    assert (ckpt / "trainable.safetensors").exists() and not (ckpt / "model.safetensors").exists()
    assert torch.equal(model.backbone.layers[0].mixer.in_proj.weight, frozen)


def test_config_validation():
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp64")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_too_small_dataset_is_explained(fast_cfg):
    with pytest.raises(ValueError, match="lower batch_size"):
        Trainer(tiny_model(), fast_cfg(batch_size=8, grad_accum=4), tiny_data(16), None, collate)


def test_time_budget_stops_evaluates_saves_and_resumes(fast_cfg, tmp_path):
    cfg = fast_cfg(max_steps=8, max_minutes=1e-9, eval_every=100, save_every=0)
    result = Trainer(tiny_model(), cfg, tiny_data(64), tiny_data(16, seed=3), collate, accuracy).train()
    assert result.out_of_time and result.steps == 1
    run = tmp_path / "run"
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step-00000001"]
    records = read_metrics(run / "metrics.jsonl")
    assert any(r.get("event") == "out_of_time" for r in records)
    assert [r["step"] for r in records if "eval/loss" in r] == [1]  # evaluated before stopping
    # a later invocation with time left goes on from the saved step to max_steps
    again = Trainer(tiny_model(), fast_cfg(max_steps=8, eval_every=100), tiny_data(64), tiny_data(16, seed=3),
                    collate, accuracy).train()
    assert again.steps == 8 and not again.out_of_time
    with pytest.raises(ValueError, match="max_minutes"):
        TrainConfig(max_minutes=0)
