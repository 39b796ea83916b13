"""A run folder never mixes two runs: checkpoints record the run identity, resume goes on only into the
same one, and resume=false moves an old run aside (the issue's "switch to another run's model" case)."""
import json

import pytest
import torch
from safetensors.torch import load_file

from mambatune.core.training import Trainer, list_checkpoints, read_metrics
from mambatune.core.training.identity import RunIdentityError

from .conftest import collate, tiny_data, tiny_model


def train(cfg, model=None, **kw):
    model = model if model is not None else tiny_model()
    result = Trainer(model, cfg, tiny_data(64), None, collate, **kw).train()
    return model, result


def steps(run):
    return [p.name for p in list_checkpoints(run / "checkpoints")]


def test_resume_false_moves_the_old_run_aside_and_never_mixes(fast_cfg, tmp_path, capsys):
    run = tmp_path / "run"
    train(fast_cfg(max_steps=8, save_every=2, keep_last=2))
    assert steps(run) == ["step-00000006", "step-00000008"]
    new_model, _ = train(fast_cfg(max_steps=4, save_every=2, keep_last=2, resume=False, lr=2e-3))
    assert steps(run) == ["step-00000002", "step-00000004"]  # the new run's own, not the old 6 and 8
    previous = sorted(run.glob("previous-*"))
    assert len(previous) == 1 and "moved" in capsys.readouterr().err
    assert [p.name for p in list_checkpoints(previous[0] / "checkpoints")] == ["step-00000006", "step-00000008"]
    assert max(r["step"] for r in read_metrics(previous[0] / "metrics.jsonl")) == 8
    assert max(r["step"] for r in read_metrics(run / "metrics.jsonl")) == 4  # the new run's log only
    # the next default rerun (resume=true) goes on from the new run, whose identity it shares
    again, result = train(fast_cfg(max_steps=4, save_every=2, keep_last=2, lr=2e-3))
    assert result.steps == 4
    for k, v in load_file(run / "checkpoints" / "step-00000004" / "model.safetensors").items():
        assert torch.equal(again.state_dict()[k], v) and torch.equal(new_model.state_dict()[k], v)


def test_changed_settings_on_resume_are_named(fast_cfg, tmp_path):
    train(fast_cfg(max_steps=4, save_every=2))
    with pytest.raises(RunIdentityError, match=r"other settings \(step-00000004\): train\.batch_size: 8 -> 4; "
                                               r"train\.lr: 0\.001 -> 0\.002\..*resume_force"):
        train(fast_cfg(max_steps=8, save_every=2, lr=2e-3, batch_size=4))
    # a longer run with the same settings is the same run: it goes on
    _, result = train(fast_cfg(max_steps=6, save_every=2))
    assert result.steps == 6


def test_changed_shape_is_an_error_even_when_forced(fast_cfg, tmp_path):
    from mambatune.core import MambaConfig, MambaForTask, build_head

    train(fast_cfg(max_steps=2))
    torch.manual_seed(0)
    wider = MambaForTask(MambaConfig(d_model=32, n_layer=2, vocab_size=32, d_state=4, backend="chunked"),
                         build_head("classification", 32, num_labels=2))
    with pytest.raises(RunIdentityError, match=r"another shape .*model\.d_model: 16 -> 32.*even with train.resume_force"):
        train(fast_cfg(max_steps=4, resume_force=True), model=wider)


def test_forced_resume_applies_and_records_the_new_settings(fast_cfg, tmp_path):
    run = tmp_path / "run"
    train(fast_cfg(max_steps=4, save_every=2, warmup_steps=0, min_lr_ratio=1.0))
    _, result = train(fast_cfg(max_steps=6, save_every=2, warmup_steps=0, min_lr_ratio=1.0, lr=5e-3,
                               resume_force=True))
    assert result.steps == 6
    records = read_metrics(run / "metrics.jsonl")
    forced = [r for r in records if r.get("event") == "resume_forced"]
    assert forced and forced[0]["changes"] == ["train.lr: 0.001 -> 0.005"]
    assert [r["lr"] for r in records if "train/loss" in r and r["step"] > 4] == [5e-3, 5e-3]
    state = json.loads((run / "checkpoints" / "step-00000006" / "trainer_state.json").read_text())
    assert state["forced_changes"] == [{"step": 4, "changes": ["train.lr: 0.001 -> 0.005"]}]
    assert state["identity"]["train"]["lr"] == 5e-3 and len(state["identity"]["hash"]) == 16


def test_pipeline_identity_and_the_training_set_size_join_the_run_identity(fast_cfg, tmp_path):
    train(fast_cfg(max_steps=2), identity_extra={"data": "sha-aaa"})
    with pytest.raises(RunIdentityError, match=r"extra\.data: sha-aaa -> sha-bbb"):
        train(fast_cfg(max_steps=4), identity_extra={"data": "sha-bbb"})
    with pytest.raises(RunIdentityError, match=r"data\.train_examples: 64 -> 48"):
        Trainer(tiny_model(), fast_cfg(max_steps=4), tiny_data(48), None, collate,
                identity_extra={"data": "sha-aaa"}).train()


def test_a_checkpoint_from_before_an_identity_key_existed_resumes(fast_cfg, tmp_path):
    """A run folder written before the data fingerprint was recorded resumes (the key is new, not changed);
    once recorded, a changed fingerprint is refused."""
    train(fast_cfg(max_steps=2))
    model, result = train(fast_cfg(max_steps=4), identity_extra={"data_fingerprint": "sha-aaa"})
    assert result.steps == 4
    with pytest.raises(RunIdentityError, match=r"extra\.data_fingerprint: sha-aaa -> sha-bbb"):
        train(fast_cfg(max_steps=6), identity_extra={"data_fingerprint": "sha-bbb"})
