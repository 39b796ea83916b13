import csv
import io
import json
from contextlib import redirect_stdout

import pytest
import torch

from mambatune.core.checkpoints import load_pretrained
from mambatune.core.training import list_checkpoints, read_metrics
from mambatune.pipelines.advise import advise
from mambatune.pipelines.cli import main

from .conftest import tiny_recipe


def run_cli(args):
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(args)
    return code, buf.getvalue()


def test_run_writes_the_run_folder(finished_run):
    run = finished_run
    for name in ("config.yaml", "metrics.jsonl", "report.md", "results.json", "tokenizer.json", "labels.json"):
        assert (run / name).is_file(), name
    assert (run / "plots" / "loss.png").stat().st_size > 0
    assert list_checkpoints(run / "checkpoints")
    assert (run / "adapter" / "adapter.safetensors").is_file() and (run / "base" / "model.safetensors").is_file()
    records = read_metrics(run / "metrics.jsonl")
    assert any("train/loss" in r for r in records) and any("eval/macro_f1" in r for r in records)
    results = json.loads((run / "results.json").read_text())
    assert {"accuracy", "macro_f1"} <= set(results["test"])
    assert {"majority_class", "char_ngram_logreg"} == set(results["baselines"])
    report = (run / "report.md").read_text()
    assert "char_ngram_logreg" in report and "plots/loss.png" in report


def test_eval_matches_the_run(finished_run):
    code, out = run_cli(["eval", str(finished_run)])
    assert code == 0
    metrics = json.loads(out)
    results = json.loads((finished_run / "results.json").read_text())
    assert metrics["accuracy"] == pytest.approx(results["test"]["accuracy"])
    assert (finished_run / "eval_test.json").is_file()


def test_predict_text_and_file(finished_run, tmp_path):
    code, out = run_cli(["predict", str(finished_run), "ACGTTGCA"])
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1 and rows[0]["label"] in ("dna", "text") and 0 < float(rows[0]["probability"]) <= 1
    inputs = tmp_path / "in.txt"
    inputs.write_text("ACGT\nabcdef\n")
    assert main(["predict", str(finished_run), str(inputs), "-o", str(tmp_path / "p.csv")]) == 0
    assert len(list(csv.DictReader(open(tmp_path / "p.csv")))) == 2


def test_export_merges_lora(finished_run, tmp_path):
    code, _ = run_cli(["export", str(finished_run), str(tmp_path / "exported")])
    assert code == 0
    merged = load_pretrained(tmp_path / "exported")
    assert not any("lora" in k for k in merged.state_dict())
    from mambatune.pipelines.sequence_classification import load_trained
    model, tok, _ = load_trained(finished_run)
    ids = torch.tensor([tok.encode("ACGTACGT")])
    torch.testing.assert_close(merged.eval()(ids).logits, model(ids).logits, atol=1e-5, rtol=1e-4)


def test_full_fine_tuning_run(tmp_path):
    recipe = tiny_recipe(tmp_path, method="full")
    assert main(["run", str(recipe), "train.epochs=1", "eval.baselines=false"]) == 0
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    code, out = run_cli(["eval", str(tmp_path / "run"), "--split", "val"])
    assert code == 0 and "accuracy" in out


def test_list_shows_commands():
    code, out = run_cli(["list"])
    assert code == 0 and "generic/sequence_classification_lora" in out and "mambatune run" in out


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["run", "generic/sequence_classification_lora", "train.lrr=1"]) == 2
    assert "did you mean 'lr'" in capsys.readouterr().err
    assert main(["eval", str(tmp_path)]) == 2


@pytest.mark.parametrize("examples, gib, params, method", [
    (500, 80, 130e6, "head_only"),
    (999, 80, 130e6, "head_only"),
    (1_000, 80, 130e6, "lora"),
    (50_000, 24, 130e6, "lora"),
    (100_001, 80, 130e6, "full"),
    (1_000_000, 16, 2.8e9, "lora"),   # full 2.8B needs ~42 GiB of states: steps down
])
def test_advise_table(examples, gib, params, method):
    assert advise(examples, gib, params).method == method


def test_advise_for_a_cpu_and_a_small_model_matches_the_main_job():
    advice = advise(882, None, 120_000)
    assert advice.method == "full" and advice.precision == "fp32" and any("CPU" in r for r in advice.reasons)
    code, out = run_cli(["advise", "--examples", "882", "--gpu-memory", "0", "--params", "120000"])
    assert code == 0 and "method: full" in out and "136 per example" in out


def test_version_list_and_cp(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("mambatune ")
    code, out = run_cli(["list"])
    line = next(x for x in out.splitlines() if x.startswith("genomics/vep_zeroshot"))
    assert "vep_zeroshot" in line and "zero-shot" in line
    assert "lora" in next(x for x in out.splitlines() if x.startswith("genomics/promoter_lora"))
    mine = tmp_path / "mine.yaml"
    code, out = run_cli(["cp", "generic/sequence_classification_lora", str(mine)])
    assert code == 0 and mine.read_text().startswith(f"# mambatune run {mine}\n")
    from mambatune.pipelines.recipe import load_recipe
    assert load_recipe(str(mine)).pipeline == "sequence_classification"
    assert main(["cp", "generic/sequence_classification_lora", str(mine)]) == 2
    assert "exists" in capsys.readouterr().err


def test_advise_cli_and_memory_notes():
    code, out = run_cli(["advise", "--examples", "200000", "--gpu-memory", "8", "--params", "2.8e9"])
    assert code == 0 and "method: lora" in out and "do not fit" in out
    with pytest.raises(ValueError):
        advise(0, 10)


def test_domain_verbs_refuse_a_run_of_another_pipeline(finished_run, capsys):
    from mambatune.pipelines import genomics_verbs
    with pytest.raises(ValueError, match="'sequence_classification' pipeline, not 'genomics'"):
        genomics_verbs.evaluate(finished_run)
    assert main(["predict", str(finished_run), "ACGT", "--genome", "x.fa"]) == 2
    assert "--genome applies to genomics runs" in capsys.readouterr().err


def test_models_lists_every_shipped_model_with_its_default(capsys):
    from mambatune.pipelines.cli import main, shipped_models

    rows = {r["name"]: r for r in shipped_models()}
    assert {"dna-mamba-120k", "dna-mamba-1m", "text-mamba-140k", "text-mamba-1m", "series-mamba-500k"} <= set(rows)
    assert [r["name"] for r in rows.values() if r["default"]] == ["text-mamba-140k", "dna-mamba-120k",
                                                                   "series-mamba-500k"]
    assert rows["dna-mamba-1m"]["parameters"] == 935_040 and rows["dna-mamba-1m"]["held_out"].startswith("bits_per_base")
    assert main(["models"]) == 0
    assert "series-mamba-500k" in capsys.readouterr().out
