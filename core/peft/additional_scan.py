"""Additional-scan: extra SSM state dimensions that only they train (MambaPEFT).

Each mixer gets ``num_states`` new states: their own ``A_log`` columns
(d_inner, k) and new rows of x_proj's B and C outputs, a (2k, d_inner) matrix
whose first k rows give B and last k give C. They join the scan through
``MambaMixer.ssm_extension`` (consulted in ``ssm_params``), so every scan backend
runs them. The C rows start at zero, so the new states are read by nothing at
initialisation and the model's output is unchanged; the B rows and A start from
``copy`` (the last k existing states of the same mixer, cyclically if k > N) or
``s4d_real`` (A_n = -(n + 1) continuing the S4D-real ladder, B like a fresh
x_proj row). Because C is zero at first, B and A receive their first gradient
after the first step moves C.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ConfigError
from ..mixer import MambaMixer
from .base import MethodConfig, check_choice, check_int, mixers_of

SCAN_INITS = ("copy", "s4d_real")


@dataclass
class AdditionalScanConfig(MethodConfig):
    """num_states: states added to every chosen mixer; init: ``copy`` or ``s4d_real``;
    layers: block indices (None = all)."""

    method = "additional_scan"
    num_states: int = 8
    init: str = "copy"
    layers: list[int] | None = None

    def validate(self) -> None:
        check_int(self, "num_states")
        check_choice(self, "init", SCAN_INITS)


class ExtraStates(nn.Module):
    """k extra SSM states of one mixer. x_proj: (2k, d_inner) rows of B then C; A_log: (d_inner, k)."""

    def __init__(self, mixer: MambaMixer, num_states: int, init: str):
        super().__init__()
        k = num_states
        n, r = mixer.A_log.shape[1], mixer.config.dt_rank
        d_inner = mixer.x_proj.in_features
        w = mixer.x_proj.weight.detach()
        self.x_proj = nn.Parameter(torch.zeros(2 * k, d_inner, device=w.device, dtype=w.dtype))
        if init == "copy":
            src = torch.arange(n - k, n, device=w.device) % n
            a_log = mixer.A_log.detach()[:, src].clone()
            self.x_proj.data[:k] = w[r + src]
        else:
            ladder = torch.arange(n + 1, n + k + 1, device=w.device, dtype=torch.float32)
            a_log = torch.log(ladder).repeat(d_inner, 1).to(mixer.A_log.dtype)
            bound = 1 / math.sqrt(d_inner)
            nn.init.uniform_(self.x_proj.data[:k], -bound, bound)
        self.A_log = nn.Parameter(a_log)
        self.A_log._no_weight_decay = True

    @property
    def num_states(self) -> int:
        return self.A_log.shape[1]

    def forward(self, x: torch.Tensor, B: torch.Tensor, C: torch.Tensor, A: torch.Tensor):
        """x: (batch, L, d_inner); B, C: (batch, L, N); A: (d_inner, N) -> N + k states."""
        B_new, C_new = F.linear(x, self.x_proj).split(self.num_states, dim=-1)
        A_new = -torch.exp(self.A_log.float())
        return torch.cat([B, B_new.to(B.dtype)], -1), torch.cat([C, C_new.to(C.dtype)], -1), torch.cat([A, A_new], 1)


def apply_additional_scan(model: nn.Module, cfg: AdditionalScanConfig) -> list[nn.Parameter]:
    params = []
    for mixer in mixers_of(model, cfg.layers):
        if not isinstance(mixer, MambaMixer):
            raise ConfigError("additional_scan adds states through Mamba-1's x_proj; it does not apply to a Mamba-2 "
                              "model yet (issue 18): use lora, affix, prompt, partial or parallel_adapter")
        if mixer.ssm_extension is not None:
            raise ValueError("additional_scan: a mixer already has extra states; give one additional_scan config")
        total = mixer.A_log.shape[1] + cfg.num_states
        if total > 256:
            raise ValueError(f"additional_scan: d_state {mixer.A_log.shape[1]} + {cfg.num_states} new states exceeds "
                             "the scan's limit of 256")
        mixer.ssm_extension = ExtraStates(mixer, cfg.num_states, cfg.init)
        params += [mixer.ssm_extension.x_proj, mixer.ssm_extension.A_log]
    return params
