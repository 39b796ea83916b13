"""One entry point for every PEFT method: ``apply(model, config)``, and what follows from it.

``apply`` freezes the model, runs each method of the config in order (methods
combine: LoRA + additional-scan + a trainable head is one config), makes the
chosen parameters trainable and records them on ``model.peft_state``. From that
record come ``get_adapter_params``, ``trainable_summary`` and the adapter-only
``save_adapter`` / ``load_adapter`` (safetensors + a json of the config).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from ..atomic import atomic_write, host_tensors
from ..config import ConfigError, check_known_keys
from ..heads import LMHead
from .additional_scan import AdditionalScanConfig, apply_additional_scan
from .affix import AffixConfig, apply_affix
from .base import MethodConfig, head_of
from .lora import LoRAConfig, apply_lora, lora_layers, merge_lora, unmerge_lora
from .parallel_adapter import ParallelAdapterConfig, apply_parallel_adapter
from .partial import (
    FullConfig,
    HeadOnlyConfig,
    PartialConfig,
    TopLayersConfig,
    apply_full,
    apply_head_only,
    apply_partial,
    apply_top_layers,
)
from .prompt import PromptConfig, apply_prompt

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "mambatune_adapter.json"
LEGACY_CONFIG = "adapter_config.json"  # our config's name before Hugging Face PEFT's files were written beside it

METHODS: dict[str, tuple[type[MethodConfig], Callable[[nn.Module, Any], list[nn.Parameter]]]] = {
    "lora": (LoRAConfig, apply_lora),
    "prompt": (PromptConfig, apply_prompt),
    "affix": (AffixConfig, apply_affix),
    "additional_scan": (AdditionalScanConfig, apply_additional_scan),
    "parallel_adapter": (ParallelAdapterConfig, apply_parallel_adapter),
    "partial": (PartialConfig, apply_partial),
    "top_layers": (TopLayersConfig, apply_top_layers),
    "head_only": (HeadOnlyConfig, apply_head_only),
    "full": (FullConfig, apply_full),
}


def method_config(d: dict[str, Any] | MethodConfig) -> MethodConfig:
    """A method config from a dict with a ``method`` key (as in a YAML recipe)."""
    if isinstance(d, MethodConfig):
        return d
    if not isinstance(d, dict) or "method" not in d:
        raise ConfigError(f"a PEFT method config needs a 'method' key (one of {', '.join(METHODS)}), got {d!r}")
    name = d["method"]
    if name not in METHODS:
        close = difflib.get_close_matches(str(name), list(METHODS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown PEFT method {name!r}{hint} (methods: {', '.join(METHODS)})")
    return METHODS[name][0].from_dict(d)


@dataclasses.dataclass
class PeftConfig:
    """methods: the method configs, applied in order; train_head: ``"auto"`` (a task head trains,
    an LM head does not), true or false."""

    methods: list[MethodConfig] = dataclasses.field(default_factory=list)
    train_head: bool | str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.methods, (MethodConfig, dict)):
            self.methods = [self.methods]
        if not isinstance(self.methods, (list, tuple)):
            raise ConfigError(f"PeftConfig.methods must be a list of method configs, got {self.methods!r}")
        self.methods = [method_config(m) for m in self.methods]
        if self.train_head not in (True, False, "auto"):
            raise ConfigError(f"PeftConfig.train_head must be true, false or 'auto', got {self.train_head!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"methods": [m.to_dict() for m in self.methods], "train_head": self.train_head}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PeftConfig":
        check_known_keys(cls, d)
        return cls(**d)


def as_peft_config(config: PeftConfig | MethodConfig | dict | list) -> PeftConfig:
    """Accepts a PeftConfig, one method config, a list of them, or their dict forms."""
    if isinstance(config, PeftConfig):
        return config
    if isinstance(config, dict) and "method" not in config:
        return PeftConfig.from_dict(config)
    return PeftConfig(methods=config if isinstance(config, (list, tuple)) else [config])


@dataclasses.dataclass
class PeftState:
    """What ``apply`` did: the config and, per method label, the names of the parameters it trains."""

    config: PeftConfig
    params: dict[str, list[str]]
    hf_note: str | None = None  # why the last save_adapter wrote no Hugging Face PEFT files (None: it wrote them)


def peft_state(model: nn.Module) -> PeftState:
    state = getattr(model, "peft_state", None)
    if state is None:
        raise ValueError("the model has no PEFT adapters; call mambatune.core.peft.apply(model, config) first")
    return state


def apply(model: nn.Module, config: PeftConfig | MethodConfig | dict | list) -> nn.Module:
    """Adds the adapters of ``config`` to ``model`` in place, freezes everything else and returns it.

    Load the base weights first (adapters add parameters a base checkpoint does not have). A config
    error raised by a later method leaves the earlier ones applied: rebuild the model after an error."""
    if getattr(model, "peft_state", None) is not None:
        raise ValueError("the model already has PEFT adapters; apply all methods in one config")
    cfg = as_peft_config(config)
    if not cfg.methods and cfg.train_head is False:
        raise ConfigError("the PEFT config trains nothing: give at least one method or train_head")
    for p in model.parameters():
        p.requires_grad_(False)
    chosen: dict[str, list[nn.Parameter]] = {}
    for m in cfg.methods:
        label = m.method if m.method not in chosen else f"{m.method}#{sum(k.split('#')[0] == m.method for k in chosen) + 1}"
        chosen[label] = METHODS[m.method][1](model, m)
    head = head_of(model)
    if head is not None and (cfg.train_head is True or (cfg.train_head == "auto" and not isinstance(head, LMHead))):
        chosen["head"] = list(head.parameters())
    names = {id(p): n for n, p in model.named_parameters()}
    params: dict[str, list[str]] = {}
    for label, ps in chosen.items():
        seen: dict[int, str] = {}
        for p in ps:
            seen.setdefault(id(p), names[id(p)])
        params[label] = list(seen.values())
    set_trainable_params(model, [n for ns in params.values() for n in ns])
    model.peft_state = PeftState(cfg, params)
    return model


def get_adapter_params(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every parameter the PEFT config trains, by name: new adapter weights and unfrozen base ones."""
    wanted = {n for ns in peft_state(model).params.values() for n in ns}
    return {n: p for n, p in model.named_parameters() if n in wanted}


def set_trainable_params(model: nn.Module, params: Iterable[str] | dict[str, nn.Parameter]) -> None:
    """Makes exactly these parameters (names) trainable and freezes the rest."""
    wanted = set(params)
    named = dict(model.named_parameters())
    unknown = wanted - named.keys()
    if unknown:
        raise ValueError(f"unknown parameter names: {', '.join(sorted(unknown)[:5])}")
    for n, p in named.items():
        p.requires_grad_(n in wanted)


STDOUT = "stdout"  # trainable_summary's default: sys.stdout as it is at call time (pytest may swap it)


def trainable_summary(model: nn.Module, file: TextIO | str | None = STDOUT) -> str:
    """A table of trainable parameters per method and in total; printed to ``file`` (default stdout;
    None: only returned) and returned."""
    named = dict(model.named_parameters())
    total = sum(p.numel() for p in named.values())
    trainable = sum(p.numel() for p in named.values() if p.requires_grad)
    rows = []
    state = getattr(model, "peft_state", None)
    if state is not None:
        rows = [(label, sum(named[n].numel() for n in ns if n in named)) for label, ns in state.params.items()]
    rows.append(("trainable", trainable))
    rows.append(("total", total))
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{'method'.ljust(width)}{'params':>14}{'% of total':>12}"]
    for label, count in rows:
        if label == "trainable":
            lines.append("-" * (width + 26))
        lines.append(f"{label.ljust(width)}{count:>14,}{100 * count / max(total, 1):>11.3f}%")
    text = "\n".join(lines)
    if file is not None:
        print(text, file=sys.stdout if file == STDOUT else file)
    return text


def save_adapter(model: nn.Module, path: str | os.PathLike, base_model: str | None = None) -> Path:
    """Writes ``adapter.safetensors`` (the trained parameters only) and ``mambatune_adapter.json`` (the PEFT
    config) into the folder ``path``; when the adapter is LoRA on the backbone, also Hugging Face PEFT's
    ``adapter_config.json`` + ``adapter_model.safetensors`` (``PeftModel.from_pretrained`` loads them onto
    transformers' ``MambaForCausalLM``; ``base_model`` names that model in the config). Returns the folder;
    ``model.peft_state.hf_note`` says why PEFT's files were not written, when they were not."""
    from .hf_format import PEFT_CONFIG, PEFT_WEIGHTS, hf_lora

    state = peft_state(model)
    if any(layer.merged for layer in lora_layers(model)):
        raise ValueError("save_adapter: LoRA is merged into the base weights; call unmerge(model) first")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = host_tensors(get_adapter_params(model))  # FSDP shards gathered whole
    atomic_write(folder / ADAPTER_WEIGHTS, lambda f: save_file(tensors, f, metadata={"format": "pt"}))
    text = json.dumps(state.config.to_dict(), indent=2)
    atomic_write(folder / ADAPTER_CONFIG, lambda f: Path(f).write_text(text + "\n"))
    hf = hf_lora(model, base_model)
    state.hf_note = hf if isinstance(hf, str) else None
    if isinstance(hf, str):
        for stale in (PEFT_CONFIG, PEFT_WEIGHTS):  # an earlier save's PEFT files would no longer match
            (folder / stale).unlink(missing_ok=True)
    else:
        config, hf_tensors = hf
        atomic_write(folder / PEFT_WEIGHTS, lambda f: save_file(hf_tensors, f, metadata={"format": "pt"}))
        hf_text = json.dumps(config, indent=2)
        atomic_write(folder / PEFT_CONFIG, lambda f: Path(f).write_text(hf_text + "\n"))
    return folder


def adapter_config_file(folder: Path) -> Path:
    """Our config of an adapter folder (``mambatune_adapter.json``; folders written before it hold our config as
    ``adapter_config.json``, the name PEFT's own config now takes)."""
    if (folder / ADAPTER_CONFIG).is_file():
        return folder / ADAPTER_CONFIG
    legacy = folder / LEGACY_CONFIG
    if legacy.is_file() and "peft_type" not in json.loads(legacy.read_text()):
        return legacy
    raise FileNotFoundError(f"{folder} has no {ADAPTER_WEIGHTS} and {ADAPTER_CONFIG}; was it written by save_adapter? "
                            "(a Hugging Face PEFT folder alone loads with peft.PeftModel.from_pretrained)")


def load_adapter(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Loads an adapter folder written by ``save_adapter``: applies its config to a model without
    adapters (or checks that the model's config is the same) and copies the weights in."""
    folder = Path(path)
    if not (folder / ADAPTER_WEIGHTS).is_file():
        raise FileNotFoundError(f"{folder} has no {ADAPTER_WEIGHTS} and {ADAPTER_CONFIG}; was it written by save_adapter?")
    cfg = PeftConfig.from_dict(json.loads(adapter_config_file(folder).read_text()))
    if getattr(model, "peft_state", None) is None:
        apply(model, cfg)
    elif peft_state(model).config.to_dict() != cfg.to_dict():
        raise ValueError(f"the model's PEFT config differs from the one saved in {folder}")
    tensors = load_file(str(folder / ADAPTER_WEIGHTS))
    params = get_adapter_params(model)
    missing, unexpected = params.keys() - tensors.keys(), tensors.keys() - params.keys()
    if missing or unexpected:
        raise ValueError(f"adapter in {folder} does not fit the model: missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")
    with torch.no_grad():
        for n, p in params.items():
            if p.shape != tensors[n].shape:
                raise ValueError(f"adapter tensor {n} has shape {tuple(tensors[n].shape)}, the model {tuple(p.shape)}")
            p.copy_(tensors[n])
    return model


def merge(model: nn.Module, unload: bool = False) -> nn.Module:
    """Folds every LoRA / DoRA update into its base weight (the outputs stay the same). With
    ``unload`` the LoRA wrappers become plain ``nn.Linear`` layers and leave the PEFT record."""
    if not lora_layers(model):
        raise ValueError("merge: the model has no LoRA layers")
    merge_lora(model, unload=unload)
    state = getattr(model, "peft_state", None)
    if unload and state is not None:
        present = dict(model.named_parameters())
        state.params = {k: [n for n in ns if n in present] for k, ns in state.params.items()}
    return model


def unmerge(model: nn.Module) -> nn.Module:
    """Undoes ``merge`` (without unload)."""
    unmerge_lora(model)
    return model
