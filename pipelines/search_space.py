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

The search's ``kind`` restricts the combinations: ``any`` (the default) switches every method on or
off; ``single`` picks exactly one method per trial (``method``, then its settings): the arm of
single methods in a same-trials comparison; ``hybrid`` keeps the switches, and a trial with fewer
than two methods on is rejected before it trains (``search_trial``), as an over-budget one is.

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
KINDS = ("any", "single", "hybrid")  # which combinations a search samples (see the module docstring)

# switch name -> the registry method it configures
SWITCHES = {"lora": "lora", "lorap": "lora", "prompt": "prompt", "affix": "affix",
            "additional_scan": "additional_scan", "partial": "partial", "parallel_adapter": "parallel_adapter"}
assert set(SWITCHES.values()) <= set(peft.METHODS), "a search switch names a method the PEFT registry lacks"
assert set(PARTIAL_GROUPS) <= set(peft.GROUPS)
SINGLE_DEFAULTS = {  # each method alone at its usual settings: the first trials when --trials allows
    "lora": {"lora.targets": "in_proj+x_proj+out_proj", "lora.rank": 8},
    "lorap": {"lorap.rank": 8},
    "prompt": {"prompt.num_tokens": 16},
    "affix": {"affix.num_tokens": 8},
    "additional_scan": {"additional_scan.num_states": 8, "additional_scan.init": "copy"},
    "partial": {"partial.A_log": False, "partial.D": True, "partial.dt_bias": True, "partial.conv1d": False,
                "partial.norms": False},
    "parallel_adapter": {"parallel_adapter.bottleneck": 16, "parallel_adapter.position": "mixer"},
}


@dataclasses.dataclass
class Space:
    """The switches of a search and the choices that the backbone has (a Mamba-2 mixer has no x_proj)."""

    switches: list[str]
    kind: str = "any"
    lora_targets: tuple[str, ...] = LORA_TARGETS
    lora_targets_beside_lorap: tuple[str, ...] = LORA_TARGETS_BESIDE_LORAP
    partial_groups: tuple[str, ...] = PARTIAL_GROUPS
    left_out: list[str] = dataclasses.field(default_factory=list)  # what the backbone cannot take, for the report


def check_switches(names: list[str] | None) -> list[str]:
    """The switches a search uses (None: all), in the order of SWITCHES; unknown names raise."""
    if names is None:
        return list(SWITCHES)
    unknown = [n for n in names if n not in SWITCHES]
    if unknown:
        raise ValueError(f"--methods: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(SWITCHES)}")
    return [n for n in SWITCHES if n in names]


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"search kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def methods_of(p: dict[str, Any]) -> list[dict[str, Any]]:
    """The PEFT method dicts of one point of the space (the parameters of a trial; a ``single`` search
    names its one switch in ``method`` instead of switching each on or off)."""
    if "method" in p:
        p = {**p, p["method"]: True}
    methods: list[dict[str, Any]] = []
    if p.get("lorap"):
        rank = p["lorap.rank"]
        methods.append({"method": "lora", "targets": ["in_proj"], "output_slice": "x", "rank": rank, "alpha": 2.0 * rank})
    if p.get("lora"):
        targets = p["lora.targets_beside_lorap"] if p.get("lorap") else p["lora.targets"]
        methods.append({"method": "lora", "targets": targets.split("+"), "rank": p["lora.rank"],
                        "alpha": 2.0 * p["lora.rank"]})
    if p.get("prompt"):
        methods.append({"method": "prompt", "num_tokens": p["prompt.num_tokens"]})
    if p.get("affix"):
        methods.append({"method": "affix", "num_tokens": p["affix.num_tokens"]})
    if p.get("additional_scan"):
        methods.append({"method": "additional_scan", "num_states": p["additional_scan.num_states"],
                        "init": p["additional_scan.init"]})
    groups = [g for g in PARTIAL_GROUPS if p.get("partial") and p.get(f"partial.{g}")]
    if groups:
        methods.append({"method": "partial", "groups": groups})
    if p.get("parallel_adapter"):
        methods.append({"method": "parallel_adapter", "bottleneck": p["parallel_adapter.bottleneck"],
                        "position": p["parallel_adapter.position"]})
    if not methods:  # said explicitly: a recipe with no method trains the whole model
        methods.append({"method": "head_only"})
    for m in methods:
        peft.method_config(m)  # every point is a valid registry config
    return methods


def sample(trial, space: Space, base_lr: float) -> tuple[list[dict[str, Any]], float]:
    """Suggests one point of the space on an Optuna trial: (the PEFT method dicts, the learning rate)."""
    def pick(name: str, choices) -> Any:
        p[name] = trial.suggest_categorical(name, list(choices))
        return p[name]
    p: dict[str, Any] = {}
    if space.kind == "single":
        p[pick("method", space.switches)] = True
    else:
        for name in space.switches:
            pick(name, [False, True])
    if p.get("lorap"):
        pick("lorap.rank", RANKS)
    if p.get("lora"):
        if p.get("lorap"):
            pick("lora.targets_beside_lorap", space.lora_targets_beside_lorap)
        else:
            pick("lora.targets", space.lora_targets)
        pick("lora.rank", RANKS)
    if p.get("prompt"):
        pick("prompt.num_tokens", PROMPT_TOKENS)
    if p.get("affix"):
        pick("affix.num_tokens", AFFIX_TOKENS)
    if p.get("additional_scan"):
        pick("additional_scan.num_states", EXTRA_STATES)
        pick("additional_scan.init", ["copy", "s4d_real"])
    if p.get("partial"):
        for g in space.partial_groups:
            pick(f"partial.{g}", [False, True])
    if p.get("parallel_adapter"):
        pick("parallel_adapter.bottleneck", BOTTLENECKS)
        pick("parallel_adapter.position", ["mixer", "block"])
    lr = trial.suggest_float("lr", base_lr / 10, base_lr * 10, log=True)
    return methods_of(p), lr


def single(switch: str, space: Space, lr: float) -> dict[str, Any]:
    """The parameters of one method alone at its usual settings (a target set the backbone has), as the
    search's trials name them."""
    chosen = {"method": switch} if space.kind == "single" else {s: s == switch for s in space.switches}
    p = {**chosen, **SINGLE_DEFAULTS[switch], "lr": lr}
    if switch == "lora" and p["lora.targets"] not in space.lora_targets:
        p["lora.targets"] = space.lora_targets[-1]
    if switch == "partial":
        p = {k: v for k, v in p.items() if not k.startswith("partial.") or k[len("partial."):] in space.partial_groups}
        if not any(v for k, v in p.items() if k.startswith("partial.")):
            p[f"partial.{space.partial_groups[0]}"] = True
    return p


def trains(shape: MambaConfig, p: dict[str, Any]) -> bool:
    """Whether the point applies to the backbone and trains something there."""
    try:
        return method_params(shape, methods_of(p)) > 0
    except (ValueError, TypeError, KeyError, RuntimeError, NotImplementedError):  # ConfigError: a missing target
        return False


def build_space(names: list[str] | None, shape: MambaConfig | None, kind: str = "any") -> Space:
    """The space of a search: the switches asked for, each choice kept only when it applies to the
    backbone (tried on a meta-device copy; every choice when the shape is unknown)."""
    space = Space(check_switches(names), check_kind(kind))
    if kind == "hybrid" and len(space.switches) < 2:
        raise ValueError("a hybrid search needs at least two methods (--methods)")
    if shape is None:
        return space
    space.lora_targets = tuple(c for c in LORA_TARGETS if trains(shape, {"lora": True, "lora.targets": c, "lora.rank": 2}))
    space.lora_targets_beside_lorap = tuple(
        c for c in LORA_TARGETS_BESIDE_LORAP
        if trains(shape, {"lora": True, "lorap": True, "lorap.rank": 2, "lora.targets_beside_lorap": c, "lora.rank": 2}))
    space.partial_groups = tuple(g for g in PARTIAL_GROUPS if trains(shape, {"partial": True, f"partial.{g}": True}))
    left = [f"lora.targets={g}" for g in LORA_TARGETS if g not in space.lora_targets] + \
        [f"partial.{g}" for g in PARTIAL_GROUPS if g not in space.partial_groups]
    keep = []
    for switch in space.switches:
        usable = {"lora": bool(space.lora_targets), "partial": bool(space.partial_groups)}.get(switch, True)
        if usable and trains(shape, single(switch, space, 1e-3)):
            keep.append(switch)
        else:
            left.append(switch)
    if not space.lora_targets_beside_lorap and "lora" in keep and "lorap" in keep:
        keep.remove("lorap")
        left.append("lorap (no LoRA target beside it)")
    space.switches = keep
    space.left_out = [f"{x}: does not apply to this backbone" for x in left]
    if not keep:
        raise ValueError("mambatune search: none of the methods asked for applies to this model")
    if kind == "hybrid" and len(keep) < 2:
        raise ValueError(f"a hybrid search needs two methods that apply to this model; only {keep[0]} does")
    return space


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
    from .domain_run import shipped_models
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
