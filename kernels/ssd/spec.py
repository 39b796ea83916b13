"""Input contract of the SSD scan (Mamba-2), checked once for every backend."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass
class SSDInputs:
    """Validated inputs of ``ssd_scan``.

    x: (batch, L, H, P) with H heads of P channels; dt: (batch, L, H) before bias and softplus;
    A: (H,) real, negative for a stable scan (one scalar per head); B, C: (batch, L, G, N) with
    G groups dividing H (head h reads group h // (H / G)); D: (H,); z: (batch, L, H, P);
    dt_bias: (H,); dt_limit: (lo, hi) clamp of dt after softplus; initial_state: (batch, H, P, N);
    seq_idx, mask: (batch, L); chunk_size: steps per chunk of the chunked and Triton backends.
    """

    x: torch.Tensor
    dt: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    D: torch.Tensor | None = None
    z: torch.Tensor | None = None
    dt_bias: torch.Tensor | None = None
    dt_softplus: bool = False
    dt_limit: tuple[float, float] = (0.0, math.inf)
    initial_state: torch.Tensor | None = None
    seq_idx: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    chunk_size: int = 64

    def __post_init__(self) -> None:
        x = self.x
        if x.dim() != 4:
            raise ValueError(f"ssd_scan: x must be (batch, L, heads, headdim), got shape {tuple(x.shape)}")
        batch, length, heads, headdim = x.shape
        for name in ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_state"):
            t = getattr(self, name)
            if t is not None and t.dtype not in FLOAT_DTYPES:
                raise TypeError(f"ssd_scan: {name} must be float32/float16/bfloat16, got {t.dtype}")
            if t is not None and t.device != x.device:
                raise ValueError(f"ssd_scan: {name} is on {t.device} but x is on {x.device}")
        if tuple(self.dt.shape) != (batch, length, heads):
            raise ValueError(f"ssd_scan: dt must be (batch={batch}, L={length}, heads={heads}), got {tuple(self.dt.shape)}")
        if tuple(self.A.shape) != (heads,):
            raise ValueError(f"ssd_scan: A must be (heads={heads},), one scalar per head, got {tuple(self.A.shape)}")
        if self.B.dim() != 4 or self.B.shape[:2] != (batch, length):
            raise ValueError(f"ssd_scan: B must be (batch={batch}, L={length}, groups, N), got {tuple(self.B.shape)}")
        groups, n_state = self.B.shape[2:]
        if tuple(self.C.shape) != tuple(self.B.shape):
            raise ValueError(f"ssd_scan: C must have B's shape {tuple(self.B.shape)}, got {tuple(self.C.shape)}")
        if heads % groups != 0:
            raise ValueError(f"ssd_scan: B and C have {groups} groups, which does not divide heads={heads}")
        if not 1 <= n_state <= 256:
            raise ValueError(f"ssd_scan: d_state must be in 1..256, got {n_state}")
        for name in ("D", "dt_bias"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != (heads,):
                raise ValueError(f"ssd_scan: {name} must be (heads={heads},), got {tuple(t.shape)}")
        if self.z is not None and tuple(self.z.shape) != tuple(x.shape):
            raise ValueError(f"ssd_scan: z must have x's shape {tuple(x.shape)}, got {tuple(self.z.shape)}")
        if self.initial_state is not None and tuple(self.initial_state.shape) != (batch, heads, headdim, n_state):
            raise ValueError(
                f"ssd_scan: initial_state must be (batch={batch}, heads={heads}, headdim={headdim}, N={n_state}), "
                f"got {tuple(self.initial_state.shape)}"
            )
        for name in ("seq_idx", "mask"):
            t = getattr(self, name)
            if t is None:
                continue
            if tuple(t.shape) != (batch, length):
                raise ValueError(f"ssd_scan: {name} must be (batch={batch}, L={length}), got {tuple(t.shape)}")
            if t.device != x.device:
                raise ValueError(f"ssd_scan: {name} is on {t.device} but x is on {x.device}")
        if self.seq_idx is not None and (self.seq_idx.is_floating_point() or self.seq_idx.dtype == torch.bool):
            raise TypeError(f"ssd_scan: seq_idx must be an integer tensor, got {self.seq_idx.dtype}")
        lo, hi = self.dt_limit
        if not 0.0 <= lo < hi:
            raise ValueError(f"ssd_scan: dt_limit must be (lo, hi) with 0 <= lo < hi, got {self.dt_limit}")
        if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise ValueError(f"ssd_scan: chunk_size must be a positive integer, got {self.chunk_size!r}")

    @property
    def shape(self) -> tuple[int, int, int, int, int, int]:
        """(batch, L, heads, headdim, groups, N)."""
        batch, length, heads, headdim = self.x.shape
        return batch, length, heads, headdim, self.B.shape[2], self.B.shape[3]

    def discretised_dt(self) -> torch.Tensor:
        """dt (batch, L, H) fp32 as the scan uses it: + dt_bias, softplus, clamped to dt_limit, 0 where masked."""
        dt = self.dt.float()
        if self.dt_bias is not None:
            dt = dt + self.dt_bias.float()
        if self.dt_softplus:
            dt = torch.nn.functional.softplus(dt)
        lo, hi = self.dt_limit
        if lo > 0.0 or hi < math.inf:
            dt = dt.clamp(lo, hi)
        if self.mask is not None:
            dt = dt * self.mask[..., None].to(dt.dtype)
        return dt

    def resets(self) -> torch.Tensor | None:
        """(batch, L) bool: True where the state is reset before the step (seq_idx changes), else None."""
        if self.seq_idx is None:
            return None
        r = torch.zeros(self.seq_idx.shape, dtype=torch.bool, device=self.x.device)
        r[:, 1:] = self.seq_idx[:, 1:] != self.seq_idx[:, :-1]
        return r
