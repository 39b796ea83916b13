"""The hybrid PEFT search space of ``mambatune search`` (MambaPEFT's search, on Optuna).

One trial switches each method on or off and, for those that are on, picks its settings:

- ``lora``: LoRA on all output rows of a set of projections (``lora.targets``, ``lora.rank``);
- ``lorap``: LoRAp(X), LoRA on the x half of ``in_proj`` (``lorap.rank``). With LoRAp on, LoRA's
  targets come from sets without ``in_proj`` (a layer carries one LoRA): ``lora.targets_beside_lorap``;
- ``prompt`` (``prompt.num_tokens``), ``affix`` (``affix.num_tokens``);
- ``additional_scan`` (``additional_scan.num_states``, ``additional_scan.init``);
- ``partial``: which base parameter groups train (``partial.<group>`` for each group of
  ``core.peft.GROUPS`` that every Mamba-1 block has); none chosen: partial stays off;
- ``parallel_adapter`` (``parallel_adapter.bottleneck``, ``parallel_adapter.position``);
- and the learning rate ``lr``, log-uniform over [recipe lr / 10, recipe lr * 10].

Every switch names a method of the PEFT registry (``core.peft.METHODS``; LoRAp is its ``lora`` with
``output_slice: x``), each trial's choice becomes the method configs that ``peft.apply`` takes, so a
recipe of any domain runs it. All switches off is the registry's ``head_only`` (the task head alone).
The registry's ``top_layers``, ``head_only`` and ``full`` are not switches: they are not adapters
that combine (head-only is the all-off trial).
"""
from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

from mambatune.core import MambaConfig, peft

LORA_TARGETS = ("in_proj", "out_proj", "in_proj+out_proj", "x_proj+dt_proj", "in_proj+x_proj+out_proj",
                "in_proj+x_proj+dt_proj+out_proj")
LORA_TARGETS_BESIDE_LORAP = ("out_proj", "x_proj+dt_proj", "x_proj+out_proj", "x_proj+dt_proj+out_proj")
RANKS = (2, 4, 8, 16, 32)
PROMPT_TOKENS = (4, 8, 16, 32)
AFFIX_TOKENS = (2, 4, 8, 16)
EXTRA_STATES = (4, 8, 16)
BOTTLENECKS = (4, 8, 16, 32, 64)
PARTIAL_GROUPS = ("A_log", "D", "dt_bias", "conv1d", "norms")  # embeddings: vocabulary-sized; gate: bidirectional only

# switch name -> the registry method it configures
SWITCHES = {"lora": "lora", "lorap": "lora", "prompt": "prompt", "affix": "affix",
            "additional_scan": "additional_scan", "partial": "partial", "parallel_adapter": "parallel_adapter"}
assert set(SWITCHES.values()) <= set(peft.METHODS), "a search switch names a method the PEFT registry lacks"
assert set(PARTIAL_GROUPS) <= set(peft.GROUPS)


def check_switches(names: list[str] | None) -> list[str]:
    """The switches a search uses (None: all), in the order of SWITCHES; unknown names raise."""
    if names is None:
        return list(SWITCHES)
    unknown = [n for n in names if n not in SWITCHES]
    if unknown:
        raise ValueError(f"--methods: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(SWITCHES)}")
    return [n for n in SWITCHES if n in names]


def sample(trial, switches: list[str], base_lr: float) -> tuple[list[dict[str, Any]], float]:
    """Suggests one point of the space on an Optuna trial: (the PEFT method dicts, the learning rate)."""
    on = {name: trial.suggest_categorical(name, [False, True]) for name in switches}
    methods: list[dict[str, Any]] = []
    if on.get("lorap"):
        rank = trial.suggest_categorical("lorap.rank", RANKS)
        methods.append({"method": "lora", "targets": ["in_proj"], "output_slice": "x", "rank": rank,
                        "alpha": 2.0 * rank})
    if on.get("lora"):
        key, choices = ("lora.targets_beside_lorap", LORA_TARGETS_BESIDE_LORAP) if on.get("lorap") \
            else ("lora.targets", LORA_TARGETS)
        targets = trial.suggest_categorical(key, choices).split("+")
        rank = trial.suggest_categorical("lora.rank", RANKS)
        methods.append({"method": "lora", "targets": targets, "rank": rank, "alpha": 2.0 * rank})
    if on.get("prompt"):
        methods.append({"method": "prompt", "num_tokens": trial.suggest_categorical("prompt.num_tokens", PROMPT_TOKENS)})
    if on.get("affix"):
        methods.append({"method": "affix", "num_tokens": trial.suggest_categorical("affix.num_tokens", AFFIX_TOKENS)})
    if on.get("additional_scan"):
        methods.append({"method": "additional_scan",
                        "num_states": trial.suggest_categorical("additional_scan.num_states", EXTRA_STATES),
                        "init": trial.suggest_categorical("additional_scan.init", ["copy", "s4d_real"])})
    if on.get("partial"):
        groups = [g for g in PARTIAL_GROUPS if trial.suggest_categorical(f"partial.{g}", [False, True])]
        if groups:
            methods.append({"method": "partial", "groups": groups})
    if on.get("parallel_adapter"):
        methods.append({"method": "parallel_adapter",
                        "bottleneck": trial.suggest_categorical("parallel_adapter.bottleneck", BOTTLENECKS),
                        "position": trial.suggest_categorical("parallel_adapter.position", ["mixer", "block"])})
    lr = trial.suggest_float("lr", base_lr / 10, base_lr * 10, log=True)
    if not methods:  # said explicitly: a recipe with no method trains the whole model
        methods.append({"method": "head_only"})
    for m in methods:
        peft.method_config(m)  # every sampled config is a valid registry config
    return methods, lr


def method_names(methods: list[dict[str, Any]]) -> list[str]:
    """The methods of a trial as a user names them: ``lorap`` for LoRA on the x half of in_proj."""
    return ["lorap" if m["method"] == "lora" and m.get("output_slice") == "x" else m["method"] for m in methods]


def kind_of(methods: list[dict[str, Any]]) -> str:
    """``hybrid`` (two or more methods), ``single`` (one), ``head_only`` (none but the head)."""
    adapters = [m for m in methods if m["method"] != "head_only"]
    return {0: "head_only", 1: "single"}.get(len(adapters), "hybrid")


# -- the budget ------------------------------------------------------------------------------------

def model_shape(recipe) -> MambaConfig | None:
    """The backbone's MambaConfig of a recipe: ``model.config`` for a new model, the pretrained
    folder's config.json (a forecaster's forecaster.json) otherwise (a folder, a shipped model's name, or what the pipeline's own
    one-argument ``resolve_pretrained`` makes of the name). None when it cannot be told here."""
    from mambatune.core.checkpoints import load_config

    from .recipe import pipeline_module
    name = recipe.model.pretrained
    if name is None:
        return MambaConfig.from_dict(dict(recipe.model.config))
    candidates = [name]
    resolver = getattr(pipeline_module(recipe.pipeline), "resolve_pretrained", None)
    if resolver is not None and len(inspect.signature(resolver).parameters) == 1:
        try:
            candidates.insert(0, resolver(name))
        except (FileNotFoundError, ValueError):
            pass
    from .sequence_classification import shipped_models
    candidates += [str(folder) for shipped, folder in shipped_models().items() if shipped == name]
    for folder in candidates:
        if folder and (Path(folder) / "config.json").is_file():
            return load_config(folder)[0]
        if folder and (Path(folder) / "forecaster.json").is_file():  # a time-series forecaster: its backbone's config
            return MambaConfig.from_dict(json.loads((Path(folder) / "forecaster.json").read_text())["forecaster"]["backbone"])
    return None


def method_params(shape: MambaConfig, methods: list[dict[str, Any]]) -> int:
    """Parameters the methods train on a backbone of this shape (the task head not counted: every
    trial trains the same head). Counted on the meta device, so no memory and no time."""
    import torch
    from mambatune.core import MambaModel
    methods = [m for m in methods if m["method"] != "head_only"]
    if not methods:
        return 0
    with torch.device("meta"):
        model = MambaModel(dataclasses.replace(shape))
        peft.apply(model, peft.PeftConfig(methods=[dict(m) for m in methods], train_head=False))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
