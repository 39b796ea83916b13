"""What the docs state about options and times is what the code does: the options table of
docs/training.md against TrainConfig, the config signatures of docs/peft.md against the method dataclasses,
the recipe keys of docs/cli.md against the recipe sections, and the README's main-job time against the
figure `mambatune list` shows for that recipe."""
import dataclasses
import re

import pytest

from helpers import REPO

from mambatune.core import peft
from mambatune.core.training import TrainConfig


def table_rows(page: str, header: str) -> list[list[str]]:
    """The cells of the markdown table whose header row starts with ``header``."""
    lines = (REPO / page).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def names_in(cell: str) -> list[str]:
    return re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", cell)


def as_doc_value(value) -> str:
    """How the docs write a default: true / false, None, numbers as Python prints them, lists in brackets."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def same_value(doc: str, value) -> bool:
    if as_doc_value(value) == doc:
        return True
    try:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and float(doc) == float(value)
    except ValueError:
        return False


def field_defaults(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def test_training_options_table_lists_every_trainconfig_field_with_its_default():
    defaults = field_defaults(TrainConfig)
    documented = {}
    for option, default, _ in table_rows("docs/training.md", "| option | default |"):
        names = names_in(option)
        values = [v.strip() for v in re.split(r", (?![^\[]*\])| / ", default)]
        assert len(values) == len(names), f"docs/training.md: {option} has {len(names)} names but defaults {default!r}"
        for name, value in zip(names, values):
            assert name not in documented, f"docs/training.md lists {name} twice"
            documented[name] = value
    assert set(documented) == set(defaults), (
        f"docs/training.md options table: missing {sorted(set(defaults) - set(documented))}, "
        f"not TrainConfig fields {sorted(set(documented) - set(defaults))}")
    for name, value in documented.items():
        assert same_value(value, defaults[name]), f"docs/training.md: {name} default {value!r}, code {defaults[name]!r}"


SIGNATURE = re.compile(r"`(\w+Config)\(([^`]*)\)`")


def documented_signatures() -> dict[str, str]:
    return {m.group(1): m.group(2) for m in SIGNATURE.finditer((REPO / "docs/peft.md").read_text())}


@pytest.mark.parametrize("cls", [peft.LoRAConfig, peft.PromptConfig, peft.AffixConfig, peft.AdditionalScanConfig,
                                 peft.ParallelAdapterConfig, peft.PartialConfig, peft.TopLayersConfig,
                                 peft.HeadOnlyConfig, peft.FullConfig, peft.PeftConfig])
def test_peft_doc_states_every_field_of_each_config(cls):
    signatures = documented_signatures()
    assert cls.__name__ in signatures, f"docs/peft.md gives no {cls.__name__}(...) signature"
    stated = {}
    for part in re.split(r",\s*(?![^\[]*\])", signatures[cls.__name__]):
        if part.strip():
            name, _, value = part.partition("=")
            stated[name.strip()] = value.strip()
    defaults = field_defaults(cls)
    assert set(stated) == set(defaults), (f"docs/peft.md {cls.__name__}: missing {sorted(set(defaults) - set(stated))}, "
                                          f"unknown {sorted(set(stated) - set(defaults))}")
    for name, value in stated.items():
        if not value:
            continue  # stated without a default (e.g. targets)
        first = value.split(" | ")[0].strip().strip('"')
        expected = defaults[name]
        shown = first.replace('"', "'")
        assert same_value(first, expected) or shown == str(expected) or (expected == 16.0 and first == "16") or \
            (expected == 0.0 and first == "0"), f"docs/peft.md {cls.__name__}.{name}: {value!r}, code {expected!r}"


def test_cli_doc_recipe_keys_exist():
    from mambatune.pipelines import registry
    from mambatune.pipelines.recipe import EvalSection, ModelSection

    rows = {row[0].strip("`"): row for row in table_rows("docs/cli.md", "| section | type | what |")}
    assert set(rows) == {"pipeline", "model", "data", "peft", "train", "eval"}
    sections = {"model": ModelSection, "eval": EvalSection, "peft": peft.PeftConfig,
                "data": registry.get("sequence_classification").DataConfig}
    for key, cls in sections.items():
        stated = set(names_in(re.sub(r"\([^)]*\)", "", rows[key][2])))  # (notes) name sub-keys, not fields
        fields = {f.name for f in dataclasses.fields(cls)}
        assert stated <= fields, f"docs/cli.md `{key}` states keys that are not {cls.__name__} fields: {stated - fields}"
        if key in ("model", "eval", "peft"):
            assert stated == fields, f"docs/cli.md `{key}` misses {fields - stated}"


def test_readme_main_job_time_is_the_measured_figure():
    from mambatune.pipelines.recipe_times import RECIPE_TIMES

    readme = (REPO / "README.md").read_text()
    paragraph = readme[readme.index("The main job"):]
    paragraph = paragraph[:paragraph.index("\n\n")]
    recipe = re.search(r"runs/(\w+)/", paragraph).group(1)
    cpu, _ = RECIPE_TIMES[f"genomics/{recipe}"]
    assert cpu.minutes is not None, f"genomics/{recipe} has no measured CPU time"
    stated = re.search(r"about (\d+(?:\.\d+)?)(?:[–-](\d+))? minutes on 2", paragraph)
    assert stated, "the README's main-job paragraph states no time on 2 cores"
    low, high = float(stated.group(1)), float(stated.group(2) or stated.group(1))
    assert low * 0.9 - 0.5 <= cpu.minutes <= high * 1.1 + 0.5, (
        f"README says {stated.group(0)!r} but the measured figure for genomics/{recipe} is {cpu.minutes} min")
