"""Kill a CPU training with SIGKILL (at a random step, and inside a checkpoint write), resume it
from its run folder, and reach exactly the weights of an uninterrupted run."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mambatune.core.training import list_checkpoints, read_metrics
from mambatune.core.training.run_state import PAUSE_ENV, is_complete

SCRIPT = Path(__file__).with_name("tiny_run.py")
ARGS = ["epochs=3", "n=64"]  # 24 steps, checkpoints every 4, eval every 10


def run(run_dir, out, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen([sys.executable, str(SCRIPT), str(run_dir), str(out), *ARGS], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc):
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    finish(run(d / "run", d / "w.safetensors"))
    return load_file(d / "w.safetensors"), read_metrics(d / "run" / "metrics.jsonl")


def assert_same(weights, reference):
    ref, _ = reference
    assert weights.keys() == ref.keys()
    for k in ref:
        assert torch.equal(weights[k], ref[k]), k


def test_kill_at_random_step_then_resume(tmp_path, reference):
    kill_after = random.Random().randint(5, 20)
    proc = run(tmp_path / "run", tmp_path / "w.safetensors", {PAUSE_ENV: "step=0.15"})
    deadline = time.time() + 60
    while time.time() < deadline:
        steps = [r.get("step", 0) for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
        if steps and max(steps) >= kill_after:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "w.safetensors").exists(), "the run finished before it was killed"
    finish(run(tmp_path / "run", tmp_path / "w.safetensors"))
    assert_same(load_file(tmp_path / "w.safetensors"), reference)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert any(r.get("event") == "resumed" for r in records), f"killed after step {kill_after} but nothing resumed"
    # the resumed log repeats no step: records after the checkpoint were dropped, then rewritten
    train_steps = [r["step"] for r in records if "train/loss" in r]
    assert train_steps == sorted(set(train_steps)) == list(range(1, 25))
    ref_losses = [r["train/loss"] for r in reference[1] if "train/loss" in r]
    assert [r["train/loss"] for r in records if "train/loss" in r] == ref_losses


def test_kill_during_checkpoint_write_then_resume(tmp_path, reference):
    # every file write pauses before its rename; kill during the 3rd file (of 5) of the 3rd checkpoint
    proc = run(tmp_path / "run", tmp_path / "w.safetensors", {PAUSE_ENV: "checkpoint=0.2"})
    pauses = 0
    for line in proc.stderr:
        if "test pause: checkpoint" in line:
            pauses += 1
            if pauses == 13:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpts = tmp_path / "run" / "checkpoints"
    torn = [p for p in ckpts.iterdir() if p.is_dir() and not is_complete(p)]
    assert len(torn) == 1 and not (torn[0] / "manifest.json").exists()
    assert list(torn[0].glob(".*.tmp")), "the kill should land inside a write (a temp file left behind)"
    complete = list_checkpoints(ckpts)
    assert len(complete) == 2 and complete[-1].name < torn[0].name
    finish(run(tmp_path / "run", tmp_path / "w.safetensors"))
    assert_same(load_file(tmp_path / "w.safetensors"), reference)
    assert is_complete(ckpts / "step-00000024")
