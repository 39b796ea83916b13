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

On a Mamba-2 mixer (one scalar A per head) it adds either (``mode``):

- ``states``: k new state dimensions shared by every head of a group: new B and C columns
  (batch, L, G, k) projected from the mixer's post-conv x by a (2 G k, d_ssm) matrix (B rows
  uniform like a fresh projection, C rows zero: the output is unchanged at first). A head's decay
  is its own scalar A, so the new states decay with it and add no A of their own; ``init`` only
  concerns Mamba-1's per-state A.
- ``heads``: k new heads of headdim P, a second SSD scan beside the mixer's. Head j starts as a
  copy of source head s_j (the last k heads, cyclically): its x is a trainable (k P, d_ssm)
  projection of the post-conv x that starts as the selection of head s_j's channels; it reads
  s_j's dt (plus its own dt_bias), B and C group and z gate; it owns A_log, dt_bias, D and a
  per-head gated RMSNorm; its output enters the residual through its own (d_model, k P) out
  projection, zero at first. ``init``: ``copy`` starts A_log, dt_bias and D as s_j's;
  ``s4d_real`` starts A_j = -(j + 1) (slow decays: long memory) with s_j's dt_bias and D.

Either way the recurrent state of generation grows (N + k states, or H + k heads) and every
scan backend runs the extension, since it only changes the scan's inputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ConfigError
from ..mixer import MambaMixer
from ..mixer2 import GatedRMSNorm, Mamba2Mixer
from .base import MethodConfig, check_choice, check_int, mixers_of

SCAN_INITS = ("copy", "s4d_real")
SCAN_MODES = ("states", "heads")


@dataclass
class AdditionalScanConfig(MethodConfig):
    """num_states: states added to every chosen mixer; init: ``copy`` or ``s4d_real``;
    layers: block indices (None = all). mode: ``states`` (Mamba-1 and Mamba-2) or ``heads``
    (Mamba-2 only: ``num_heads`` new heads instead of new states)."""

    method = "additional_scan"
    num_states: int = 8
    init: str = "copy"
    layers: list[int] | None = None
    mode: str = "states"
    num_heads: int = 2

    def validate(self) -> None:
        check_int(self, "num_states")
        check_int(self, "num_heads")
        check_choice(self, "init", SCAN_INITS)
        check_choice(self, "mode", SCAN_MODES)


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

    num_heads = 0

    @property
    def num_states(self) -> int:
        return self.A_log.shape[1]

    def forward(self, x: torch.Tensor, B: torch.Tensor, C: torch.Tensor, A: torch.Tensor):
        """x: (batch, L, d_inner); B, C: (batch, L, N); A: (d_inner, N) -> N + k states."""
        B_new, C_new = F.linear(x, self.x_proj).split(self.num_states, dim=-1)
        A_new = -torch.exp(self.A_log.float())
        return torch.cat([B, B_new.to(B.dtype)], -1), torch.cat([C, C_new.to(C.dtype)], -1), torch.cat([A, A_new], 1)


class ExtraStates2(nn.Module):
    """k extra states of one Mamba-2 mixer, shared by the heads of each group.
    proj: (2 G k, d_ssm), the B rows (G k) then the C rows (G k)."""

    num_heads = 0

    def __init__(self, mixer: Mamba2Mixer, num_states: int):
        super().__init__()
        k, groups, d_ssm = num_states, mixer.ngroups, mixer.d_ssm
        w = mixer.A_log.detach()
        self.num_states = k
        self.proj = nn.Parameter(torch.zeros(2 * groups * k, d_ssm, device=w.device, dtype=mixer.conv1d.weight.dtype))
        bound = 1 / math.sqrt(d_ssm)
        nn.init.uniform_(self.proj.data[: groups * k], -bound, bound)

    def extend_bc(self, x: torch.Tensor, B: torch.Tensor, C: torch.Tensor):
        """x: (..., d_ssm) after the conv; B, C: (..., G, N) -> (..., G, N + k)."""
        B_new, C_new = F.linear(x, self.proj.to(x.dtype)).unflatten(-1, (2, B.shape[-2], self.num_states)).unbind(-3)
        return torch.cat([B, B_new.to(B.dtype)], -1), torch.cat([C, C_new.to(C.dtype)], -1)


class ExtraHeads(nn.Module):
    """k extra heads of one Mamba-2 mixer, scanned beside its own (see the module docstring).

    x_proj: (k P, d_ssm); A_log, dt_bias, D: (k,); norm: (k P,) in groups of P; out: (d_model, k P);
    src: (k,) the source head of each new head (a buffer)."""

    num_states = 0

    def __init__(self, mixer: Mamba2Mixer, num_heads: int, init: str):
        super().__init__()
        k, heads, p = num_heads, mixer.nheads, mixer.headdim
        c = mixer.config
        dev = mixer.A_log.device
        src = torch.arange(heads - k, heads, device=dev) % heads
        self.register_buffer("src", src, persistent=False)
        self.num_heads, self.headdim = k, p
        channels = (src[:, None] * p + torch.arange(p, device=dev)).flatten()  # (k P,) source channels
        x_proj = torch.zeros(k * p, mixer.d_ssm, device=dev, dtype=mixer.conv1d.weight.dtype)
        x_proj[torch.arange(k * p, device=dev), channels] = 1.0
        self.x_proj = nn.Parameter(x_proj)
        self.register_buffer("z_channels", channels, persistent=False)
        if init == "copy":
            a_log = mixer.A_log.detach()[src].clone()
        else:
            a_log = torch.log(torch.arange(1, k + 1, device=dev, dtype=torch.float32)).to(mixer.A_log.dtype)
        self.A_log = nn.Parameter(a_log)
        self.dt_bias = nn.Parameter(mixer.dt_bias.detach()[src].clone())
        self.D = nn.Parameter(mixer.D.detach()[src].clone())
        for q in (self.A_log, self.dt_bias, self.D):
            q._no_weight_decay = True
        self.norm = GatedRMSNorm(k * p, p, c.norm_epsilon, c.norm_before_gate).to(device=dev, dtype=mixer.norm.weight.dtype)
        self.out = nn.Parameter(torch.zeros(c.d_model, k * p, device=dev, dtype=mixer.conv1d.weight.dtype))

    def extend_bc(self, x, B, C):
        return B, C

    def inputs(self, x: torch.Tensor, z: torch.Tensor, dt: torch.Tensor, B: torch.Tensor, C: torch.Tensor, groups: int):
        """The new heads' scan inputs from the mixer's: x (..., d_ssm) after the conv, z (..., d_ssm),
        dt (..., H) raw, B, C (..., G, N). Returns x (..., k, P), z (..., k, P), dt (..., k), B, C (..., k, N)."""
        heads_per_group = dt.shape[-1] // groups
        g = self.src // heads_per_group
        xh = F.linear(x, self.x_proj.to(x.dtype)).unflatten(-1, (self.num_heads, self.headdim))
        zh = z[..., self.z_channels].unflatten(-1, (self.num_heads, self.headdim))
        return xh, zh, dt[..., self.src], B[..., g, :], C[..., g, :]

    def output(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """y, z: (..., k, P) -> the residual update (..., d_model)."""
        y = self.norm(y.flatten(-2), z.flatten(-2))
        return F.linear(y, self.out.to(y.dtype))


def apply_additional_scan(model: nn.Module, cfg: AdditionalScanConfig) -> list[nn.Parameter]:
    params = []
    for mixer in mixers_of(model, cfg.layers):
        if mixer.ssm_extension is not None:
            raise ValueError("additional_scan: a mixer already has extra states; give one additional_scan config")
        if isinstance(mixer, Mamba2Mixer):
            params += extend_mamba2(mixer, cfg)
            continue
        if cfg.mode == "heads":
            raise ConfigError("additional_scan: mode 'heads' needs a Mamba-2 model (Mamba-1 has one A per channel "
                              "and state, no heads); use mode: states")
        total = mixer.A_log.shape[1] + cfg.num_states
        if total > 256:
            raise ValueError(f"additional_scan: d_state {mixer.A_log.shape[1]} + {cfg.num_states} new states exceeds "
                             "the scan's limit of 256")
        mixer.ssm_extension = ExtraStates(mixer, cfg.num_states, cfg.init)
        params += [mixer.ssm_extension.x_proj, mixer.ssm_extension.A_log]
    return params


def extend_mamba2(mixer: Mamba2Mixer, cfg: AdditionalScanConfig) -> list[nn.Parameter]:
    """Adds extra states or heads to one Mamba-2 mixer; returns the new parameters."""
    if cfg.mode == "states":
        total = mixer.config.d_state + cfg.num_states
        if total > 256:
            raise ValueError(f"additional_scan: d_state {mixer.config.d_state} + {cfg.num_states} new states exceeds "
                             "the scan's limit of 256")
        mixer.ssm_extension = ExtraStates2(mixer, cfg.num_states)
    else:
        mixer.ssm_extension = ExtraHeads(mixer, cfg.num_heads, cfg.init)
    return list(mixer.ssm_extension.parameters())
