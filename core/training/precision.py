"""Mixed precision: bf16 / fp16 autocast over fp32 master weights.

The model's parameters stay fp32 (they are the master weights the optimizer
updates); autocast runs the projections in half precision. The mixer already
computes A = -exp(A_log.float()), uses D.float() and normalises in fp32, so
A_log, D and norms stay fp32 end to end. fp16 adds a GradScaler (loss scaling),
unscaled before gradient clipping; steps whose gradients overflow are skipped.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def fp32_parameter_names(model: nn.Module) -> list[str]:
    """Parameters that must stay fp32 for stability: A_log, D and norm weights/biases."""
    out = []
    for name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            full = f"{name}.{pname}" if name else pname
            if pname in ("A_log", "D") or "norm" in type(module).__name__.lower() or getattr(p, "_no_weight_decay", False):
                out.append(full)
    return out


def set_tf32(enabled: bool) -> None:
    """fp32 matrix products and convolutions on TF32 tensor cores (10-bit mantissa inputs, fp32
    accumulation), or full fp32 when disabled. Applies process-wide; the trainer sets it from
    ``TrainConfig.tf32``. No effect on CPUs or on bf16 / fp16 autocast products."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def tf32_enabled() -> bool:
    return bool(torch.backends.cuda.matmul.allow_tf32)


class Precision:
    """One precision policy: ``with policy.autocast(): loss = ...``; ``policy.backward(loss)``;
    ``policy.unscale(opt)`` before clipping; ``policy.step(opt)`` (returns False if skipped)."""

    def __init__(self, mode: str = "fp32", device_type: str = "cpu"):
        if mode not in PRECISIONS:
            raise ValueError(f"unknown precision {mode!r}; choose one of {PRECISIONS}")
        self.mode = mode
        self.device_type = device_type
        self.dtype = _DTYPES.get(mode, torch.float32)
        self.scaler = torch.amp.GradScaler(device_type) if mode == "fp16" else None

    def prepare(self, model: nn.Module) -> nn.Module:
        """Makes every floating parameter fp32 (the master weights); returns the model."""
        for p in model.parameters():
            if p.is_floating_point() and p.dtype != torch.float32:
                p.data = p.data.float()
        return model

    def autocast(self):
        if self.mode == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Optimizer step; False when fp16 loss scaling skipped it for inf/NaN gradients."""
        if self.scaler is None:
            optimizer.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale

    def skip(self) -> None:
        """A step not taken (non-finite gradients or loss): under fp16 the loss scale still updates, so an
        overflow lowers it as a skipped ``scaler.step`` would."""
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
