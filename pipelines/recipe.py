"""Recipes: YAML presets loaded into typed dataclasses, with ``key=value`` overrides.

A recipe lives at ``pipelines/recipes/<domain>/<task>_<method>.yaml`` and starts
with a comment giving the command that runs it. Its sections:

- ``pipeline``: which pipeline runs it (``sequence_classification``, ...);
- ``model`` (ModelSection), ``data`` (the pipeline's own data dataclass),
  ``peft`` (``mambatune.core.peft.PeftConfig``), ``train``
  (``mambatune.core.training.TrainConfig``), ``eval`` (EvalSection).

Unknown keys are errors naming the closest known key. Overrides use dotted
paths (``train.lr=3e-4``, ``peft.methods.0.rank=4``) and are converted to the
type of the field they set.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mambatune.core import ConfigError, MambaConfig
from mambatune.core.peft import PeftConfig
from mambatune.core.training import TrainConfig

RECIPES_DIR = Path(__file__).parent / "recipes"
class RecipeError(ConfigError):
    """A recipe that cannot be loaded: unknown key, wrong type, bad override."""


@dataclass
class ModelSection:
    """pretrained: a folder or hub id (None: a new model from ``config``); config: MambaConfig fields
    (for a new model; for a pretrained one only behaviour such as ``backend``); head: the head's
    kwargs (``kind``, ``pooling``, ``dropout``; the pipeline fills in ``num_labels``)."""

    pretrained: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    head: dict[str, Any] = field(default_factory=lambda: {"kind": "classification", "pooling": "mean"})
    seed: int = 0

    def __post_init__(self) -> None:
        known = [f.name for f in dataclasses.fields(MambaConfig)]
        for k in self.config:
            if k not in known:
                raise unknown(f"model.config.{k}", k, known)
        if "kind" not in self.head:
            raise RecipeError("model.head needs a 'kind' (classification, multilabel, regression, token_classification)")


@dataclass
class EvalSection:
    """baselines: also fit simple baselines in the same run (majority class, char n-gram logistic regression);
    split: the split ``mambatune eval`` scores by default."""

    baselines: bool = True
    split: str = "test"


@dataclass
class Recipe:
    pipeline: str = "sequence_classification"
    name: str = "run"
    model: ModelSection = field(default_factory=ModelSection)
    data: Any = None
    peft: PeftConfig = field(default_factory=PeftConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalSection = field(default_factory=EvalSection)
    source: str | None = None  # the file it was read from
    overrides: list[str] = field(default_factory=list)  # the command line's key=value items, as given

    def to_dict(self) -> dict[str, Any]:
        d = {"pipeline": self.pipeline, "name": self.name, "model": dataclasses.asdict(self.model),
             "data": dataclasses.asdict(self.data) if dataclasses.is_dataclass(self.data) else self.data,
             "peft": self.peft.to_dict(), "train": dataclasses.asdict(self.train),
             "eval": dataclasses.asdict(self.eval)}
        if self.overrides:
            d["overrides"] = list(self.overrides)
        return d


BEHAVIOUR_KEYS = ("backend",)  # model.config keys that apply to a pretrained model; the others are its shape


def pretrained_overrides(recipe: Recipe, config) -> tuple[dict[str, Any], list[str]]:
    """(the model.config keys to apply to a pretrained model of MambaConfig ``config``, notes for the report).

    Behaviour keys (``backend``) apply. The pretrained model decides its shape: a shape key of the recipe file
    that differs is not used and noted; one given on the command line (``model.config.d_model=...``) that
    contradicts the pretrained model is a RecipeError, since the user asked for something that cannot be."""
    given = {item.split("=", 1)[0].strip() for item in recipe.overrides}
    keep, notes = {}, []
    for k, v in (recipe.model.config or {}).items():
        if k in BEHAVIOUR_KEYS:
            keep[k] = v
            continue
        have = getattr(config, k, None)
        if have == v:
            continue
        if f"model.config.{k}" in given:
            raise RecipeError(f"model.config.{k}={v} contradicts the pretrained model {recipe.model.pretrained!r}, "
                              f"which has {k}={have}: a pretrained model keeps its shape. Drop the override, or "
                              "train a new model with model.pretrained=null")
        notes.append(f"model.config.{k}={v} of the recipe not used: the pretrained model has {k}={have}")
    return keep, notes


def unknown(where: str, key: str, known: list[str]) -> RecipeError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
    return RecipeError(f"unknown key {where!r}{hint}")


def pipeline_module(name: str):
    """The pipeline module a recipe names (see ``registry``); an unknown name is a RecipeError."""
    from . import registry
    try:
        return registry.get(name)
    except registry.PipelineError as err:
        raise RecipeError(str(err)) from None


# -- typed construction ------------------------------------------------------------------------

def build(cls, raw: Any, where: str):
    """A dataclass ``cls`` from a dict, recursively; unknown keys raise with a suggestion."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{where or 'recipe'} must be a mapping, got {type(raw).__name__}: {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for k, v in raw.items():
        if k not in fields:
            raise unknown(f"{where}.{k}" if where else k, k, list(fields))
        kwargs[k] = check_type(v, hints[k], f"{where}.{k}" if where else k)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise RecipeError(f"{where or 'recipe'}: {err}") from err


def check_type(value: Any, hint, where: str):
    """Checks (and gently converts: int -> float, list -> tuple) ``value`` against a type hint."""
    origin = typing.get_origin(hint)
    if hint is Any or dataclasses.is_dataclass(hint):
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return check_type(value, a, where)
            except RecipeError as err:
                errors.append(str(err))
        raise RecipeError(f"{where}: {value!r} is not a {hint}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint) or (Any,)
        return [check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise RecipeError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(raw: dict[str, Any], source: str | None = None) -> Recipe:
    if not isinstance(raw, dict):
        raise RecipeError(f"a recipe must be a mapping of sections, got {type(raw).__name__}")
    known = [f.name for f in dataclasses.fields(Recipe) if f.name != "source"]
    for k in raw:
        if k not in known:
            raise unknown(k, k, known)
    pipeline = raw.get("pipeline", "sequence_classification")
    module = pipeline_module(pipeline)
    try:
        peft = PeftConfig.from_dict(raw.get("peft") or {})
    except (ValueError, TypeError) as err:
        raise RecipeError(f"peft: {err}") from err
    return Recipe(
        pipeline=pipeline,
        name=check_type(raw.get("name", "run"), str, "name"),
        model=build(ModelSection, raw.get("model"), "model"),
        data=build(module.DataConfig, raw.get("data"), "data"),
        peft=peft,
        train=build(TrainConfig, raw.get("train"), "train"),
        eval=build(EvalSection, raw.get("eval"), "eval"),
        source=source,
        overrides=check_type(raw.get("overrides") or [], list[str], "overrides"),
    )


# -- overrides ---------------------------------------------------------------------------------

def parse_value(text: str) -> Any:
    """A command-line value: YAML scalars and lists (``true``, ``null``, ``[1, 2]``), numbers such as
    ``3e-4`` (YAML 1.1 reads those as strings), otherwise the string itself."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Sets each ``dotted.key=value`` in the raw recipe dict (lists are indexed by number)."""
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override {item!r} is not key=value (e.g. train.lr=3e-4)")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise RecipeError(f"override key {key!r} is malformed")
        node = raw
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                node = node[list_index(node, part, key)]
                continue
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        last = parts[-1]
        value = parse_value(text)
        if isinstance(node, list):
            node[list_index(node, last, key)] = value
        else:
            node[last] = value
    return raw


def list_index(node: list, part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise RecipeError(f"override {key!r}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


# -- files ---------------------------------------------------------------------------------------

def list_recipes() -> list[Path]:
    return sorted(RECIPES_DIR.glob("*/*.yaml"))


def resolve_recipe_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.is_file():
        return p
    for candidate in (RECIPES_DIR / name_or_path, RECIPES_DIR / f"{name_or_path}.yaml"):
        if candidate.is_file():
            return candidate
    names = [str(r.relative_to(RECIPES_DIR).with_suffix("")) for r in list_recipes()]
    close = difflib.get_close_matches(name_or_path, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; shipped recipes: {', '.join(names)}"
    raise RecipeError(f"no recipe {name_or_path!r}{hint}")


def recipe_command(path: Path) -> str:
    """The command in a recipe's leading comment."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip()
            if text:
                return text
        elif line.strip():
            break
    return ""


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    """A recipe file's mapping; YAML errors, duplicate keys, an empty file or another top-level type are one-line
    RecipeErrors naming the file and line."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise RecipeError(f"{path}: cannot read the recipe ({err})") from None
    try:
        raw = yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        raise RecipeError(f"{where}: {err.problem or err.context} (not a valid recipe YAML)") from None
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not a valid recipe YAML ({err})") from None
    if raw is None:
        raise RecipeError(f"{path} is empty: a recipe needs at least 'pipeline:' and its sections (start from one "
                          "of `mambatune list`)")
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections (pipeline, model, data, ...), got a "
                          f"{type(raw).__name__}")
    return raw


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    path = resolve_recipe_path(name_or_path)
    raw = read_yaml(path)
    raw = apply_overrides(raw, overrides or [])
    raw["overrides"] = list(raw.get("overrides") or []) + list(overrides or [])
    return from_dict(raw, str(path))


def save_resolved(recipe: Recipe, run_dir: str | Path, built=None, notes: list[str] | tuple = ()) -> Path:
    """Writes ``<run>/config.yaml``: every field, defaults included.

    ``built``: the MambaConfig of the model the run made (after a pretrained model's shape, the tokenizer's
    vocabulary and the recipe's overrides). Its fields replace ``model.config``, so the record says what was
    trained, not what the recipe file asked for; ``notes`` (e.g. the recipe's shape keys a pretrained model
    did not use) go in the file's header."""
    from mambatune.core.training.run_state import atomic_write_text
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    header = f"# resolved recipe (from {recipe.source})\n" if recipe.source else "# resolved recipe\n"
    d = recipe.to_dict()
    if built is not None:
        d["model"]["config"] = plain_config(built)
        what = f"the pretrained model {recipe.model.pretrained}" if recipe.model.pretrained else "a new model"
        header += f"# model.config: the model as built ({what}), every field\n"
        header += "".join(f"# note: {n}\n" for n in notes)
    atomic_write_text(run_dir / "config.yaml", header + yaml.safe_dump(d, sort_keys=False))
    return run_dir / "config.yaml"


def plain_config(config) -> dict[str, Any]:
    """A MambaConfig's fields as plain YAML values (tuples as lists)."""
    def plain(v):
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}


def comparable(recipe: Recipe) -> dict[str, Any]:
    """The parts of a recipe that decide a run's results, for telling whether a finished run came from the same
    recipe: ``train.output_dir`` left out, and ``model.config`` as the model it asks for (with a pretrained model,
    only the behaviour keys; with a new one, the keys the recipe gives), so a run folder's config.yaml, which
    records the model as built, compares equal to the recipe that made it."""
    d = recipe.to_dict()
    d["train"] = {k: v for k, v in d["train"].items() if k != "output_dir"}
    d.pop("overrides", None)
    config = d["model"]["config"] or {}
    if recipe.model.pretrained:
        d["model"]["config"] = {k: v for k, v in config.items() if k in BEHAVIOUR_KEYS}
    return d


def same_recipe(a: Recipe, b: Recipe) -> bool:
    """Whether two recipes ask for the same run (see :func:`comparable`); ``b`` may be a run folder's record of
    the model as built, which holds every MambaConfig field where ``a`` gives some: the keys ``a`` gives must
    hold there."""
    da, db = comparable(a), comparable(b)
    ca, cb = da["model"].pop("config"), db["model"].pop("config")
    same_model = all(k in cb and cb[k] == v for k, v in ca.items())
    return same_model and json.dumps(da, sort_keys=True, default=str) == json.dumps(db, sort_keys=True, default=str)


def load_resolved(run_dir: str | Path) -> Recipe:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise RecipeError(f"{run_dir} is not a run folder (no config.yaml)")
    return from_dict(yaml.safe_load(path.read_text()), str(path))
