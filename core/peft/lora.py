"""LoRA, partial LoRA (LoRAp) and DoRA on any ``nn.Linear`` of the model.

``y = F.linear(x, W, b) + (alpha / rank) * B(A(dropout(x)))`` with B zero-initialised,
so the wrapped layer starts as the base layer. With ``output_slice`` the update is
added to a slice of the output rows only: on ``in_proj`` (outputs ``[x | z]``),
``"x"`` is LoRAp(X) of MambaPEFT (the branch that feeds conv and scan) and ``"z"``
is LoRAp(Z) (the gate); on a Mamba-2 ``in_proj`` (outputs ``[z | x B C | dt]``) ``"x"``
names the x, B and C rows (what feeds the conv and the scan) and ``"z"`` the gate rows. DoRA (Liu et al., 2024) learns a magnitude per output row
and keeps the direction weight-normalised:
``W' = m * (W + s BA) / ||W + s BA||`` (row norms).

The wrapper is an ``nn.Linear`` that holds the base layer's own ``weight`` and
``bias`` parameters, so base parameter names stay as they were
(``mixer.in_proj.weight``) and the adapter adds ``lora_A``, ``lora_B`` (and
``lora_magnitude``) next to them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import MethodConfig, blocks_of, check_int, check_str_list, head_of, match_modules, set_submodule

SLICE_NAMES = ("x", "z")


@dataclass
class LoRAConfig(MethodConfig):
    """targets: module name patterns (``in_proj``, ``x_proj``, ``dt_proj``, ``out_proj``, ``score``
    for a task head, or a glob over full names); rank, alpha (scale = alpha / rank), dropout on the
    adapter's input; output_slice: None (all rows), ``"x"`` / ``"z"`` (first / second half of the
    outputs: the x and z halves of in_proj) or ``[start, end)``; dora: weight-decomposed LoRA;
    layers: block indices to adapt (None = all; a head target is always included)."""

    method = "lora"
    targets: list[str] = field(default_factory=lambda: ["in_proj", "out_proj"])
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    output_slice: str | list[int] | None = None
    dora: bool = False
    layers: list[int] | None = None

    def validate(self) -> None:
        check_str_list(self, "targets")
        check_int(self, "rank")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise self.error(f"alpha must be a positive number, got {self.alpha!r}")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise self.error(f"dropout must be in [0, 1), got {self.dropout!r}")
        s = self.output_slice
        if isinstance(s, tuple):
            s = self.output_slice = list(s)
        if not (s is None or s in SLICE_NAMES or (
                isinstance(s, list) and len(s) == 2 and all(isinstance(i, int) and not isinstance(i, bool) for i in s)
                and 0 <= s[0] < s[1])):
            raise self.error(f"output_slice must be None, 'x', 'z' or [start, end) with 0 <= start < end, got {s!r}")
        if not isinstance(self.dora, bool):
            raise self.error(f"dora must be true or false, got {self.dora!r}")
        if self.layers is not None and (not isinstance(self.layers, list) or not all(isinstance(i, int) for i in self.layers)):
            raise self.error(f"layers must be None or a list of block indices, got {self.layers!r}")


def resolve_rows(output_slice, out_features: int, name: str) -> tuple[int, int]:
    """Output rows [start, end) that the update touches."""
    if output_slice is None:
        return 0, out_features
    if output_slice in SLICE_NAMES:
        if out_features % 2:
            raise ValueError(f"lora: output_slice {output_slice!r} needs an even number of outputs; {name} has {out_features}")
        half = out_features // 2
        return (0, half) if output_slice == "x" else (half, out_features)
    start, end = output_slice
    if end > out_features:
        raise ValueError(f"lora: output_slice [{start}, {end}) is outside {name}'s {out_features} outputs")
    return start, end


class LoRALinear(nn.Linear):
    """An ``nn.Linear`` with a low-rank update on output rows [start, end). Shapes:
    weight (out, in), lora_A (rank, in), lora_B (end - start, rank), lora_magnitude (end - start,)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0,
                 rows: tuple[int, int] | None = None, dora: bool = False):
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.rank, self.scale = rank, alpha / rank
        self.rows = rows if rows is not None else (0, base.out_features)
        start, end = self.rows
        like = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, **like))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = nn.Parameter(torch.zeros(end - start, rank, **like))
        self.register_parameter("lora_magnitude", None)
        if dora:
            self.lora_magnitude = nn.Parameter(base.weight.detach()[start:end].float().norm(dim=1).to(base.weight.dtype))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self._merged_norm: torch.Tensor | None = None

    def delta_weight(self) -> torch.Tensor:
        """scale * B @ A: (end - start, in)."""
        return self.scale * (self.lora_B @ self.lora_A)

    def dora_gain(self) -> torch.Tensor:
        """m / ||W + s BA|| per output row of the slice (fp32)."""
        start, end = self.rows
        direction = self.weight[start:end].float() + self.delta_weight().float()
        return self.lora_magnitude.float() / direction.norm(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        if self.merged:
            return y
        start, end = self.rows
        update = F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scale
        if self.lora_magnitude is not None:
            gain = self.dora_gain()
            base_rows = y[..., start:end]
            if self.bias is not None:
                base_rows = base_rows - self.bias[start:end]
            update = (gain - 1) * base_rows + gain * update
        return y + F.pad(update.to(y.dtype), (start, self.out_features - end))

    @torch.no_grad()
    def merge(self) -> None:
        """Folds the update into ``weight``; the outputs stay the same."""
        if self.merged:
            return
        start, end = self.rows
        w = self.weight[start:end]
        if self.lora_magnitude is not None:
            direction = w.float() + self.delta_weight().float()
            norm = direction.norm(dim=1)
            self._merged_norm = norm
            w.copy_((self.lora_magnitude.float() / norm)[:, None] * direction)
        else:
            w.add_(self.delta_weight().to(w.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restores the base ``weight`` after ``merge``."""
        if not self.merged:
            return
        start, end = self.rows
        w = self.weight[start:end]
        if self.lora_magnitude is not None:
            direction = w.float() * (self._merged_norm / self.lora_magnitude.float())[:, None]
            w.copy_(direction - self.delta_weight().float())
            self._merged_norm = None
        else:
            w.sub_(self.delta_weight().to(w.dtype))
        self.merged = False

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` holding this layer's (merged) weight and bias."""
        if not self.merged:
            raise RuntimeError("merge the LoRA update before unloading it")
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        lin.weight = self.weight
        lin.bias = self.bias
        return lin

    def extra_repr(self) -> str:
        kind = "dora" if self.lora_magnitude is not None else "lora"
        return f"{super().extra_repr()}, {kind} rank={self.rank}, scale={self.scale:g}, rows={self.rows}"


def apply_lora(model: nn.Module, cfg: LoRAConfig) -> list[nn.Parameter]:
    """Wraps every matching ``nn.Linear`` in a ``LoRALinear``; returns the new parameters."""
    within = None
    if cfg.layers is not None:
        within = blocks_of(model, cfg.layers)
        head = head_of(model)
        if head is not None:
            within.append(head)
    hits = match_modules(model, cfg.targets, nn.Linear, "lora", within)
    params: list[nn.Parameter] = []
    for name, linear in hits:
        if isinstance(linear, LoRALinear):
            raise ValueError(f"lora: {name} already carries a LoRA adapter; give each layer one LoRA config")
        owner = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        if cfg.output_slice in SLICE_NAMES and hasattr(owner, "in_proj_rows") and name.endswith("in_proj"):
            rows = owner.in_proj_rows(cfg.output_slice)  # a Mamba-2 in_proj: [z | x B C | dt]
        else:
            rows = resolve_rows(cfg.output_slice, linear.out_features, name)
        wrapped = LoRALinear(linear, cfg.rank, cfg.alpha, cfg.dropout, rows, cfg.dora)
        set_submodule(model, name, wrapped)
        params += [p for p in (wrapped.lora_A, wrapped.lora_B, wrapped.lora_magnitude) if p is not None]
    return params


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module, unload: bool = False) -> int:
    """Merges every LoRA layer into its base weight (outputs unchanged); with ``unload`` the
    wrappers are replaced by plain ``nn.Linear`` layers (the adapter is gone). Returns the count."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name, layer in layers:
        layer.merge()
        if unload:
            set_submodule(model, name, layer.to_linear())
    return len(layers)


def unmerge_lora(model: nn.Module) -> int:
    layers = lora_layers(model)
    for layer in layers:
        layer.unmerge()
    return len(layers)
