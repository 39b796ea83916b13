"""Resumable checkpoints inside a run folder, written atomically.

A checkpoint is a folder ``<run>/checkpoints/step-00000040/`` holding

- ``model.safetensors`` (every parameter and buffer) or ``trainable.safetensors``
  (only the parameters that train, for PEFT runs: the frozen rest is rebuilt
  the same way on resume);
- ``optimizer.pt`` (optimizer, scheduler and loss-scaler state; read back with
  ``torch.load(weights_only=True)``);
- ``rng.pt`` (python, numpy, torch and CUDA generator states);
- ``trainer_state.json`` (step, epoch, data position, best metric, ...);
- ``manifest.json``, written last, listing every file and its size.

Every file is written to a temporary file in the same folder, fsynced and
renamed over its final name, so a file is either old or new, never torn; a
checkpoint without a manifest (a kill during the write) is incomplete and
ignored by ``latest_checkpoint``.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mambatune.core.atomic import atomic_write as _atomic_write
from mambatune.core.atomic import fsync_dir

MANIFEST = "manifest.json"
STEP_PREFIX = "step-"
PAUSE_ENV = "MAMBATUNE_TEST_PAUSE"


def test_pause(point: str) -> None:
    """Sleeps at ``point`` when ``MAMBATUNE_TEST_PAUSE`` names it (``checkpoint=5,step=0.05``).

    Fault-injection for the resume tests: a pause inside a checkpoint write lets
    a test SIGKILL the process exactly there. Unset, it does nothing."""
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    for item in spec.split(","):
        name, _, seconds = item.partition("=")
        if name.strip() == point:
            print(f"[mambatune] test pause: {point}", file=sys.stderr, flush=True)
            time.sleep(float(seconds))


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """The shared crash-safe write, with the resume tests' pause before the rename."""
    _atomic_write(path, write, before_rename=lambda: test_pause("checkpoint"))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> None:
    """Safetensors file; tensors sharing storage (tied weights) are copied apart."""
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():
        v = v.detach().cpu().contiguous()
        key = v.untyped_storage().data_ptr()
        if key in seen:
            v = v.clone()
        seen.add(key)
        out[k] = v
    atomic_write(path, lambda tmp: save_file(out, tmp))


def capture_rng() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(legacy=False),
        "torch": torch.get_rng_state(),
    }
    state["numpy"]["state"]["key"] = torch.from_numpy(state["numpy"]["state"]["key"].astype(np.int64))
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    np_state = dict(state["numpy"])
    np_state["state"] = dict(np_state["state"])
    np_state["state"]["key"] = np_state["state"]["key"].numpy().astype(np.uint64)
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_dir(root: Path, step: int) -> Path:
    return root / f"{STEP_PREFIX}{step:08d}"


def save_checkpoint(folder: str | os.PathLike, weights: dict[str, torch.Tensor], trainable_only: bool,
                    optim_state: dict, trainer_state: dict) -> Path:
    """Writes one complete checkpoint (manifest last). Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / MANIFEST
    if manifest.exists():  # rewriting a step: it is incomplete until the new manifest lands
        manifest.unlink()
        fsync_dir(folder)
    weights_name = "trainable.safetensors" if trainable_only else "model.safetensors"
    save_tensors(folder / weights_name, weights)
    atomic_write(folder / "optimizer.pt", lambda tmp: torch.save(optim_state, tmp))
    atomic_write(folder / "rng.pt", lambda tmp: torch.save(capture_rng(), tmp))
    atomic_write_text(folder / "trainer_state.json", json.dumps(trainer_state, indent=2, sort_keys=True) + "\n")
    files = {name: (folder / name).stat().st_size
             for name in (weights_name, "optimizer.pt", "rng.pt", "trainer_state.json")}
    atomic_write_text(manifest, json.dumps({"files": files, "step": trainer_state.get("step"),
                                            "weights": weights_name}, indent=2) + "\n")
    return folder


def is_complete(folder: Path) -> bool:
    """True when the manifest exists and every file it lists has the recorded size."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        return all((folder / name).stat().st_size == size for name, size in manifest["files"].items())
    except (OSError, ValueError, KeyError):
        return False


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``root``, oldest step first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX) and is_complete(p)]
    return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX):]))


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def read_trainer_state(folder: Path) -> dict:
    """``trainer_state.json`` of a checkpoint (step, data position, the run identity, ...)."""
    return json.loads((Path(folder) / "trainer_state.json").read_text())


def has_finite_weights(folder: Path) -> bool:
    """Whether every floating tensor of a complete checkpoint's weights file is finite."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        weights = load_file(folder / manifest["weights"])
    except (OSError, ValueError, KeyError):
        return False
    return all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point())


def intact_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint whose weights are all finite (what a resume can trust), or None."""
    for folder in reversed(list_checkpoints(root)):
        if has_finite_weights(folder):
            return folder
    return None


def describe_intact(root: str | os.PathLike) -> str:
    """A sentence naming the checkpoint a user can go back to, or saying that there is none."""
    folder = intact_checkpoint(root)
    if folder is None:
        return f"No intact checkpoint exists in {root} (none was saved with finite weights)."
    return f"The newest intact checkpoint is {folder} (step {int(folder.name[len(STEP_PREFIX):])})."


def load_checkpoint(folder: str | os.PathLike, map_location="cpu") -> dict:
    """Returns ``{"weights", "trainable_only", "optim", "rng", "trainer_state"}`` of a complete checkpoint."""
    folder = Path(folder)
    if not is_complete(folder):
        raise ValueError(f"checkpoint {folder} is incomplete (no manifest, or a file has the wrong size)")
    manifest = json.loads((folder / MANIFEST).read_text())
    return {
        "weights": load_file(folder / manifest["weights"]),
        "trainable_only": manifest["weights"] == "trainable.safetensors",
        "optim": torch.load(folder / "optimizer.pt", map_location=map_location, weights_only=True),
        "rng": torch.load(folder / "rng.pt", map_location="cpu", weights_only=True),
        "trainer_state": json.loads((folder / "trainer_state.json").read_text()),
    }


def prune_checkpoints(root: str | os.PathLike, keep_last: int, keep: set[int] = frozenset()) -> None:
    """Deletes all but the ``keep_last`` newest complete checkpoints, sparing steps in ``keep``;
    also removes incomplete ones older than the newest complete one (leftovers of a kill)."""
    root = Path(root)
    complete = list_checkpoints(root)
    if not complete:
        return
    newest = int(complete[-1].name[len(STEP_PREFIX):])
    doomed = [p for p in complete[:-keep_last] if int(p.name[len(STEP_PREFIX):]) not in keep] if keep_last > 0 else []
    doomed += [p for p in root.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX)
               and not is_complete(p) and int(p.name[len(STEP_PREFIX):]) < newest]
    for p in doomed:
        manifest = p / MANIFEST
        if manifest.exists():
            manifest.unlink()  # incomplete first, so a kill mid-delete leaves nothing that looks valid
        shutil.rmtree(p, ignore_errors=True)
