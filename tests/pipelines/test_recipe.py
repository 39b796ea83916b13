import re

import pytest
import yaml

from mambatune.core.peft import LoRAConfig
from mambatune.pipelines.recipe import (
    RecipeError,
    apply_overrides,
    list_recipes,
    load_recipe,
    load_resolved,
    parse_value,
    recipe_command,
    save_resolved,
)

from .conftest import tiny_recipe


@pytest.mark.parametrize("path", list_recipes(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_recipe_loads_and_validates(path):
    recipe = load_recipe(str(path))
    command = recipe_command(path)
    assert command.startswith("mambatune run "), f"{path} must start with a comment giving its command"
    assert path.stem.split("_")[-1] in command or path.stem in command
    assert path.parent.parent.name == "recipes"
    assert recipe.train.output_dir and recipe.model.head["kind"]
    from mambatune.pipelines.recipe import pipeline_module
    module = pipeline_module(recipe.pipeline)
    if hasattr(module, "find_data"):
        assert module.find_data(recipe.data.path, recipe.source).is_file()


def test_shipped_names_resolve():
    recipe = load_recipe("generic/sequence_classification_lora")
    assert isinstance(recipe.peft.methods[0], LoRAConfig) and recipe.peft.methods[0].rank == 8


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "did you mean 'lr'"),
    ("modle.seed=1", "did you mean 'model'"),
    ("data.text_colum=x", "did you mean 'text_column'"),
    ("model.config.d_modle=8", "did you mean 'd_model'"),
    ("peft.methods.0.rnak=2", "did you mean 'rank'"),
])
def test_unknown_key_suggests(override, message):
    with pytest.raises(Exception, match=message):
        load_recipe("generic/sequence_classification_lora", [override])


def test_unknown_recipe_suggests():
    with pytest.raises(RecipeError, match="sequence_classification_lora"):
        load_recipe("generic/sequence_classification_lroa")


def test_overrides_are_typed():
    r = load_recipe("generic/sequence_classification_lora",
                    ["train.lr=3e-4", "train.epochs=2", "train.progress=false", "train.max_steps=null",
                     "peft.methods.0.rank=4", "peft.methods.0.targets=[in_proj]", "data.tokenizer=char",
                     "model.config.d_model=16", "train.betas=[0.9, 0.99]", "train.weight_decay=0"])
    assert r.train.lr == 3e-4 and isinstance(r.train.lr, float)
    assert r.train.epochs == 2 and r.train.progress is False and r.train.max_steps is None
    assert r.peft.methods[0].rank == 4 and r.peft.methods[0].targets == ["in_proj"]
    assert r.data.tokenizer == "char" and r.model.config["d_model"] == 16
    assert r.train.betas == [0.9, 0.99] and r.train.weight_decay == 0.0


def test_wrong_types_and_values_are_errors():
    with pytest.raises(RecipeError, match="train.epochs: expected an integer"):
        load_recipe("generic/sequence_classification_lora", ["train.epochs=two"])
    with pytest.raises(RecipeError, match="precision"):
        load_recipe("generic/sequence_classification_lora", ["train.precision=fp8"])
    with pytest.raises(RecipeError, match="not key=value"):
        apply_overrides({}, ["train.lr"])
    with pytest.raises(RecipeError, match="not an index"):
        apply_overrides({"peft": {"methods": []}}, ["peft.methods.3.rank=1"])


def test_parse_value():
    assert parse_value("3e-4") == 3e-4 and parse_value("10") == 10 and parse_value("true") is True
    assert parse_value("null") is None and parse_value("[1, 2]") == [1, 2] and parse_value("abc") == "abc"


def test_resolved_config_round_trips(tmp_path):
    recipe = load_recipe(str(tiny_recipe(tmp_path)), ["train.lr=1e-3"])
    save_resolved(recipe, tmp_path / "run")
    again = load_resolved(tmp_path / "run")
    assert again.to_dict() == recipe.to_dict()
    text = (tmp_path / "run" / "config.yaml").read_text()
    assert "warmup_ratio" in text  # defaults are written out too
    assert yaml.safe_load(text)["train"]["lr"] == 1e-3


@pytest.mark.parametrize("text, match", [
    ("pipeline: genomics\npipeline: documents\n", r"line 2, column 1: key 'pipeline' is given twice"),
    ("model: [1,\n", r"line 2, column 1: .*not a valid recipe YAML"),
    ("", "is empty"),
    ("- a\n- b\n", "a recipe is a mapping of sections"),
    ("x: !!python/object/apply:os.system [ls]\n", "line 1.*could not determine a constructor"),
])
def test_bad_recipe_files_are_one_line_errors(tmp_path, text, match, capsys):
    from mambatune.pipelines.cli import main

    path = tmp_path / "r.yaml"
    path.write_text(text)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err) and "r.yaml" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_unexpected_errors_are_one_line_and_a_closed_pipe_is_quiet(monkeypatch, capsys):
    from mambatune.pipelines import cli

    monkeypatch.setattr(cli, "cmd_list", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert cli.main(["list"]) == 1
    err = capsys.readouterr().err
    assert "unexpected error (RuntimeError: boom)" in err and "MAMBATUNE_DEBUG=1" in err
    monkeypatch.setenv("MAMBATUNE_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["list"])
    monkeypatch.setattr(cli, "cmd_list", lambda: (_ for _ in ()).throw(BrokenPipeError()))
    assert cli.main(["list"]) == 0 and capsys.readouterr().err == ""


def test_a_missing_pretrained_run_folder_names_the_recipe_that_makes_it():
    from mambatune.pipelines.genomics import resolve_pretrained
    with pytest.raises(FileNotFoundError, match=r"mambatune run genomics/pretrain_dna_mamba2` \(it writes "
                                                r"runs/pretrain_dna_mamba2/model"):
        resolve_pretrained("runs/pretrain_dna_mamba2/model")  # promoter_mamba2_lora's default base
    with pytest.raises(FileNotFoundError, match=r"mambatune run genomics/pretrain_dna` "):
        resolve_pretrained("runs/elsewhere/model")
