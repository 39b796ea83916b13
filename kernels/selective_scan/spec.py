"""Input contract of the selective scan, checked once for every backend."""
from __future__ import annotations

from dataclasses import dataclass

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass
class ScanInputs:
    """Validated inputs of ``selective_scan``.

    u, delta: (batch, dim, L); A: (dim, N) real, negative for a stable scan;
    B, C: (batch, G, N, L) time-varying with G dividing dim, or (dim, N)
    time-invariant; D, delta_bias: (dim,); z: (batch, dim, L);
    initial_state: (batch, dim, N); seq_idx: (batch, L) integer;
    mask: (batch, L) bool or 0/1.
    """

    u: torch.Tensor
    delta: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    D: torch.Tensor | None = None
    z: torch.Tensor | None = None
    delta_bias: torch.Tensor | None = None
    delta_softplus: bool = False
    initial_state: torch.Tensor | None = None
    seq_idx: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        u = self.u
        if u.dim() != 3:
            raise ValueError(f"selective_scan: u must be (batch, dim, L), got shape {tuple(u.shape)}")
        batch, dim, length = u.shape
        for name in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state"):
            t = getattr(self, name)
            if t is not None and t.dtype not in FLOAT_DTYPES:
                raise TypeError(f"selective_scan: {name} must be float32/float16/bfloat16, got {t.dtype}")
            if t is not None and t.device != u.device:
                raise ValueError(f"selective_scan: {name} is on {t.device} but u is on {u.device}")
        if tuple(self.delta.shape) != (batch, dim, length):
            raise ValueError(f"selective_scan: delta must have u's shape {tuple(u.shape)}, got {tuple(self.delta.shape)}")
        if self.A.dim() != 2 or self.A.shape[0] != dim:
            raise ValueError(f"selective_scan: A must be (dim={dim}, N), got {tuple(self.A.shape)}")
        n_state = self.A.shape[1]
        if n_state < 1 or n_state > 256:
            raise ValueError(f"selective_scan: d_state must be in 1..256, got {n_state}")
        for name in ("B", "C"):
            t = getattr(self, name)
            if t.dim() == 3:  # (batch, N, L): one group
                t = t.unsqueeze(1)
                setattr(self, name, t)
            if t.dim() == 4:
                if t.shape[0] != batch or t.shape[2] != n_state or t.shape[3] != length:
                    raise ValueError(
                        f"selective_scan: time-varying {name} must be (batch={batch}, groups, N={n_state}, L={length}), "
                        f"got {tuple(t.shape)}"
                    )
                if dim % t.shape[1] != 0:
                    raise ValueError(f"selective_scan: {name} has {t.shape[1]} groups, which does not divide dim={dim}")
            elif t.dim() == 2:
                if tuple(t.shape) != (dim, n_state):
                    raise ValueError(f"selective_scan: time-invariant {name} must be (dim={dim}, N={n_state}), got {tuple(t.shape)}")
            else:
                raise ValueError(f"selective_scan: {name} must be (batch, G, N, L) or (dim, N), got {tuple(t.shape)}")
        for name in ("D", "delta_bias"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != (dim,):
                raise ValueError(f"selective_scan: {name} must be (dim={dim},), got {tuple(t.shape)}")
        if self.z is not None and tuple(self.z.shape) != (batch, dim, length):
            raise ValueError(f"selective_scan: z must have u's shape {tuple(u.shape)}, got {tuple(self.z.shape)}")
        if self.initial_state is not None and tuple(self.initial_state.shape) != (batch, dim, n_state):
            raise ValueError(
                f"selective_scan: initial_state must be (batch={batch}, dim={dim}, N={n_state}), got {tuple(self.initial_state.shape)}"
            )
        for name in ("seq_idx", "mask"):
            t = getattr(self, name)
            if t is None:
                continue
            if tuple(t.shape) != (batch, length):
                raise ValueError(f"selective_scan: {name} must be (batch={batch}, L={length}), got {tuple(t.shape)}")
            if t.device != u.device:
                raise ValueError(f"selective_scan: {name} is on {t.device} but u is on {u.device}")
        if self.seq_idx is not None and (self.seq_idx.is_floating_point() or self.seq_idx.dtype == torch.bool):
            raise TypeError(f"selective_scan: seq_idx must be an integer tensor, got {self.seq_idx.dtype}")

    @property
    def time_varying(self) -> bool:
        return self.B.dim() == 4

    def _expand(self, t: torch.Tensor) -> torch.Tensor:
        """(batch, G, N, L) -> (batch, dim, N, L) float32; (dim, N) stays (dim, N)."""
        if t.dim() == 2:
            return t.float()
        dim = self.u.shape[1]
        return t.float().repeat_interleave(dim // t.shape[1], dim=1)

    def expanded_B(self) -> torch.Tensor:
        return self._expand(self.B)

    def expanded_C(self) -> torch.Tensor:
        return self._expand(self.C)
