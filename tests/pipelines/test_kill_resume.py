"""`mambatune run` killed with SIGKILL mid-training and run again with the same command: it resumes and ends
where an uninterrupted run ends (bit-identical weights on the CPU), and the run folder holds that run only."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from mambatune.core.training import list_checkpoints, read_metrics

from .conftest import tiny_recipe

pytestmark = pytest.mark.slow


def recipe_for(tmp_path: Path) -> Path:
    """The tiny full fine-tuning recipe, long enough (12 steps, a checkpoint every 2) to be killed mid-way."""
    path = tiny_recipe(tmp_path, method="full")
    recipe = yaml.safe_load(path.read_text())
    recipe["train"].update(epochs=4, save_every=2, eval_every=4, keep_last=2)
    recipe["eval"]["baselines"] = False
    path.write_text("# mambatune run tiny.yaml\n" + yaml.safe_dump(recipe))
    return path


def command(recipe: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "mambatune.pipelines.cli", "run", str(recipe), f"train.output_dir={out}"]


def env(pause: bool) -> dict:
    e = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    e.pop("MAMBATUNE_TEST_PAUSE", None)
    if pause:
        e["MAMBATUNE_TEST_PAUSE"] = "step=0.4"  # slow steps, so the kill lands between the first checkpoint and the end
    return e


def run_to_end(recipe: Path, out: Path, pause: bool = False) -> subprocess.CompletedProcess:
    done = subprocess.run(command(recipe, out), env=env(pause), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def final_weights(out: Path) -> dict:
    return load_file(str(out / "model" / "model.safetensors"))


def test_sigkill_then_the_same_command_resumes_to_the_uninterrupted_result(tmp_path):
    recipe = recipe_for(tmp_path)
    reference = tmp_path / "reference"
    run_to_end(recipe, reference)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(command(recipe, killed), env=env(pause=True), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 540
    try:
        while not list_checkpoints(killed / "checkpoints"):
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "results.json").exists()
    steps_at_kill = max(int(p.name.split("-")[1]) for p in list_checkpoints(killed / "checkpoints"))
    assert steps_at_kill < 12

    run_to_end(recipe, killed)  # the same command again
    records = read_metrics(killed / "metrics.jsonl")
    resumed = [r for r in records if r.get("event") == "resumed"]
    assert len(resumed) == 1 and resumed[0]["step"] >= 2
    assert not list(killed.glob("previous-*")), "a resume must not set the run aside"

    ours, theirs = final_weights(killed), final_weights(reference)
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert ours[name].equal(theirs[name]), f"{name} differs from the uninterrupted run"

    results, expected = (json.loads((d / "results.json").read_text()) for d in (killed, reference))
    assert results["steps"] == expected["steps"] == 12
    assert results["test"] == expected["test"] and results["val"] == expected["val"]
    steps = [r["step"] for r in records if "train/loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 12, "metrics.jsonl holds one timeline"
    losses = {r["step"]: r["train/loss"] for r in records if "train/loss" in r}
    assert losses == {r["step"]: r["train/loss"] for r in read_metrics(reference / "metrics.jsonl") if "train/loss" in r}
    report = (killed / "report.md").read_text()
    assert str(reference) not in report
