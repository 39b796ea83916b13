"""The shipped Mamba-2 recipes (one per domain, ``*_mamba2_*.yaml``) end to end at tiny size through the
public API: ``load_recipe`` then ``registry.get(recipe.pipeline).run(recipe)``. Each run must train a
Mamba-2 backbone (``arch: mamba2`` in what it saves), score it beside its baselines and write its report."""
import json

import pytest

from mambatune.pipelines import registry
from mambatune.pipelines.recipe import list_recipes, load_recipe

MAMBA2_RECIPES = sorted(f"{p.parent.name}/{p.stem}" for p in list_recipes() if "mamba2" in p.stem)
SHAPE = ["model.config.d_model=8", "model.config.n_layer=1", "model.config.d_state=4", "model.config.headdim=8",
         "model.config.chunk_size=16"]
RUN = ["train.progress=false", "train.tensorboard=false", "train.log_every=1"]
GENOMICS = [*SHAPE, *RUN, "data.window=64", "data.max_train=32", "data.max_eval=24", "data.n_boot=20",
            "train.batch_size=8", "train.eval_every=2", "train.monitor_every=2"]


def run(name: str, out, *overrides) -> dict:
    recipe = load_recipe(name, [f"train.output_dir={out}", *overrides])
    assert recipe.model.config["arch"] == "mamba2"
    run_dir = registry.get(recipe.pipeline).run(recipe)
    for f in ("config.yaml", "results.json", "report.md"):
        assert (run_dir / f).is_file(), f
    return json.loads((run_dir / "results.json").read_text())


def saved_arch(folder) -> str:
    """The architecture of a model folder the run saved, as the loader reads it."""
    from mambatune.core.checkpoints import load_pretrained
    return load_pretrained(folder).config.arch


def test_every_domain_ships_a_mamba2_recipe():
    assert {n.split("/")[0] for n in MAMBA2_RECIPES} == {"genomics", "documents", "timeseries", "generic"}
    for name in MAMBA2_RECIPES:
        recipe = load_recipe(name)
        assert recipe.model.config["arch"] == "mamba2", name
        for method in recipe.peft.methods if recipe.peft else []:
            # Mamba-2 has no x_proj: dt, B and C come out of in_proj
            assert "x_proj" not in (getattr(method, "targets", None) or []), name


def test_generic_mamba2_lora(tmp_path):
    out = tmp_path / "generic"
    results = run("generic/sequence_classification_mamba2_lora", out, *SHAPE, *RUN, "train.epochs=1",
                  "train.max_steps=4", "train.eval_every=2", "data.max_length=32")
    assert 0 <= results["test"]["accuracy"] <= 1 and "char_ngram_logreg" in results["baselines"]
    assert saved_arch(out / "base") == "mamba2"


def test_genomics_mamba2_pretrain_then_promoter_lora(tmp_path):
    pre = tmp_path / "pre"
    results = run("genomics/pretrain_dna_mamba2", pre, *GENOMICS, "train.max_steps=3")
    assert saved_arch(pre / "model") == "mamba2"
    assert any("Markov" in name for name in results["test"])
    out = tmp_path / "promoter"
    results = run("genomics/promoter_mamba2_lora", out, *GENOMICS, "train.epochs=1", f"model.pretrained={pre / 'model'}")
    assert len(results["test"]) == 3  # Mamba-2 + LoRA, the same model from scratch, 6-mer
    for metrics in results["test"].values():
        assert 0 <= metrics["auroc"] <= 1
    adapter = json.loads((out / "adapter" / "mambatune_adapter.json").read_text())
    assert "lora" in json.dumps(adapter)


def test_documents_mamba2_full(tmp_path):
    out = tmp_path / "documents"
    results = run("documents/license_mamba2_full", out, *SHAPE, *RUN, "data.max_length=96", "train.batch_size=4",
                  "train.max_steps=3", "train.eval_every=3", "train.monitor_every=0", "eval.baselines=false")
    assert any("mamba" in name for name in results["test"])
    assert saved_arch(out / "model") == "mamba2"


def test_timeseries_mamba2_full(tmp_path):
    out = tmp_path / "timeseries"
    results = run("timeseries/forecast_mamba2_full", out, *SHAPE, *RUN, "data.seasonal_skip=0",
                  "data.context_length=48", "data.max_history=1500", "data.patch_length=8", "data.stride=4",
                  "data.windows=2", "data.max_train_windows=32", "data.num_samples=10", "data.fan_charts=1",
                  "train.batch_size=8", "train.max_steps=2", "train.eval_every=1")
    assert len(results["test"]) == 3  # the Mamba-2 forecaster, seasonal naive, Theta
    for metrics in results["test"].values():
        assert {"MASE", "wQL"} <= set(metrics)
    backbone = json.loads((out / "predictor" / "forecaster.json").read_text())["forecaster"]["backbone"]
    assert backbone["arch"] == "mamba2"


@pytest.mark.parametrize("name", MAMBA2_RECIPES)
def test_mamba2_recipe_builds_a_mamba2_model(name):
    from mambatune.core.config import MambaConfig
    from mambatune.core.mixer2 import Mamba2Mixer
    from mambatune.core.model import MambaModel

    recipe = load_recipe(name)
    config = MambaConfig.from_dict({**recipe.model.config, "vocab_size": 16})
    model = MambaModel(config)
    assert all(isinstance(layer.mixer, Mamba2Mixer) for layer in model.layers)
