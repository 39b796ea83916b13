"""TF32 for fp32 training: on by default, set by the trainer from TrainConfig.tf32, recorded in the run."""
from pathlib import Path

import pytest
import torch
import yaml

from mambatune.core.training import Trainer, TrainConfig
from mambatune.core.training.precision import set_tf32, tf32_enabled

from .training.conftest import collate, tiny_data, tiny_model


@pytest.fixture
def restore_tf32():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_tf32_is_the_default():
    assert TrainConfig().tf32 is True


@pytest.mark.parametrize("enabled", [True, False])
def test_trainer_applies_the_setting(enabled, tmp_path, restore_tf32):
    set_tf32(not enabled)
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), max_steps=1, batch_size=8, progress=False, plots=False,
                      tensorboard=False, tf32=enabled)
    Trainer(tiny_model(), cfg, tiny_data(16), None, collate)
    assert tf32_enabled() is enabled
    assert torch.backends.cudnn.allow_tf32 is enabled


def test_setting_is_recorded_in_the_resolved_recipe(tmp_path):
    from mambatune.pipelines.recipe import load_recipe, load_resolved, save_resolved

    recipe_dir = Path(__file__).resolve().parents[2] / "pipelines" / "recipes"
    recipe_path = sorted(recipe_dir.glob("*/*.yaml"))[0]
    for text, value in (("true", True), ("false", False)):
        recipe = load_recipe(str(recipe_path), [f"train.tf32={text}"])
        written = save_resolved(recipe, tmp_path / text)
        assert yaml.safe_load(written.read_text())["train"]["tf32"] is value
        assert load_resolved(tmp_path / text).train.tf32 is value
