"""What every PEFT method shares: the config base class and the lookup of targets.

A method is a typed config (a ``MethodConfig`` dataclass) and an ``apply_*``
function that changes a model in place and returns the parameters it makes
trainable. ``registry.py`` joins them.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
from typing import Any, ClassVar, Iterable

import torch.nn as nn

from ..config import ConfigError, check_known_keys
from ..mixer import MambaMixer
from ..mixer2 import Mamba2Mixer
from ..model import MambaBlock, MambaModel


@dataclasses.dataclass
class MethodConfig:
    """Base of the per-method configs; subclasses set ``method`` and implement ``validate``."""

    method: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raises ConfigError for an invalid value."""

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MethodConfig":
        values = {k: v for k, v in d.items() if k != "method"}
        check_known_keys(cls, values, f"{cls.method} config")
        return cls(**values)

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.method}: {message}")


def check_int(cfg: MethodConfig, name: str, lo: int = 1, allow_none: bool = False) -> None:
    v = getattr(cfg, name)
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise cfg.error(f"{name} must be an integer >= {lo}, got {v!r}")


def check_choice(cfg: MethodConfig, name: str, choices: Iterable[Any]) -> None:
    v, choices = getattr(cfg, name), tuple(choices)
    if v not in choices:
        close = difflib.get_close_matches(str(v), [str(c) for c in choices], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise cfg.error(f"{name} must be one of {choices}, got {v!r}{hint}")


def check_str_list(cfg: MethodConfig, name: str, allow_empty: bool = False) -> None:
    v = getattr(cfg, name)
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or not all(isinstance(s, str) and s for s in v):
        raise cfg.error(f"{name} must be a list of non-empty strings, got {v!r}")
    if not v and not allow_empty:
        raise cfg.error(f"{name} must not be empty")
    setattr(cfg, name, list(v))


# -- where things are in a model ---------------------------------------------------------

def backbone_of(model: nn.Module) -> MambaModel:
    """The MambaModel of a MambaForTask (``.backbone``) or the model itself."""
    if isinstance(model, MambaModel):
        return model
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, MambaModel):
        return backbone
    raise TypeError(f"expected a MambaModel or a model with a .backbone MambaModel, got {type(model).__name__}")


def head_of(model: nn.Module) -> nn.Module | None:
    return getattr(model, "head", None) if not isinstance(model, MambaModel) else None


def blocks_of(model: nn.Module, layers: list[int] | None = None) -> list[MambaBlock]:
    """The blocks of the backbone, optionally only those at ``layers`` (negative indices count from the top)."""
    blocks = list(backbone_of(model).layers)
    if layers is None:
        return blocks
    n = len(blocks)
    for i in layers:
        if not -n <= i < n:
            raise ConfigError(f"layer index {i} is out of range for a model with {n} layers")
    return [blocks[i % n] for i in sorted({i % n for i in layers})]


def mixers_of(model: nn.Module, layers: list[int] | None = None) -> list[MambaMixer | Mamba2Mixer]:
    """Every Mamba-1 or Mamba-2 mixer (both directions of a bidirectional mixer) of the chosen blocks."""
    return [m for block in blocks_of(model, layers) for m in block.modules() if isinstance(m, (MambaMixer, Mamba2Mixer))]


def generic_name(name: str) -> str:
    """``backbone.layers.3.mixer.in_proj`` -> ``backbone.layers.*.mixer.in_proj`` (for short listings)."""
    return re.sub(r"\.\d+(?=\.|$)", ".*", name)


def name_matches(name: str, pattern: str) -> bool:
    """A pattern names a module or parameter by its last dotted parts (``in_proj``,
    ``mixer.x_proj``) or by a glob over the full name (``backbone.layers.1*.mixer.in_proj``)."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, "*." + pattern)


def no_match_error(what: str, pattern: str, available: Iterable[str]) -> ConfigError:
    names = sorted({generic_name(n) for n in available})
    close = difflib.get_close_matches(pattern, sorted({n.rsplit(".", 1)[-1] for n in names}), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listing = "\n  ".join(names) if names else "(none)"
    return ConfigError(f"{what} target {pattern!r} matches nothing in the model.{hint} Available:\n  {listing}")


def match_modules(root: nn.Module, patterns: list[str], kind: type, what: str,
                  within: list[nn.Module] | None = None) -> list[tuple[str, nn.Module]]:
    """Modules of type ``kind`` under ``root`` whose names match any pattern; every pattern must match.

    ``within``: only modules that sit inside one of these (e.g. the chosen layers)."""
    allowed = None
    if within is not None:
        allowed = {id(m) for w in within for m in w.modules()}
    candidates = [(n, m) for n, m in root.named_modules()
                  if isinstance(m, kind) and (allowed is None or id(m) in allowed)]
    found: dict[int, tuple[str, nn.Module]] = {}
    for pattern in patterns:
        hits = [(n, m) for n, m in candidates if name_matches(n, pattern)]
        if not hits:
            raise no_match_error(what, pattern, [n for n, _ in candidates])
        for n, m in hits:
            found.setdefault(id(m), (n, m))
    return list(found.values())


def set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)
