"""Watching the signals reported to precede Mamba training instability.

Forward hooks on ``x_proj`` (its output splits into the dt low-rank input, B and
C) and ``dt_proj`` (delta before softplus) of a few blocks record, on the steps
asked for, the mean delta = softplus(dt_proj(.)), its max, and the RMS norms of
B and C. Wrapped projections (e.g. LoRA) are hooked at the wrapper, so the
numbers are those the scan actually sees.
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F


def default_layers(n_layer: int) -> list[int]:
    return sorted({0, n_layer // 2, n_layer - 1})


class SSMMonitor:
    """``monitor.active = True`` for one forward, then ``monitor.pop()`` -> {name: value}."""

    def __init__(self, model: nn.Module, layers: list[int] | None = None):
        self.values: dict[str, float] = {}
        self.active = False
        self.handles = []
        backbone = getattr(model, "backbone", model)
        n_layer = len(backbone.layers)
        self.layers = layers if layers is not None else default_layers(n_layer)
        pattern = re.compile(r"(?:^|\.)layers\.(\d+)\.mixer\.(?:(fwd|rev)\.)?(x_proj|dt_proj)$")
        for name, module in backbone.named_modules():
            m = pattern.search(name)
            if not m or int(m.group(1)) not in self.layers:
                continue
            tag = f"layer{m.group(1)}" + (f".{m.group(2)}" if m.group(2) else "")
            mixer = backbone.get_submodule(name.rsplit(".", 1)[0])
            hook = self._x_hook(tag, mixer) if m.group(3) == "x_proj" else self._dt_hook(tag)
            self.handles.append(module.register_forward_hook(hook))

    def _x_hook(self, tag: str, mixer: nn.Module):
        def hook(module, args, out):
            if not self.active:
                return
            with torch.no_grad():
                r, n = mixer.config.dt_rank, (out.shape[-1] - mixer.config.dt_rank) // 2
                b, c = out[..., r:r + n].float(), out[..., r + n:].float()
                self.values[f"monitor/{tag}/B_rms"] = float(b.pow(2).mean().sqrt())
                self.values[f"monitor/{tag}/C_rms"] = float(c.pow(2).mean().sqrt())
        return hook

    def _dt_hook(self, tag: str):
        def hook(module, args, out):
            if not self.active:
                return
            with torch.no_grad():
                delta = F.softplus(out.float())
                self.values[f"monitor/{tag}/delta_mean"] = float(delta.mean())
                self.values[f"monitor/{tag}/delta_max"] = float(delta.max())
        return hook

    def pop(self) -> dict[str, float]:
        out, self.values = self.values, {}
        self.active = False
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
