"""Recipes under torchrun (2 CPU processes, gloo). FSDP: trains, and the adapter it saves (parameters
sharded across the ranks during training) is written whole and loads back. DDP with a domain pipeline:
every rank trains, only rank 0 scores, fits the baselines and writes results.json / report.md."""
import json
import subprocess
import sys

import pytest
import torch
from helpers import torchrun


def test_a_launched_rank_that_aborts_prints_its_python_stack():
    """What report_native_crashes_under_torchrun gives a rank that dies in native code: the fatal signal
    and the Python stack it died in (a single process gets Python's default, no stack dump)."""
    script = ("from mambatune.pipelines.cli import report_native_crashes_under_torchrun as on\n"
              "on()\n"
              "def where_it_died():\n"
              "    import os; os.abort()\n"
              "where_it_died()\n")
    for world, dumped in (("2", True), ("1", False)):
        env = {**__import__("os").environ, "WORLD_SIZE": world, "PYTHONFAULTHANDLER": ""}
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode != 0
        assert ("Fatal Python error: Aborted" in proc.stderr and "where_it_died" in proc.stderr) == dumped, \
            proc.stderr


@pytest.mark.slow
def test_fsdp_recipe_saves_a_whole_adapter(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
           "mambatune.pipelines.cli", "run", "generic/sequence_classification_lora", "train.distributed=fsdp",
           "train.batch_size=4", "train.max_steps=2", "train.eval_every=0", "train.device=cpu",
           "train.progress=false", "train.plots=false", f"train.output_dir={out}", "eval.baselines=false"]
    proc = torchrun(cmd, fresh=[out])
    assert proc.returncode == 0, proc.stderr[-3000:]
    from safetensors.torch import load_file

    saved = load_file(out / "adapter" / "adapter.safetensors")
    lora_a = [v for k, v in saved.items() if k.endswith("lora_A")]
    assert lora_a and all(v.shape[0] == 8 and torch.isfinite(v).all() for v in lora_a)  # rank-8 factors, whole


@pytest.mark.slow
def test_domain_recipe_under_ddp_scores_and_fits_baselines_on_rank_0_only(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
           "mambatune.pipelines.cli", "run", "genomics/promoter_lora", "train.distributed=ddp", "train.device=cpu",
           "model.pretrained=default", "data.window=64", "data.max_train=32", "data.max_eval=24", "data.n_boot=20",
           "train.batch_size=8", "train.epochs=1", "train.eval_every=2", "train.progress=false",
           "train.monitor_every=0", "train.tensorboard=false", f"train.output_dir={out}"]
    proc = torchrun(cmd, fresh=[out])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]  # rank 1 exited 0 too
    # both ranks write to this stdout: the baselines were fitted once, the results printed once
    assert proc.stdout.count("baselines: fitting 6-mer logistic regression") == 1, proc.stdout[-3000:]
    assert proc.stdout.count("run folder: ") == 1
    results = json.loads((out / "results.json").read_text())
    # the model, its scratch baseline (trained by both ranks, in a second process group) and the k-mer baseline
    assert list(results["test"]) == ["mamba pretrained (lora)", "same model from scratch (full)",
                                     "6-mer logistic regression"]
    assert set(results["baselines"]) == {"same model from scratch (full)", "6-mer logistic regression"}
    assert results["training"]["steps"] == 2  # 32 windows / (8 per rank * 2 ranks)
    for name in ("report.md", "config.yaml", "plots/roc.png", "adapter/adapter.safetensors"):
        assert (out / name).is_file(), name


@pytest.mark.slow
def test_forecaster_under_fsdp_matches_ddp(tmp_path):
    """A time-series recipe (LoRA on the shipped forecaster, a scratch baseline, the seasonal skip) under
    DDP and FSDP: both finish, rank 0 writes one results.json, and the gathered FSDP model forecasts as
    the DDP one does (the forecaster has no parameter without a gradient, which DDP would refuse)."""
    scores = {}
    for strategy in ("ddp", "fsdp"):
        out = tmp_path / strategy
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
               "mambatune.pipelines.cli", "run", "timeseries/forecast_lora", "model.pretrained=series-mamba-500k",
               f"train.distributed={strategy}", "train.device=cpu", "train.max_steps=2", "train.eval_every=1",
               "train.batch_size=4", "train.progress=false", "data.max_train_windows=32", "data.num_samples=10",
               "data.windows=2", "data.max_history=1500", "data.context_length=256", "data.seasonal_skip=168",
               f"train.output_dir={out}"]
        proc = torchrun(cmd, fresh=[out])
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert proc.stdout.count("run folder: ") == 1
        results = json.loads((out / "results.json").read_text())
        assert {"mamba fine-tuned (lora)", "mamba from scratch (full, same budget)"} <= set(results["test"])
        assert (out / "predictor" / "model.safetensors").is_file()
        scores[strategy] = {k: v["MASE"] for k, v in results["test"].items()}
    for name, mase in scores["ddp"].items():
        assert scores["fsdp"][name] == pytest.approx(mase, rel=1e-3), name
