"""Live logging: TensorBoard event files on request (a clear error at the start when TensorBoard is missing),
loss.png re-drawn during training, and metrics.jsonl naming the model that trains."""
import importlib.util

import pytest

from mambatune.core.training import Trainer, read_metrics
from mambatune.core.training import trainer as trainer_module
from mambatune.core.training.figures import figure_text
from mambatune.core.training.metrics_log import TensorBoardMissingError

from .conftest import accuracy, collate, tiny_data, tiny_model


def test_tensorboard_writes_event_files(fast_cfg, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = tiny_data(32)
    Trainer(tiny_model(), fast_cfg(tensorboard=True, eval_every=2), data, data[:8], collate, accuracy).train()
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    assert {"train/loss", "eval/loss", "eval/accuracy", "lr"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("eval/loss")] == [2, 4]


def test_tensorboard_missing_is_an_error_before_training(fast_cfg, tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else find_spec(name, *a))
    with pytest.raises(TensorBoardMissingError, match=r'pip install "mambatune\[tensorboard\]"'):
        Trainer(tiny_model(), fast_cfg(tensorboard=True), tiny_data(16), None, collate)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_loss_plot_is_redrawn_at_evaluations_while_training(fast_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "LIVE_PLOT_SECONDS", 0.0)
    drawn = []
    real = trainer_module.plot_curves

    def spy(run_dir, model=None, only_loss=False):
        evals = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "eval/loss" in r]
        drawn.append((only_loss, evals[-1] if evals else None))
        return real(run_dir, model, only_loss)

    monkeypatch.setattr(trainer_module, "plot_curves", spy)
    data = tiny_data(32)
    Trainer(tiny_model(), fast_cfg(plots=True, eval_every=1), data, data[:8], collate, accuracy).train()
    live = [step for only_loss, step in drawn if only_loss]
    assert live == [1, 2, 3, 4], "loss.png is drawn after each evaluation, during training"
    assert drawn[-1][0] is False, "the end draws every curve"
    title = figure_text(tmp_path / "run" / "plots" / "loss.png")["title"]
    assert title.startswith("run\n") and "trained from scratch" in title


def test_metrics_log_names_the_model(fast_cfg, tmp_path):
    data = tiny_data(16)
    Trainer(tiny_model(), fast_cfg(), data, None, collate).train()
    first = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]
    assert first["event"] == "start" and first["model"].startswith("new model (d16×2, ")
