"""Two CPU processes (gloo, launched by torchrun) give the loss curve of one process with the same global batch,
and the same evaluation: each rank reads its share of the 17 eval samples (9 and 8: three batches of 4 against
two, so under FSDP the second rank pads its forward calls) and the shares are joined."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import torchrun
from safetensors.torch import load_file

from mambatune.core.training import read_metrics

SCRIPT = Path(__file__).with_name("tiny_run.py")
ARGS = ["epochs=2", "n=64", "dropout=0", "eval_every=4", "n_eval=17"]


def launch(tmp_path, name, nproc, extra):
    out = tmp_path / f"{name}.safetensors"
    run_dir = tmp_path / name
    if nproc == 1:
        cmd = [sys.executable, str(SCRIPT)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", str(SCRIPT)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd += [str(run_dir), str(out), *ARGS, *extra]
    if nproc == 1:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    else:
        proc = torchrun(cmd, fresh=[run_dir, out], env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = read_metrics(run_dir / "metrics.jsonl")
    return ([r["train/loss"] for r in records if "train/loss" in r],
            [r["eval/loss"] for r in records if "eval/loss" in r], load_file(out))


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return launch(tmp_path_factory.mktemp("single"), "one", 1, ["batch_size=8"])


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one(tmp_path, single, strategy):
    losses, evals, weights = launch(tmp_path, strategy, 2, ["batch_size=4", f"distributed={strategy}"])
    ref_losses, ref_evals, ref_weights = single
    assert len(losses) == len(ref_losses) == 16
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses), atol=1e-5, rtol=0)
    assert len(evals) == len(ref_evals) == 4
    torch.testing.assert_close(torch.tensor(evals), torch.tensor(ref_evals), atol=1e-5, rtol=0)
    for k in ref_weights:
        torch.testing.assert_close(weights[k], ref_weights[k], atol=1e-5, rtol=1e-4)
    rows = [(tmp_path / strategy / f"eval_rows_rank{r}.txt").read_text().split() for r in (0, 1)]
    assert rows[0] == ["4", "4", "1"]  # samples 0-8
    assert rows[1] == (["4", "4", "1"] if strategy == "fsdp" else ["4", "4"])  # 9-16 (+ a discarded pass)
