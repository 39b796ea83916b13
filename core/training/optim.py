"""AdamW with the Mamba recipe's defaults, and the warmup + cosine learning-rate schedule.

Weight decay (0.1) applies to matrices only: parameters flagged ``_no_weight_decay``
(A_log, D, norms) and every 1-D parameter (biases, norm weights) are left undecayed.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def decays(name: str, param: torch.Tensor) -> bool:
    """True when weight decay should apply to ``param``."""
    if getattr(param, "_no_weight_decay", False):
        return False
    if param.ndim < 2:
        return False
    return not name.endswith(("A_log", ".D", "bias"))


def param_groups(model: nn.Module, weight_decay: float = 0.1) -> list[dict]:
    """Trainable parameters in two groups: ``decay`` (weight_decay) and ``no_decay`` (0).

    Each group carries the parameter names under ``names`` for inspection."""
    decay, no_decay = {"params": [], "names": [], "weight_decay": weight_decay, "group": "decay"}, \
        {"params": [], "names": [], "weight_decay": 0.0, "group": "no_decay"}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        g = decay if decays(name, p) else no_decay
        g["params"].append(p)
        g["names"].append(name)
    if not decay["params"] and not no_decay["params"]:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    return [g for g in (decay, no_decay) if g["params"]]


def build_optimizer(model: nn.Module, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.95),
                    weight_decay: float = 0.1, eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW over ``param_groups(model, weight_decay)``."""
    groups = param_groups(model, weight_decay)
    for g in groups:
        g.pop("names")
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.1) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    Linear warmup from 1/warmup to 1 over ``warmup_steps``, then cosine decay to
    ``min_ratio`` at ``total_steps``; flat at ``min_ratio`` after that."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                    min_ratio: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following ``warmup_cosine``; call ``step()`` once per optimizer step."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, warmup_steps, total_steps, min_ratio))
