"""Mamba-2 mixer: explicit projections around the conv and SSD kernels.

in_proj -> [z | x B C | dt] -> causal conv + SiLU over x B C -> SSD scan (multi-head, one A per
head, B and C shared by a group of heads) -> gated RMSNorm with z -> out_proj. As in the Mamba-1
mixer, every projection is an ``nn.Linear`` called as a module, so an adapter on ``in_proj`` or
``out_proj`` acts on every kernel backend; the kernels receive activations only.

With ``d_ssm < d_inner`` (mamba_ssm's option) in_proj also yields ``[z0 | x0]`` first, a gated MLP
beside the SSM whose output silu(z0) * x0 is put before the SSM's in out_proj's input.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mambatune.kernels import causal_conv1d, causal_conv1d_update, ssd_scan, ssd_state_update

from .config import MambaConfig
from .mixer import BiMambaMixer, LayerState, MambaMixer


class GatedRMSNorm(nn.Module):
    """RMSNorm over groups of ``group_size`` channels, gated by silu(z).

    norm_before_gate False: weight * rmsnorm(y * silu(z)); True: weight * rmsnorm(y) * silu(z)."""

    def __init__(self, dim: int, group_size: int, eps: float = 1e-5, norm_before_gate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.weight._no_weight_decay = True
        self.group_size, self.eps, self.norm_before_gate = group_size, eps, norm_before_gate

    def forward(self, y: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """y, z: (..., dim) -> (..., dim) in y's dtype."""
        dtype = y.dtype
        yf = y.float()
        if z is not None and not self.norm_before_gate:
            yf = yf * F.silu(z.float())
        groups = yf.unflatten(-1, (-1, self.group_size))
        yf = (groups * torch.rsqrt(groups.pow(2).mean(-1, keepdim=True) + self.eps)).flatten(-2)
        if z is not None and self.norm_before_gate:
            yf = yf * F.silu(z.float())
        return self.weight * yf.to(dtype)


class Mamba2Mixer(nn.Module):
    """in_proj -> causal conv + SiLU over x B C -> SSD scan -> gated RMSNorm -> out_proj.

    Parameters: in_proj (2 * d_inner + 2 * ngroups * d_state + nheads, d_model), conv1d over
    d_ssm + 2 * ngroups * d_state channels, dt_bias, A_log, D: (nheads,), norm (d_ssm,), out_proj."""

    def __init__(self, config: MambaConfig, layer_idx: int = 0, with_projections: bool = True):
        super().__init__()
        c = self.config = config
        self.layer_idx = layer_idx
        self.d_ssm = c.d_ssm if c.d_ssm is not None else c.d_inner
        self.d_mlp = c.d_inner - self.d_ssm
        self.nheads, self.headdim, self.ngroups = c.nheads, c.headdim, c.ngroups
        self.conv_dim = self.d_ssm + 2 * c.ngroups * c.d_state
        if with_projections:
            self.in_proj = nn.Linear(c.d_model, 2 * c.d_inner + 2 * c.ngroups * c.d_state + self.nheads, bias=c.bias)
            self.out_proj = nn.Linear(c.d_inner, c.d_model, bias=c.bias)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, c.d_conv, groups=self.conv_dim, padding=c.d_conv - 1,
                                bias=c.conv_bias)
        self.dt_bias = nn.Parameter(torch.empty(self.nheads))
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(self.nheads))
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True
        self.norm = GatedRMSNorm(self.d_ssm, self.d_ssm // c.ngroups, c.norm_epsilon, c.norm_before_gate)
        # optional adapter hooks (mambatune.core.peft): affix tokens read before conv and scan (peft/affix.py);
        # extra states or extra heads of an additional-scan adapter (peft/additional_scan.py)
        self.prefix: nn.Module | None = None
        self.ssm_extension: nn.Module | None = None
        self.reset_dt()

    @torch.no_grad()
    def reset_dt(self) -> None:
        """dt ~ log-uniform[dt_min, dt_max] per head, stored as softplus^-1 in dt_bias."""
        c = self.config
        dt = torch.exp(torch.rand(self.nheads) * (math.log(c.dt_max) - math.log(c.dt_min)) + math.log(c.dt_min))
        dt = dt.clamp(min=c.dt_init_floor)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    @property
    def dt_limit(self) -> tuple[float, float]:
        lim = self.config.dt_limit
        return (lim[0], lim[1]) if lim is not None else (0.0, math.inf)

    def in_proj_rows(self, part: str) -> tuple[int, int]:
        """in_proj output rows [start, end) of ``part``: ``"z"`` (the norm's gate) or ``"x"`` (x, B and C,
        what feeds the conv and the scan); LoRAp's output_slice uses them."""
        start = 2 * self.d_mlp
        if part == "z":
            return start, start + self.d_ssm
        if part == "x":
            return start + self.d_ssm, start + self.d_ssm + self.conv_dim
        raise ValueError(f"in_proj_rows: part must be 'x' or 'z', got {part!r}")

    def _split(self, zxbcdt: torch.Tensor):
        """(..., d_in_proj) -> z0, x0 (..., d_mlp), z (..., d_ssm), xBC (..., conv_dim), dt (..., nheads)."""
        return torch.split(zxbcdt, [self.d_mlp, self.d_mlp, self.d_ssm, self.conv_dim, self.nheads], dim=-1)

    def _finish(self, y: torch.Tensor, z: torch.Tensor, z0: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Gated norm of the SSM output y (..., d_ssm), and the MLP part beside it."""
        y = self.norm(y, z)
        if self.d_mlp:
            y = torch.cat([F.silu(z0) * x0, y.to(x0.dtype)], dim=-1)
        return y

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
        zxbcdt = in_proj(hidden)
        if state is not None and hidden.shape[1] == 1 and mask is None and seq_idx is None:
            y, extra = self._step(zxbcdt[:, 0], state)
            out = out_proj(y[:, None])
            return out + extra[:, None].to(out.dtype) if extra is not None else out
        y, extra = self.scan_path(zxbcdt, mask, seq_idx, state)
        if prefix is not None:
            y = y[:, prefix.num_tokens:]
            extra = extra[:, prefix.num_tokens:] if extra is not None else None
            if state is not None:
                state.prefixed = True
        out = out_proj(y)
        return out + extra.to(out.dtype) if extra is not None else out

    def scan_path(self, zxbcdt, mask=None, seq_idx=None, state: LayerState | None = None):
        """zxbcdt: (batch, L, d_in_proj), the in_proj output. Returns the out_proj input (batch, L, d_inner) and
        the extra heads' residual update (batch, L, d_model) of an additional-scan adapter (else None)."""
        c = self.config
        batch, length, _ = zxbcdt.shape
        z0, x0, z, xBC, dt = self._split(zxbcdt)
        xBC_t = xBC.transpose(1, 2)
        conv_init = state.conv.to(xBC_t.dtype) if state is not None else None
        xBC_t = causal_conv1d(xBC_t, self.conv1d.weight, self.conv1d.bias, "silu", seq_idx=seq_idx, mask=mask,
                              initial_state=conv_init, backend=c.backend)
        if state is not None:
            self._update_conv_state(xBC, mask, state)
        x, B, C = torch.split(xBC_t.transpose(1, 2), [self.d_ssm, c.ngroups * c.d_state, c.ngroups * c.d_state], dim=-1)
        B, C = B.unflatten(-1, (c.ngroups, c.d_state)), C.unflatten(-1, (c.ngroups, c.d_state))
        ext = self.ssm_extension
        scan = dict(dt_softplus=True, dt_limit=self.dt_limit, return_final_state=True, seq_idx=seq_idx, mask=mask,
                    chunk_size=c.chunk_size, backend=c.backend)
        extra = None
        if ext is not None and ext.num_heads:
            xe, ze, dte, Be, Ce = ext.inputs(x, z, dt, B, C, c.ngroups)
            ye, last_e = ssd_scan(xe, dte, -torch.exp(ext.A_log.float()), Be, Ce, D=ext.D, dt_bias=ext.dt_bias,
                                  initial_state=state.ssm[:, self.nheads:] if state is not None else None, **scan)
            extra = ext.output(ye, ze)
            if state is not None:
                state.ssm[:, self.nheads:].copy_(last_e)
        if ext is not None:
            B, C = ext.extend_bc(x, B, C)
        y, last = ssd_scan(
            x.unflatten(-1, (self.nheads, self.headdim)), dt, -torch.exp(self.A_log.float()), B, C, D=self.D,
            dt_bias=self.dt_bias, initial_state=state.ssm[:, :self.nheads] if state is not None else None, **scan,
        )
        if state is not None:
            state.ssm[:, :self.nheads].copy_(last)
        return self._finish(y.reshape(batch, length, self.d_ssm), z, z0, x0), extra

    def _update_conv_state(self, xBC: torch.Tensor, mask, state: LayerState) -> None:
        """Keeps the last d_conv - 1 (masked) conv inputs; xBC: (batch, L, conv_dim)."""
        width = self.config.d_conv - 1
        if width == 0:
            return
        xs = xBC.detach().float()
        if mask is not None:
            xs = xs * mask[..., None].to(xs.dtype)
        hist = torch.cat([state.conv.transpose(1, 2).float(), xs], dim=1)[:, -width:]
        state.conv.copy_(hist.transpose(1, 2))

    def _step(self, zxbcdt: torch.Tensor, state: LayerState):
        """One token: zxbcdt (batch, d_in_proj) -> the out_proj input (batch, d_inner) and the extra heads'
        residual update (batch, d_model) or None."""
        c = self.config
        z0, x0, z, xBC, dt = self._split(zxbcdt)
        xBC = causal_conv1d_update(xBC, state.conv, self.conv1d.weight, self.conv1d.bias, "silu")
        x, B, C = torch.split(xBC, [self.d_ssm, c.ngroups * c.d_state, c.ngroups * c.d_state], dim=-1)
        B, C = B.unflatten(-1, (c.ngroups, c.d_state)), C.unflatten(-1, (c.ngroups, c.d_state))
        ext = self.ssm_extension
        extra = None
        if ext is not None and ext.num_heads:
            xe, ze, dte, Be, Ce = ext.inputs(x, z, dt, B, C, c.ngroups)
            ye = ssd_state_update(state.ssm[:, self.nheads:], xe, dte, -torch.exp(ext.A_log.float()), Be, Ce, ext.D,
                                  dt_bias=ext.dt_bias, dt_softplus=True, dt_limit=self.dt_limit)
            extra = ext.output(ye, ze)
        if ext is not None:
            B, C = ext.extend_bc(x, B, C)
        y = ssd_state_update(
            state.ssm[:, :self.nheads], x.unflatten(-1, (self.nheads, self.headdim)), dt, -torch.exp(self.A_log.float()),
            B, C, self.D, dt_bias=self.dt_bias, dt_softplus=True, dt_limit=self.dt_limit,
        )
        return self._finish(y.flatten(-2), z, z0, x0), extra

    def new_state(self, batch: int, device, dtype=torch.float32) -> LayerState:
        """conv (batch, conv_dim, d_conv - 1) and ssm (batch, heads, headdim, N), fp32; an additional-scan
        adapter's extra states widen N, its extra heads follow the mixer's own."""
        c = self.config
        ext = self.ssm_extension
        heads = self.nheads + (ext.num_heads if ext is not None else 0)
        n = c.d_state + (ext.num_states if ext is not None else 0)
        return LayerState(
            conv=torch.zeros(batch, self.conv_dim, c.d_conv - 1, device=device, dtype=torch.float32),
            ssm=torch.zeros(batch, heads, self.headdim, n, device=device, dtype=torch.float32),
        )


class BiMamba2Mixer(BiMambaMixer):
    """BiMambaMixer (see mixer.py) over two Mamba-2 mixers: a forward scan and one over the reversed
    sequence, with in_proj / out_proj shared when ``tie_bidirectional``."""

    def __init__(self, config: MambaConfig, layer_idx: int = 0):
        nn.Module.__init__(self)
        self.config = config
        self.fwd = Mamba2Mixer(config, layer_idx)
        self.rev = Mamba2Mixer(config, layer_idx, with_projections=not config.tie_bidirectional)
        if config.bidirectional_strategy == "gate":
            self.gate_logit = nn.Parameter(torch.zeros(config.d_model))


def make_mixer(config: MambaConfig, layer_idx: int) -> nn.Module:
    """The mixer of one block for ``config.arch`` and ``config.bidirectional``."""
    if config.arch == "mamba2":
        return BiMamba2Mixer(config, layer_idx) if config.bidirectional else Mamba2Mixer(config, layer_idx)
    return BiMambaMixer(config, layer_idx) if config.bidirectional else MambaMixer(config, layer_idx)
