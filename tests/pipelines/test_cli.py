import csv
import io
import json
import re
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
    from mambatune.pipelines.generic import load_trained
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
    from mambatune.pipelines.genomics import verbs as genomics_verbs
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


# -- what a user sees (issue 20) ---------------------------------------------------------------

def cli(*args, cwd=None):
    """``mambatune <args>`` in a fresh process, as a user runs it: (exit code, stdout, stderr)."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "mambatune.pipelines.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=900, cwd=cwd)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def pretrained_lora_run(tmp_path_factory):
    """A finished LoRA run on a shipped pretrained model (its head is new at the start), made in a subprocess."""
    tmp = tmp_path_factory.mktemp("pretrained")
    recipe = tiny_recipe(tmp)
    code, out, err = cli("run", recipe, "model.pretrained=text-mamba-140k", "data.tokenizer=null", "train.epochs=1",
                         "eval.baselines=false")
    assert code == 0, err[-2000:]
    return tmp / "run", err


def third_party_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if re.search(r"Warning\b|warnings\.warn", line)]


@pytest.mark.slow
def test_verbs_on_a_trained_lora_run_print_only_true_messages(pretrained_lora_run, tmp_path):
    run, run_err = pretrained_lora_run
    # training: the head really is new there, and the loader says so
    assert "newly initialised (train these): head.score" in run_err
    assert not third_party_warnings(run_err)
    inputs = tmp_path / "in.txt"
    inputs.write_text("ACGTACGT\nabcdefgh\n")
    for args in (("eval", run), ("predict", run, inputs), ("export", run, tmp_path / "exported")):
        code, out, err = cli(*args)
        assert code == 0, err
        assert "newly initialised" not in err, f"mambatune {args[0]} claims the trained head is new: {err}"
        assert not third_party_warnings(err), f"mambatune {args[0]}: {err}"


@pytest.mark.slow
def test_the_loader_still_reports_a_new_head_outside_the_verbs(pretrained_lora_run, caplog):
    """Without the verbs' context the same load reports the head (so the test above can fail)."""
    import logging

    from mambatune.pipelines.cli import head_from_the_run
    from mambatune.pipelines.generic import load_trained
    run, _ = pretrained_lora_run
    with caplog.at_level(logging.WARNING, logger="mambatune.core.checkpoints"):
        load_trained(run)
    assert "newly initialised" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mambatune.core.checkpoints"), head_from_the_run():
        load_trained(run)
    assert "newly initialised" not in caplog.text
    caplog.clear()
    from mambatune.pipelines import generic  # Python callers of the verbs are spared it too, not only the CLI
    with caplog.at_level(logging.WARNING, logger="mambatune.core.checkpoints"):
        generic.evaluate(run, "test")
    assert "newly initialised" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="mambatune.core.checkpoints"):
        load_trained(run)
    assert "newly initialised" in caplog.text, "the verb's filter must not outlive the call"


@pytest.mark.slow
def test_ordinary_verbs_print_no_third_party_warnings(tmp_path):
    for args in (("list",), ("models",), ("advise", "--examples", "882"),
                 ("run", "generic/sequence_classification_lora", "--dry-run"),
                 ("cp", "genomics/promoter_full", tmp_path / "mine.yaml")):
        code, out, err = cli(*args)
        assert code == 0, err
        assert not third_party_warnings(err), f"mambatune {args[0]}: {err}"


def test_list_shows_measured_times_on_cpu_and_gpu():
    from mambatune.pipelines.recipe import RECIPES_DIR, list_recipes
    from mambatune.pipelines.recipe_times import NOT_MEASURED, RECIPE_TIMES
    shipped = {p.relative_to(RECIPES_DIR).with_suffix("").as_posix() for p in list_recipes()}
    assert set(RECIPE_TIMES) <= shipped, "a timing kept for a recipe that is not shipped"
    for name, timings in RECIPE_TIMES.items():
        for t in timings:
            assert t.minutes is None or (t.minutes > 0 and t.source), f"{name}: a figure without its source"
    code, out = run_cli(["list"])
    assert code == 0
    header = out.splitlines()[0]
    assert "2-core CPU" in header and "GPU" in header
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.split() and line.split()[0] in shipped}
    assert rows.keys() == shipped
    cpu, gpu = RECIPE_TIMES["genomics/promoter_full"]
    assert cpu.short() in rows["genomics/promoter_full"] and gpu.short() in rows["genomics/promoter_full"]
    unmeasured = [n for n in shipped if n not in RECIPE_TIMES]
    assert all(rows[n].count(NOT_MEASURED) == 2 for n in unmeasured)


def test_tensorboard_asked_for_but_missing_fails_at_start(tmp_path, monkeypatch, capsys):
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else find_spec(name, *a))
    recipe = tiny_recipe(tmp_path)
    assert main(["run", str(recipe), "train.tensorboard=true"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "mambatune[tensorboard]"' in err
    assert not (tmp_path / "run").exists(), "it failed after starting the run"


def test_tensorboard_writes_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    recipe = tiny_recipe(tmp_path)
    assert main(["run", str(recipe), "train.tensorboard=true", "train.epochs=1", "eval.baselines=false"]) == 0
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    assert {"train/loss", "eval/loss"} <= set(acc.Tags()["scalars"])
