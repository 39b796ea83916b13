"""What training does about NaN / Inf: a step whose loss or gradients are not finite is never applied.

``train.nonfinite``: ``skip`` drops the step (counted, logged) and stops after ``max_nonfinite_skips``
in a row; ``stop`` stops at the first. Under fp16 an overflow is the loss scaler's to handle (it lowers
the scale), so it is skipped under either policy. Weights that are themselves non-finite stop training
at once (skipping cannot mend them). Every stop names the checkpoint that really is intact.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from . import distributed as dist_utils
from . import run_state

POLICIES = ("skip", "stop")


class NonFiniteLossError(FloatingPointError):
    """Training stopped on non-finite (NaN/Inf) losses, gradients or weights; the message names the
    checkpoint that is intact (complete, with finite weights), or says that none is."""


def nonfinite_parameters(model: nn.Module, env) -> list[str]:
    """Names of the parameters holding NaN/Inf (a collective under torchrun: every rank learns whether any has)."""
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p.detach()).all())]
    if dist_utils.max_across_ranks(len(bad), env) and not bad:
        bad = ["on another rank"]  # every rank must stop together
    return bad


def check_after_skip(skip: dict, state: dict, config, precision: str, model: nn.Module, env, ckpt_dir) -> None:
    """After a skipped step (``skip``: what, loss, grad_norm, lr): raises :class:`NonFiniteLossError` when
    training must stop, saying why and which checkpoint is intact; returns when it may go on."""
    bad_weights = nonfinite_parameters(model, env)
    in_a_row = state["nonfinite_in_a_row"]
    if bad_weights:
        why = f"the weights themselves hold NaN/Inf ({', '.join(bad_weights[:5])})"
    elif config.nonfinite == "stop" and precision != "fp16":
        why = "train.nonfinite=stop"
    elif in_a_row >= config.max_nonfinite_skips:
        why = f"{in_a_row} steps in a row were skipped (train.max_nonfinite_skips={config.max_nonfinite_skips})"
    else:
        return
    hint = ("In fp16 the activations overflowed (fp16 holds values up to 65504): use precision=bf16 or fp32"
            if precision == "fp16" else
            "Try a lower lr, a longer warmup, max_grad_norm > 0, or check the data for bad labels/values")
    raise NonFiniteLossError(
        f"the {skip['what']} became non-finite (loss {skip['loss']}, gradient norm {skip['grad_norm']}) at optimizer "
        f"step {state['step']} (epoch {state['epoch']}, lr {skip['lr']:.3g}); training stopped because {why}; no "
        f"step with non-finite values was applied ({state['nonfinite_skips']} skipped in this run). {hint}. "
        f"{run_state.describe_intact(ckpt_dir)}")


def check_weights_to_save(weights: dict[str, torch.Tensor], step: int, env, ckpt_dir) -> None:
    """Raises :class:`NonFiniteLossError` (on every rank) before a checkpoint with NaN/Inf weights is written."""
    bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if dist_utils.max_across_ranks(len(bad), env):
        raise NonFiniteLossError(
            f"the weights hold NaN/Inf at step {step} ({', '.join(bad[:5]) or 'on rank 0'}); no checkpoint was "
            f"written. {run_state.describe_intact(ckpt_dir)}")
