"""Mamba-1 mixer: explicit projections around the conv and scan kernels.

Every projection is an ``nn.Linear`` called as a module, so an adapter that
wraps one (LoRA, partial LoRA, ...) is used by every kernel backend; the
kernels receive activations only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from mambatune.kernels import causal_conv1d, causal_conv1d_update, selective_scan, selective_state_update

from .config import MambaConfig


# How the Mamba-1 mixer hands the selective scan its inputs:
# - "views" (the default): u, z, delta, B and C are transposed views of the projections' (batch, L, .)
#   outputs, no copies here; the Triton scan picks its kernel for that layout (pick_triton_kernel);
# - "time_contiguous": one transposing copy of in_proj's output makes x and z (batch, d_inner, L)
#   contiguous, and delta, B and C are copied likewise, so the scan reads contiguous rows (triton_long's
#   fast case: 1.44x mamba_ssm's forward+backward against 2.4x on the views at B8 L2048, RESULTS.md).
#   Not yet measured in a training step, so not the default.
SCAN_LAYOUTS = ("views", "time_contiguous")
SCAN_LAYOUT = "views"


@dataclass
class LayerState:
    """Recurrent state of one mixer: conv inputs (batch, d_inner, d_conv - 1) and SSM state (batch, d_inner, N), fp32."""

    conv: torch.Tensor
    ssm: torch.Tensor
    prefixed: bool = False  # an affix adapter's prefix has been read into this state


class MambaMixer(nn.Module):
    """in_proj -> causal conv + SiLU -> x_proj (dt, B, C) -> dt_proj -> selective scan (gated by z) -> out_proj."""

    def __init__(self, config: MambaConfig, layer_idx: int = 0, with_projections: bool = True):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        d_inner, n, r = config.d_inner, config.d_state, config.dt_rank
        if with_projections:
            self.in_proj = nn.Linear(config.d_model, 2 * d_inner, bias=config.bias)
            self.out_proj = nn.Linear(d_inner, config.d_model, bias=config.bias)
        self.conv1d = nn.Conv1d(d_inner, d_inner, config.d_conv, groups=d_inner, padding=config.d_conv - 1, bias=config.conv_bias)
        self.x_proj = nn.Linear(d_inner, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        # optional adapter hooks (mambatune.core.peft); None keeps the plain Mamba-1 mixer
        self.prefix: nn.Module | None = None  # affix tokens read before conv and scan, see peft/affix.py
        self.ssm_extension: nn.Module | None = None  # extra SSM states, see peft/additional_scan.py
        self.reset_dt()

    @torch.no_grad()
    def reset_dt(self) -> None:
        """dt initialisation of the Mamba paper: dt ~ log-uniform[dt_min, dt_max], stored as softplus^-1 in the bias."""
        c = self.config
        std = c.dt_rank ** -0.5 * c.dt_scale
        if c.dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(c.d_inner) * (math.log(c.dt_max) - math.log(c.dt_min)) + math.log(c.dt_min))
        dt = dt.clamp(min=c.dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True

    # -- pieces that adapters may extend -------------------------------------------------
    def ssm_params(self, x: torch.Tensor):
        """x: (batch, L, d_inner) after the conv. Returns dt (batch, L, d_inner) before softplus,
        B, C: (batch, L, N) and A: (d_inner, N) fp32."""
        n, r = self.config.d_state, self.config.dt_rank
        x_dbl = self.x_proj(x)
        dt, B, C = torch.split(x_dbl, [r, n, n], dim=-1)
        dt = self.dt_proj(dt)  # a module call: the bias is applied here, so adapters on dt_proj are honoured
        A = -torch.exp(self.A_log.float())
        if self.ssm_extension is not None:
            B, C, A = self.ssm_extension(x, B, C, A)
        return dt, B, C, A

    def forward(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor | None = None,
        seq_idx: torch.Tensor | None = None,
        state: LayerState | None = None,
        in_proj: nn.Module | None = None,
        out_proj: nn.Module | None = None,
    ) -> torch.Tensor:
        """hidden: (batch, L, d_model) -> (batch, L, d_model). ``state`` is read and updated in place."""
        in_proj = in_proj if in_proj is not None else self.in_proj
        out_proj = out_proj if out_proj is not None else self.out_proj
        prefix = self.prefix if self.prefix is not None and (state is None or not state.prefixed) else None
        if prefix is not None:
            hidden, mask, seq_idx = prefix.prepend(hidden, mask, seq_idx)
        xz = in_proj(hidden)
        if state is not None and hidden.shape[1] == 1 and mask is None and seq_idx is None:
            return out_proj(self._step(xz[:, 0], state)[:, None])
        y = self.scan_path(xz, mask, seq_idx, state)
        if prefix is not None:
            y = y[:, prefix.num_tokens:]
            if state is not None:
                state.prefixed = True
        return out_proj(y)

    def scan_path(self, xz, mask=None, seq_idx=None, state: LayerState | None = None) -> torch.Tensor:
        """xz: (batch, L, 2 * d_inner), the in_proj output. Returns the gated scan output (batch, L, d_inner)."""
        backend = self.config.backend
        if SCAN_LAYOUT not in SCAN_LAYOUTS:
            raise ValueError(f"mambatune.core.mixer.SCAN_LAYOUT is {SCAN_LAYOUT!r}; "
                             f"choose one of {', '.join(SCAN_LAYOUTS)}")
        contiguous = SCAN_LAYOUT == "time_contiguous"
        x, z = xz.chunk(2, dim=-1)
        if contiguous:
            x_t, z_t = xz.transpose(1, 2).contiguous().chunk(2, dim=1)  # one copy: both (batch, d_inner, L)
        else:
            x_t, z_t = x.transpose(1, 2), z.transpose(1, 2)
        conv_init = state.conv if state is not None else None
        x_t = causal_conv1d(x_t, self.conv1d.weight, self.conv1d.bias, "silu", seq_idx=seq_idx, mask=mask,
                            initial_state=conv_init.to(x_t.dtype) if conv_init is not None else None, backend=backend)
        if state is not None:
            self._update_conv_state(x, mask, state)
        dt, B, C, A = self.ssm_params(x_t.transpose(1, 2))
        dt, B, C = (t.transpose(1, 2) for t in (dt, B, C))
        if contiguous:
            dt, B, C = dt.contiguous(), B.contiguous(), C.contiguous()
        y, last = selective_scan(
            x_t, dt, A, B, C, self.D.float(), z_t,
            delta_softplus=True, initial_state=state.ssm if state is not None else None, return_final_state=True,
            seq_idx=seq_idx, mask=mask, backend=backend,
        )
        if state is not None:
            state.ssm.copy_(last)
        return y.transpose(1, 2)

    def _update_conv_state(self, x: torch.Tensor, mask, state: LayerState) -> None:
        """Keeps the last d_conv - 1 (masked) conv inputs; x: (batch, L, d_inner)."""
        width = self.config.d_conv - 1
        if width == 0:
            return
        xs = x.detach().float()
        if mask is not None:
            xs = xs * mask[..., None].to(xs.dtype)
        hist = torch.cat([state.conv.transpose(1, 2).float(), xs], dim=1)[:, -width:]
        state.conv.copy_(hist.transpose(1, 2))

    def _step(self, xz: torch.Tensor, state: LayerState) -> torch.Tensor:
        """One token: xz (batch, 2 * d_inner) -> y (batch, d_inner)."""
        x, z = xz.chunk(2, dim=-1)
        x = causal_conv1d_update(x, state.conv, self.conv1d.weight, self.conv1d.bias, "silu")
        dt, B, C, A = self.ssm_params(x[:, None])
        return selective_state_update(
            state.ssm, x, dt[:, 0], A, B[:, 0, None], C[:, 0, None], self.D.float(), z, delta_softplus=True
        )

    @property
    def d_state_total(self) -> int:
        """SSM state size N, plus the states an additional-scan adapter appends."""
        extra = self.ssm_extension.num_states if self.ssm_extension is not None else 0
        return self.A_log.shape[1] + extra

    def new_state(self, batch: int, device, dtype=torch.float32) -> LayerState:
        c = self.config
        return LayerState(
            conv=torch.zeros(batch, c.d_inner, c.d_conv - 1, device=device, dtype=torch.float32),
            ssm=torch.zeros(batch, c.d_inner, self.d_state_total, device=device, dtype=torch.float32),
        )


class BiMambaMixer(nn.Module):
    """Caduceus-style BiMamba: a forward scan and a scan over the reversed sequence.

    With ``tie_bidirectional`` the reverse direction uses the forward in_proj and
    out_proj (the same modules, so adapters on them apply to both directions);
    conv, x_proj, dt_proj, A_log and D are always per direction.
    Combination: ``add`` (y_f + y_r), ``mul`` (y_f * y_r) or ``gate``
    (g * y_f + (1 - g) * y_r with a learned per-channel g, initialised at 0.5).
    """

    def __init__(self, config: MambaConfig, layer_idx: int = 0):
        super().__init__()
        self.config = config
        self.fwd = MambaMixer(config, layer_idx)
        self.rev = MambaMixer(config, layer_idx, with_projections=not config.tie_bidirectional)
        if config.bidirectional_strategy == "gate":
            self.gate_logit = nn.Parameter(torch.zeros(config.d_model))

    def forward(self, hidden, mask=None, seq_idx=None, state=None):
        if state is not None:
            raise ValueError("a bidirectional model has no recurrent state: it reads the whole sequence both ways")
        tied = self.config.tie_bidirectional
        y_f = self.fwd(hidden, mask, seq_idx)
        flip = lambda t: t.flip(1) if t is not None else None  # noqa: E731
        y_r = self.rev(
            hidden.flip(1), flip(mask), flip(seq_idx),
            in_proj=self.fwd.in_proj if tied else None, out_proj=self.fwd.out_proj if tied else None,
        ).flip(1)
        s = self.config.bidirectional_strategy
        if s == "add":
            return y_f + y_r
        if s == "mul":
            return y_f * y_r
        g = torch.sigmoid(self.gate_logit).to(y_f.dtype)
        return g * y_f + (1 - g) * y_r
