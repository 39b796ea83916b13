"""Shared test helpers (imported by tests; not part of the package)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Max abs error relative to the max magnitude of ``expected``; inf when either holds NaN/Inf."""
    a, e = actual.detach().double(), expected.detach().double()
    if a.shape != e.shape:
        raise AssertionError(f"shape {tuple(a.shape)} != {tuple(e.shape)}")
    if not torch.isfinite(a).all() or not torch.isfinite(e).all():
        return float("inf")
    scale = e.abs().max().item() if e.numel() else 0.0
    return (a - e).abs().max().item() / max(scale, 1e-12) if a.numel() else 0.0


def assert_close(actual, expected, tol: float, what: str = "") -> None:
    err = rel_err(actual, expected)
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.1e}"


def python_blocks(doc: str | Path, section: str | None = None) -> list[str]:
    """The ```python code blocks of a markdown page, in order; with ``section``, only those under the
    ``## <section>`` heading (up to the next ``## `` heading)."""
    text = Path(doc).read_text()
    if section is not None:
        parts = re.split(r"^## ", text, flags=re.M)
        chosen = [p for p in parts[1:] if p.split("\n", 1)[0].strip() == section]
        if not chosen:
            raise AssertionError(f"{doc} has no section '## {section}'")
        text = chosen[0]
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


# Caduceus' complement map over its 16 (padded) ids (its tokenizer: specials 0-9, A C G T N from 10)
CADUCEUS_COMPLEMENT = {str(i): j for i, j in enumerate([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 12, 11, 10, 14, 15])}


def write_caduceus(model, folder, complement=None, rcps: bool = False, strategy: str = "ew_multiply",
                   characters=None) -> None:
    """Writes a MambaForTask in the Caduceus HF layout (CaduceusForMaskedLM key names, the tied reverse
    projections stored twice) with a config.json; ``characters``: a tokenizer_config.json listing them."""
    import json

    from safetensors.torch import save_file

    sd = {}
    for k, v in model.state_dict().items():
        k2 = "caduceus." + k.replace("backbone.embedding.", "backbone.embeddings.word_embeddings.")
        k2 = k2.replace(".mixer.fwd.", ".mixer.mamba_fwd.").replace(".mixer.rev.", ".mixer.mamba_rev.")
        sd[k2] = v.clone()
        if ".mixer.mamba_fwd.in_proj." in k2 or ".mixer.mamba_fwd.out_proj." in k2:
            sd[k2.replace("mamba_fwd", "mamba_rev")] = v.clone()
    save_file(sd, Path(folder) / "model.safetensors")
    c = model.config
    (Path(folder) / "config.json").write_text(json.dumps({
        "model_type": "caduceus", "d_model": c.d_model, "n_layer": c.n_layer, "vocab_size": c.vocab_size,
        "ssm_cfg": {"d_state": c.d_state, "d_conv": c.d_conv, "expand": c.expand, "dt_rank": "auto",
                    "use_fast_path": True},
        "rms_norm": True, "residual_in_fp32": False, "fused_add_norm": True, "pad_vocab_size_multiple": 8,
        "norm_epsilon": 1e-5, "bidirectional": True, "bidirectional_strategy": strategy,
        "bidirectional_weight_tie": True, "rcps": rcps, "complement_map": complement, "pad_token_id": 7,
    }))
    if characters is not None:
        (Path(folder) / "tokenizer_config.json").write_text(json.dumps({"characters": characters}))


def check_combined_folder(folder: Path, seeds: list[list[int]]) -> None:
    """A folder written by ``mambatune ensemble`` from finished runs: ensemble.json lists each run's seeds,
    config.yaml records the number of members, and the report says the baseline rows were copied."""
    import yaml

    info = json.loads((folder / "ensemble.json").read_text())
    assert [r["seeds"] for r in info["runs"]] == seeds
    assert yaml.safe_load((folder / "config.yaml").read_text())["data"]["ensemble"] == sum(map(len, seeds))
    assert "copied from" in (folder / "report.md").read_text()


NATIVE_ABORT = "terminate called without an active exception"


def torchrun(cmd: list[str], fresh: list[Path], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Runs a torchrun command; a launch in which a rank aborted inside native code with NATIVE_ABORT is
    run once more from scratch (``fresh``: the outputs it wrote, removed first), with a warning that
    carries the ranks' stderr.

    CI saw this abort once in about seven clean-clone runs (stop 22: rank 1 of the forecaster test of
    tests/pipelines/test_torchrun.py, before its first evaluation); more than 60 launches of the same
    command here, idle and loaded, never showed it. The CLI prints every thread's Python stack when a
    launched rank dies in native code (``report_native_crashes_under_torchrun``), so the warning says
    where it was. Any other failure, or the same abort twice, fails the test."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if proc.returncode != 0 and NATIVE_ABORT in proc.stderr:
        warnings.warn(f"a torchrun rank aborted in native code; running the launch again. Its stderr:\n"
                      f"{proc.stderr[-6000:]}")
        for path in map(Path, fresh):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    return proc
