"""Tuning chosen base parameters: by name group, the top k blocks, the head only, or everything.

These methods add nothing to the model; they choose which existing parameters
train. Groups (per mixer unless noted): ``A_log``, ``D``, ``dt_bias`` (dt_proj's
bias; Mamba-2's dt_bias), ``conv1d`` (weight and bias), ``norms`` (every RMSNorm / LayerNorm,
Mamba-2's gated norm and norm_f included), ``embeddings`` (the token embedding; with a tied LM head this
trains the head too), ``gate`` (a bidirectional mixer's gate).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import torch.nn as nn

from ..config import ConfigError
from ..heads import LMHead
from ..mixer import BiMambaMixer
from ..mixer2 import GatedRMSNorm
from ..model import RMSNorm
from .base import MethodConfig, backbone_of, blocks_of, check_int, check_str_list, head_of, mixers_of, name_matches, no_match_error

GROUPS = ("A_log", "D", "dt_bias", "conv1d", "norms", "embeddings", "gate")


@dataclass
class PartialConfig(MethodConfig):
    """groups: names from GROUPS; params: extra patterns over parameter names
    (``mixer.x_proj.weight``, a glob ``backbone.layers.1*``); layers: restrict the per-block
    groups (all but ``embeddings``) to these block indices (None = all)."""

    method = "partial"
    groups: list[str] = field(default_factory=lambda: ["A_log", "D", "dt_bias"])
    params: list[str] = field(default_factory=list)
    layers: list[int] | None = None

    def validate(self) -> None:
        check_str_list(self, "groups", allow_empty=True)
        check_str_list(self, "params", allow_empty=True)
        for g in self.groups:
            if g not in GROUPS:
                close = difflib.get_close_matches(g, GROUPS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.error(f"unknown group {g!r}{hint} (groups: {', '.join(GROUPS)})")
        if not self.groups and not self.params:
            raise self.error("name at least one group or parameter pattern")


def group_params(model: nn.Module, group: str, layers: list[int] | None = None) -> list[nn.Parameter]:
    """The base parameters of one group."""
    if group == "embeddings":
        return [backbone_of(model).embedding.weight]
    if group == "norms":
        modules = blocks_of(model, layers) + ([backbone_of(model).norm_f] if layers is None else [])
        return [p for m in modules for n in m.modules() if isinstance(n, (RMSNorm, nn.LayerNorm, GatedRMSNorm))
                for p in n.parameters(recurse=False)]
    if group == "gate":
        return [m.gate_logit for b in blocks_of(model, layers) for m in b.modules()
                if isinstance(m, BiMambaMixer) and hasattr(m, "gate_logit")]
    pick = {
        "A_log": lambda m: [m.A_log],
        "D": lambda m: [m.D],
        "dt_bias": lambda m: [m.dt_bias] if hasattr(m, "dt_bias") else [m.dt_proj.bias],
        "conv1d": lambda m: [p for p in m.conv1d.parameters()],
    }[group]
    return [p for m in mixers_of(model, layers) for p in pick(m)]


def apply_partial(model: nn.Module, cfg: PartialConfig) -> list[nn.Parameter]:
    params: list[nn.Parameter] = []
    for g in cfg.groups:
        found = group_params(model, g, cfg.layers)
        if not found:
            raise ConfigError(f"partial: group {g!r} has no parameters in this model")
        params += found
    named = list(model.named_parameters())
    for pattern in cfg.params:
        hits = [p for n, p in named if name_matches(n, pattern)]
        if not hits:
            raise no_match_error("partial", pattern, [n for n, _ in named])
        params += hits
    return params


@dataclass
class TopLayersConfig(MethodConfig):
    """Trains every parameter of the top ``k`` blocks (and the final norm); the rest stays frozen."""

    method = "top_layers"
    k: int = 2
    final_norm: bool = True

    def validate(self) -> None:
        check_int(self, "k")


def apply_top_layers(model: nn.Module, cfg: TopLayersConfig) -> list[nn.Parameter]:
    blocks = blocks_of(model)
    if cfg.k > len(blocks):
        raise ConfigError(f"top_layers: k={cfg.k} but the model has {len(blocks)} layers")
    params = [p for b in blocks[len(blocks) - cfg.k:] for p in b.parameters()]
    if cfg.final_norm:
        params += list(backbone_of(model).norm_f.parameters())
    return params


@dataclass
class HeadOnlyConfig(MethodConfig):
    """Trains the task head only (a frozen backbone as feature extractor)."""

    method = "head_only"


def apply_head_only(model: nn.Module, cfg: HeadOnlyConfig) -> list[nn.Parameter]:
    head = head_of(model)
    if head is None:
        raise ConfigError("head_only: the model has no head (pass a MambaForTask)")
    params = list(head.parameters())
    if not params:
        hint = " (an LM head tied to the embedding; use partial with groups=['embeddings'])" if isinstance(head, LMHead) else ""
        raise ConfigError(f"head_only: the head has no parameters of its own{hint}")
    return params


@dataclass
class FullConfig(MethodConfig):
    """Trains every parameter (full fine-tuning), adapters included."""

    method = "full"


def apply_full(model: nn.Module, cfg: FullConfig) -> list[nn.Parameter]:
    return list(model.parameters())
