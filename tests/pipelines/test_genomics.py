"""The genomics pipeline end to end with tiny overrides: promoter, vep_zeroshot, vep, pretrain_dna,
then promoter from the pretrained checkpoint (with its scratch baseline)."""
import json

import pytest

from mambatune.pipelines.cli import main
from mambatune.pipelines.recipe import load_recipe

TINY = ["model.pretrained=null", "model.config.d_model=8", "model.config.n_layer=1", "model.config.d_state=4", "data.window=64",
        "data.max_train=32", "data.max_eval=24", "data.n_boot=20", "train.batch_size=8", "train.eval_every=2",
        "train.log_every=1", "train.progress=false", "train.monitor_every=2", "train.tensorboard=false"]


def run(recipe: str, out, *extra) -> dict:
    assert main(["run", recipe, f"train.output_dir={out}", *TINY, *extra]) == 0
    for name in ("config.yaml", "results.json", "report.md"):
        assert (out / name).is_file(), name
    assert (out / "metrics.jsonl").is_file() or (out / "lm" / "metrics.jsonl").is_file()
    return json.loads((out / "results.json").read_text())


def check_binary(results: dict, n_models: int) -> None:
    assert len(results["test"]) == n_models
    for metrics in results["test"].values():
        assert 0 <= metrics["auroc"] <= 1 and len(metrics["auroc_ci"]) == 2


def test_promoter_lora(tmp_path):
    out = tmp_path / "promoter"
    results = run("genomics/promoter_lora", out, "train.epochs=1")
    check_binary(results, 2)  # the model and the 6-mer baseline
    assert (out / "plots" / "roc.png").is_file() and (out / "plots" / "pr.png").is_file()
    assert (out / "adapter").is_dir() and (out / "base").is_dir()
    assert "6-mer" in (out / "report.md").read_text()
    assert main(["eval", str(out)]) == 2  # not supported yet: a clear error, not a traceback


def test_promoter_lora_from_the_shipped_default_model(tmp_path):
    out = tmp_path / "shipped"
    results = run("genomics/promoter_lora", out, "train.epochs=1", "model.pretrained=default")
    check_binary(results, 3)  # shipped model + LoRA, the same model from scratch, 6-mer
    assert "dna-mamba-120k" in (out / "report.md").read_text()


def test_promoter_multiclass(tmp_path):
    results = run("genomics/promoter_full", tmp_path / "mc", "train.epochs=1", "data.promoter_classes=multiclass",
                  "train.metric_for_best=accuracy")
    for metrics in results["test"].values():
        assert "macro_f1_ci" in metrics


def test_vep_zeroshot(tmp_path):
    out = tmp_path / "zs"
    results = run("genomics/vep_zeroshot", out, "train.max_steps=3")
    check_binary(results, 3)  # LM, Markov LM, k-mer
    assert (out / "lm" / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize("method", ["finetune", "embedding"])
def test_vep_supervised(tmp_path, method):
    results = run("genomics/vep_lora", tmp_path / method, "train.epochs=1", f"data.vep_method={method}",
                  "train.max_steps=3")
    check_binary(results, 2)


def test_pretrain_then_promoter_from_it(tmp_path):
    pre = tmp_path / "pre"
    results = run("genomics/pretrain_dna", pre, "train.max_steps=4")
    bits = results["test"]["mamba LM"]["bits_per_base"]
    assert 0 < bits < 10
    model_dir = pre / "model"
    assert (model_dir / "model.safetensors").is_file()
    out = tmp_path / "ft"
    results = run("genomics/promoter_full", out, "train.epochs=1", f"model.pretrained={model_dir}")
    check_binary(results, 3)  # pretrained, the same model from scratch, k-mer
    assert "same model from scratch (full)" in results["test"]
    assert (out / "scratch" / "metrics.jsonl").is_file()


def test_missing_pretrained_says_how_to_make_it(tmp_path, capsys):
    code = main(["run", "genomics/promoter_lora", "model.pretrained=nowhere/model", f"train.output_dir={tmp_path}"])
    assert code == 2
    assert "mambatune run genomics/pretrain_dna" in capsys.readouterr().err


def test_bad_task_is_an_error():
    from mambatune.pipelines.recipe import RecipeError
    with pytest.raises(RecipeError, match="task must be one of"):
        load_recipe("genomics/promoter_lora", ["data.task=promotor"])
