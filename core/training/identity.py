"""A run's identity: what makes a checkpoint belong to one training run and not another.

The identity holds the settings that change the trajectory of the weights (optimizer, schedule shape,
batch, precision, seed, best-model rule), the model's configuration and the shape of every tensor it
saves, plus whatever a pipeline adds (e.g. its data fingerprint). Every checkpoint records it, and a
resume goes on only into the same identity: :func:`differences` names what changed. Settings that only
say how long to train (epochs, max_steps, max_minutes) or how to report (logging, evaluation and
checkpoint cadence) are not part of it, so a run can be extended or watched differently.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch.nn as nn

TRAIN_KEYS = ("batch_size", "grad_accum", "lr", "betas", "weight_decay", "eps", "warmup_steps", "warmup_ratio",
              "min_lr_ratio", "max_grad_norm", "precision", "seed", "metric_for_best", "greater_is_better",
              "early_stopping_patience", "early_stopping_min_delta")
SHAPE_SECTIONS = ("model", "shapes")  # what resume_force cannot override: the weights would not fit
MODEL_KEYS_IGNORED = ("backend",)  # how the model computes, not what it is


def run_identity(config, model: nn.Module, extra: dict | None = None, train_examples: int | None = None
                 ) -> dict[str, Any]:
    """The identity of training ``model`` under the TrainConfig ``config`` on ``train_examples`` examples
    (``extra``: a pipeline's own identity, e.g. its data fingerprint), with ``hash``: the first 16 hex
    digits of its SHA-256. The data position a checkpoint records counts examples of that training set,
    so its size is part of the identity."""
    inner = getattr(model, "module", model)  # DDP
    model_config = getattr(inner, "config", None)
    model_part = {}
    if model_config is not None and hasattr(model_config, "to_dict"):
        model_part = {k: v for k, v in model_config.to_dict().items() if k not in MODEL_KEYS_IGNORED}
    shapes = {name: list(t.shape) for name, t in inner.state_dict().items()}
    trainable = sorted(n for n, p in inner.named_parameters() if p.requires_grad)
    identity = {
        "train": {k: getattr(config, k) for k in TRAIN_KEYS},
        "data": {"train_examples": train_examples},
        "model": model_part,
        "shapes": shapes,
        "trainable": trainable,
        "extra": dict(extra or {}),
    }
    identity["hash"] = identity_hash(identity)
    return json.loads(json.dumps(identity, default=str))  # plain JSON values, as a checkpoint stores them


def identity_hash(identity: dict) -> str:
    body = {k: v for k, v in identity.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differences(saved: dict, current: dict) -> list[tuple[str, str]]:
    """``[(section, "key: old -> new"), ...]`` between two identities (empty when they agree)."""
    out = []
    for section in ("train", "data", "model", "extra"):
        old, new = saved.get(section) or {}, current.get(section) or {}
        for key in sorted(set(old) | set(new)):
            if section == "extra" and key not in old and saved.get("hash"):
                continue  # recorded only since a later version (e.g. the data fingerprint): trusted, as below
            if old.get(key) != new.get(key):
                out.append((section, f"{section}.{key}: {show(old.get(key, '(unset)'))} -> {show(new.get(key, '(unset)'))}"))
    old, new = saved.get("shapes") or {}, current.get("shapes") or {}
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    for key in changed[:5]:
        out.append(("shapes", f"tensor {key}: {shape(old.get(key))} -> {shape(new.get(key))}"))
    if len(changed) > 5:
        out.append(("shapes", f"... and {len(changed) - 5} more tensors"))
    if saved.get("trainable") is not None and saved.get("trainable") != current.get("trainable") and not changed:
        out.append(("shapes", "the set of trained parameters differs (another PEFT method or target)"))
    return out


def show(value) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def shape(dims) -> str:
    return "absent" if dims is None else "x".join(map(str, dims)) or "scalar"


class RunIdentityError(ValueError):
    """A resume into a run folder whose checkpoints belong to another run (other settings or shapes)."""


def check_resume(saved: dict | None, current: dict, force: bool, folder) -> list[str]:
    """The changes between the checkpoint's identity and this run's, as lines, when a resume may go on
    (none; or only non-shape ones under ``force``); otherwise raises :class:`RunIdentityError`."""
    if not saved or saved.get("hash") == current.get("hash"):
        return []  # the same run (a checkpoint written before identities were recorded is trusted)
    changes = differences(saved, current)
    if not changes:
        return []
    shape_changes = [text for section, text in changes if section in SHAPE_SECTIONS]
    lines = [text for _, text in changes]
    run_dir = folder.parent.parent
    if shape_changes:
        raise RunIdentityError(
            f"{run_dir} holds checkpoints of a model with another shape ({folder.name}): "
            + "; ".join(lines) + ". Its weights cannot be loaded into this model, even with train.resume_force. "
            "Use another train.output_dir, or train.resume=false to move the old run aside and start anew")
    if not force:
        raise RunIdentityError(
            f"{run_dir} holds checkpoints of a run with other settings ({folder.name}): " + "; ".join(lines)
            + ". Resume with the original settings, use another train.output_dir, set train.resume=false to move "
            "the old run aside and start anew, or train.resume_force=true to go on from its weights with the new "
            "settings (recorded in the run)")
    return lines


def apply_settings(optimizer, scheduler, config) -> None:
    """After a forced resume: the loaded optimizer and schedule take this run's lr, betas, eps and weight
    decay (a checkpoint's optimizer state would otherwise bring back the old ones)."""
    for group in optimizer.param_groups:
        group["betas"] = tuple(config.betas)
        group["eps"] = config.eps
        if group.get("group", "decay") == "decay":
            group["weight_decay"] = config.weight_decay
        group["initial_lr"] = config.lr
    scheduler.base_lrs = [config.lr for _ in optimizer.param_groups]
    for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["lr"] = config.lr * factor(scheduler.last_epoch)
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]


def set_aside(run_dir: Path, owned: list[Path]) -> Path | None:
    """Moves the ``owned`` paths of ``run_dir`` that exist into ``run_dir/previous-<UTC time>/``; returns it."""
    present = [Path(p) for p in owned if Path(p).exists()]
    if not present:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    dest, n = Path(run_dir) / f"previous-{stamp}", 1
    while dest.exists():
        n += 1
        dest = Path(run_dir) / f"previous-{stamp}-{n}"
    dest.mkdir(parents=True)
    for p in present:
        p.rename(dest / p.name)
    return dest


def set_aside_previous_run(run_dir: Path, ckpt_dir: Path) -> Path | None:
    """When ``ckpt_dir`` holds anything: the Trainer's files of ``run_dir`` (checkpoints, metrics.jsonl,
    tensorboard, plots) move to ``previous-<UTC time>/``, said on stderr. Returns where they went."""
    if not (ckpt_dir.is_dir() and any(ckpt_dir.iterdir())):
        return None
    moved = set_aside(run_dir, [ckpt_dir, run_dir / "metrics.jsonl", run_dir / "tensorboard", run_dir / "plots"])
    print(f"train.resume=false: {run_dir} held another run's checkpoints; they and its logs were moved to {moved}",
          file=sys.stderr, flush=True)
    return moved
