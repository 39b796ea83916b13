import math

import pytest
import torch

from mambatune.core.training import build_optimizer, build_scheduler, param_groups, warmup_cosine

from .conftest import tiny_model


def test_groups_exclude_norms_biases_alog_d():
    model = tiny_model()
    groups = {g["group"]: g for g in param_groups(model, 0.1)}
    decay, no_decay = set(groups["decay"]["names"]), set(groups["no_decay"]["names"])
    assert groups["decay"]["weight_decay"] == 0.1 and groups["no_decay"]["weight_decay"] == 0.0
    for name in ("backbone.layers.0.mixer.A_log", "backbone.layers.0.mixer.D", "backbone.layers.1.norm.weight",
                 "backbone.norm_f.weight", "backbone.layers.0.mixer.dt_proj.bias", "backbone.layers.0.mixer.conv1d.bias",
                 "head.score.bias"):
        assert name in no_decay, name
    for name in ("backbone.layers.0.mixer.in_proj.weight", "backbone.layers.0.mixer.x_proj.weight",
                 "backbone.layers.0.mixer.out_proj.weight", "backbone.embedding.weight", "head.score.weight"):
        assert name in decay, name
    assert not decay & no_decay
    assert decay | no_decay == {n for n, _ in model.named_parameters()}


def test_flagged_matrix_is_not_decayed():
    model = tiny_model()
    model.head.score.weight._no_weight_decay = True
    groups = {g["group"]: g for g in param_groups(model)}
    assert "head.score.weight" in groups["no_decay"]["names"]


def test_frozen_parameters_are_left_out():
    model = tiny_model()
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    names = [n for g in param_groups(model) for n in g["names"]]
    assert sorted(names) == ["head.score.bias", "head.score.weight"]
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(model)


def test_adamw_defaults():
    opt = build_optimizer(tiny_model(), lr=1e-3)
    assert isinstance(opt, torch.optim.AdamW)
    assert all(g["betas"] == (0.9, 0.95) for g in opt.param_groups)
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 0.1]


def test_warmup_then_cosine_to_ten_percent():
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.1 + 0.9 * 0.5)
    assert warmup_cosine(100, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(500, 10, 100) == pytest.approx(0.1)
    values = [warmup_cosine(s, 10, 100) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    opt = build_optimizer(tiny_model(), lr=2e-3)
    sched = build_scheduler(opt, 0, 4)
    lrs = []
    for _ in range(4):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(2e-3)
    assert lrs[2] == pytest.approx(2e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2))))
    assert sched.get_last_lr()[0] == pytest.approx(2e-4)
