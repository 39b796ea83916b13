"""A recipe under torchrun with FSDP (2 CPU processes, gloo): trains, and the adapter it saves
(parameters sharded across the ranks during training) is written whole and loads back."""
import subprocess
import sys

import pytest
import torch



@pytest.mark.slow
def test_fsdp_recipe_saves_a_whole_adapter(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
           "mambatune.pipelines.cli", "run", "generic/sequence_classification_lora", "train.distributed=fsdp",
           "train.batch_size=4", "train.max_steps=2", "train.eval_every=0", "train.device=cpu",
           "train.progress=false", "train.plots=false", f"train.output_dir={out}", "eval.baselines=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from safetensors.torch import load_file

    saved = load_file(out / "adapter" / "adapter.safetensors")
    lora_a = [v for k, v in saved.items() if k.endswith("lora_A")]
    assert lora_a and all(v.shape[0] == 8 and torch.isfinite(v).all() for v in lora_a)  # rank-8 factors, whole
