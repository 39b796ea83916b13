"""The training loop: one ``Trainer`` for full fine-tuning and every PEFT method.

``Trainer(model, TrainConfig(...), train_data, eval_data, collate_fn, metrics_fn).train()``
trains a ``MambaForTask`` (anything whose ``forward(**batch)`` returns an object
with ``.loss`` and ``.logits``) and writes the run folder ``config.output_dir``::

    metrics.jsonl        train / eval / monitor records, one JSON object per line
    checkpoints/step-*/  resumable checkpoints (see run_state.py); the best is kept
    plots/*.png          loss and metric curves, titled with the run and its model; loss.png is
                         re-drawn at each evaluation (at most every ``LIVE_PLOT_SECONDS``)
    tensorboard/         with ``tensorboard=True`` (needs ``pip install "mambatune[tensorboard]"``)

A rerun with the same output_dir resumes from the newest complete checkpoint:
weights, optimizer, scheduler, loss scaler, RNG states and the position in the
data stream (epoch, samples consumed), so the result equals an uninterrupted run.
"""
from __future__ import annotations

import math
import resource
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from mambatune.core.config import check_known_keys

from . import distributed as dist_utils
from . import identity, nonfinite, run_state
from .figures import describe_model, run_role
from .figures import plot_curves
from .metrics_log import MetricsLog, require_tensorboard
from .monitor import SSMMonitor
from .optim import build_optimizer, build_scheduler
from .precision import Precision, set_tf32
from .ranges import check_ranges


@dataclass
class TrainConfig:
    """How to train. Steps are optimizer steps; ``batch_size`` is per process and per micro-batch,
    so the global batch is batch_size * grad_accum * world_size."""

    output_dir: str = "runs/default"
    epochs: int = 1
    max_steps: int | None = None
    max_minutes: float | None = None  # wall-clock budget of this invocation: stop, evaluate and save when spent
    batch_size: int = 8
    eval_batch_size: int | None = None
    grad_accum: int = 1
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 0.1
    eps: float = 1e-8
    warmup_steps: int | None = None
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0
    precision: str = "fp32"
    tf32: bool = True  # fp32 matrix products on TF32 tensor cores (as mamba_ssm's and HF's fp32 figures use)
    compile: bool = False  # torch.compile the model's forward and backward for training (see docs/training.md)
    gradient_checkpointing: bool = False
    offload_checkpoints: bool = False  # with gradient_checkpointing: block inputs wait in host memory
    eval_every: int = 0
    save_every: int = 0
    keep_last: int = 2
    metric_for_best: str = "loss"
    greater_is_better: bool | None = None
    early_stopping_patience: int = 0
    early_stopping_min_delta: float = 0.0
    load_best_at_end: bool = True
    resume: bool = True
    resume_force: bool = False  # resume although optimizer settings changed (never shapes); recorded in the run
    seed: int = 0
    log_every: int = 10
    monitor_every: int = 50
    monitor_layers: list[int] | None = None
    progress: bool = True
    tensorboard: bool = False  # event files in <run>/tensorboard; needs pip install "mambatune[tensorboard]"
    plots: bool = True
    num_workers: int = 0
    device: str = "auto"
    distributed: str = "auto"
    # a step whose loss or gradients hold NaN/Inf is never applied: "skip" drops it (counted in metrics.jsonl)
    # and stops after max_nonfinite_skips of them in a row; "stop" stops at the first (under fp16 an overflow
    # is the loss scaler's to handle: it is skipped either way)
    nonfinite: str = "skip"
    max_nonfinite_skips: int = 10

    def __post_init__(self) -> None:
        check_ranges(self)  # every numeric, boolean and text field (ranges.RULES gives each range)
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"TrainConfig.precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.nonfinite not in nonfinite.POLICIES:
            raise ValueError(f"TrainConfig.nonfinite must be one of {nonfinite.POLICIES}, got {self.nonfinite!r}")
        if self.distributed not in dist_utils.STRATEGIES:
            raise ValueError(f"TrainConfig.distributed must be one of {dist_utils.STRATEGIES}, got {self.distributed!r}")

    def higher_is_better(self) -> bool:
        if self.greater_is_better is not None:
            return self.greater_is_better
        return not self.metric_for_best.endswith("loss")


@dataclass
class TrainResult:
    steps: int
    best_step: int | None
    best_metric: float | None
    stopped_early: bool
    last_eval: dict[str, float]
    run_dir: str
    seconds: float
    out_of_time: bool = False  # max_minutes ran out before max_steps / epochs


LIVE_PLOT_SECONDS = 30.0  # loss.png is re-drawn at an evaluation when this long has passed since the last drawing


def progress_label(run_dir: Path, phase: str) -> str:
    """The progress bar's label: ``train``, ``train (scratch twin)``, ``validation (member 1)``."""
    role = run_role(run_dir)
    if ": scratch twin" in role:
        return f"{phase} (scratch twin)"
    if ": ensemble member " in role:
        return f"{phase} (member {role.rsplit(' ', 1)[-1]})"
    return phase


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def count_tokens(batch: dict) -> int:
    if batch.get("attention_mask") is not None:
        return int(batch["attention_mask"].sum())
    ids = batch.get("input_ids")
    return int(ids.numel()) if ids is not None else 0


class Trainer:
    """Trains ``model`` on ``train_data`` (a map-style Dataset of examples batched by ``collate_fn``
    into dicts with input_ids, attention_mask, labels). ``metrics_fn(logits, labels) -> dict``
    scores evaluations next to the loss."""

    def __init__(self, model: nn.Module, config: TrainConfig, train_data: Dataset, eval_data: Dataset | None = None,
                 collate_fn: Callable | None = None, metrics_fn: Callable[[torch.Tensor, torch.Tensor], dict] | None = None,
                 identity_extra: dict | None = None):
        """``identity_extra``: what else makes this run itself (e.g. a pipeline's data fingerprint); it joins
        the run identity every checkpoint records (see identity.py)."""
        self.config = config
        if config.tensorboard:
            require_tensorboard()  # before any work: a clear error, not a silent run without the logs asked for
        self.train_data = train_data
        self.eval_data = eval_data
        self.collate_fn = collate_fn
        self.metrics_fn = metrics_fn
        self.run_dir = Path(config.output_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.env = dist_utils.setup(config.distributed, config.device)
        self.device = self.env.device
        self.precision = Precision(config.precision, self.device.type)
        set_tf32(config.tf32)
        self.model_text = describe_model(model)  # what plots and metrics.jsonl name (before wrapping)
        model = self.precision.prepare(model.to(self.device))
        backbone = getattr(model, "backbone", None)
        if backbone is not None and hasattr(backbone, "gradient_checkpointing"):
            backbone.gradient_checkpointing = config.gradient_checkpointing
            backbone.offload_checkpoints = config.offload_checkpoints
        if config.compile:
            model.compile()  # in place: the same module, parameter names and state_dict keys
        self.trainable_names = {n for n, p in model.named_parameters() if p.requires_grad}
        self.trainable_only = len(self.trainable_names) < sum(1 for _ in model.parameters())
        self.model = dist_utils.wrap(model, self.env)
        self.optimizer = build_optimizer(self.model, config.lr, tuple(config.betas), config.weight_decay, config.eps)
        self.sampler = dist_utils.ResumableSampler(train_data, self.env, shuffle=True, seed=config.seed)
        self.loader = DataLoader(train_data, batch_size=config.batch_size, sampler=self.sampler, drop_last=True,
                                 collate_fn=collate_fn, num_workers=config.num_workers,
                                 generator=torch.Generator().manual_seed(config.seed))
        self.micro_per_epoch = len(self.sampler) // config.batch_size
        self.steps_per_epoch = self.micro_per_epoch // config.grad_accum
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"one optimizer step needs batch_size * grad_accum * world_size = "
                f"{config.batch_size * config.grad_accum * self.env.world_size} examples but the training set has "
                f"{len(train_data)}; lower batch_size or grad_accum")
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        warmup = config.warmup_steps if config.warmup_steps is not None else int(config.warmup_ratio * self.total_steps)
        self.scheduler = build_scheduler(self.optimizer, warmup, self.total_steps, config.min_lr_ratio)
        self.state: dict[str, Any] = {"step": 0, "epoch": 0, "micro_in_epoch": 0, "best_metric": None,
                                      "best_step": None, "bad_evals": 0, "tokens": 0, "last_eval": {},
                                      "nonfinite_skips": 0, "nonfinite_in_a_row": 0}
        self.last_skip: dict | None = None  # what the last _step skipped, for the log
        self.identity = identity.run_identity(config, model, identity_extra, len(train_data))
        self.state["identity"] = self.identity
        self.monitor = None
        if config.monitor_every > 0 and backbone is not None and hasattr(backbone, "layers"):
            self.monitor = SSMMonitor(dist_utils.unwrap(self.model), config.monitor_layers)

    # -- checkpoints -----------------------------------------------------------------------
    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Every parameter and buffer, unsharded, on CPU (a collective under FSDP: call on every rank)."""
        return dist_utils.model_state(self.model, self.env)

    def close(self) -> None:
        """Leaves the process group (torchrun runs); the Trainer cannot train afterwards."""
        if self.monitor is not None:
            self.monitor.remove()
        dist_utils.teardown(self.env)

    def save(self) -> Path | None:
        """Writes a resumable checkpoint of the current step (a collective: call on every rank)."""
        weights = dist_utils.model_state(self.model, self.env)
        if self.trainable_only:
            weights = {k: v for k, v in weights.items() if k in self.trainable_names}
        nonfinite.check_weights_to_save(weights, self.state["step"], self.env, self.ckpt_dir)
        optim = {"optimizer": dist_utils.optimizer_state(self.model, self.optimizer, self.env),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.precision.state_dict()}
        folder = None
        if self.env.is_main:
            folder = run_state.save_checkpoint(run_state.step_dir(self.ckpt_dir, self.state["step"]), weights,
                                               self.trainable_only, optim, dict(self.state))
            keep = {self.state["best_step"]} if self.state["best_step"] is not None else set()
            run_state.prune_checkpoints(self.ckpt_dir, self.config.keep_last, keep)
        dist_utils.barrier(self.env)
        return folder

    def load_weights(self, folder: Path) -> None:
        ckpt = run_state.load_checkpoint(folder, map_location="cpu")
        dist_utils.load_model_state(self.model, ckpt["weights"], self.env, strict=not ckpt["trainable_only"])

    def resume(self, folder: Path) -> None:
        ckpt = run_state.load_checkpoint(folder, map_location="cpu")
        dist_utils.load_model_state(self.model, ckpt["weights"], self.env, strict=not ckpt["trainable_only"])
        dist_utils.load_optimizer_state(self.model, self.optimizer, ckpt["optim"]["optimizer"], self.env)
        self.scheduler.load_state_dict(ckpt["optim"]["scheduler"])
        self.precision.load_state_dict(ckpt["optim"]["scaler"])
        run_state.restore_rng(ckpt["rng"])
        self.state.update(ckpt["trainer_state"])

    # -- evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, data: Dataset, batch_size: int | None = None,
                split_across_ranks: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """Logits and labels over ``data`` and the mean loss (NaN without labels).

        Token-level outputs are flattened to the real (unmasked) positions: logits (N, C), labels (N,).
        ``split_across_ranks`` (under torchrun; a collective, so every rank must call it): each rank
        reads a contiguous 1/world of ``data`` and every rank gets the whole result, in ``data``'s order.
        Without it every rank reads all of ``data``."""
        env = self.env
        split = split_across_ranks and env.active and hasattr(data, "__len__") and len(data) > 0
        model = dist_utils.unwrap(self.model) if env.strategy == "ddp" else self.model
        was_training = model.training
        model.eval()
        size = batch_size or self.config.eval_batch_size or self.config.batch_size
        part = data
        if split:
            per = -(-len(data) // env.world_size)
            part = torch.utils.data.Subset(data, range(min(len(data), env.rank * per),
                                                       min(len(data), (env.rank + 1) * per)))
        loader = DataLoader(part, batch_size=size, shuffle=False, collate_fn=self.collate_fn,
                            generator=torch.Generator())
        # under FSDP every forward pass is a collective: a rank with fewer batches than another repeats a
        # forward pass (its output discarded) until the counts match; the count is agreed on first
        padding = dist_utils.max_across_ranks(len(loader), env) - len(loader) if split and env.strategy == "fsdp" else 0
        logits_all, labels_all, loss_sum, n = [], [], 0.0, 0
        bar = None
        if env.is_main and self.config.progress and len(loader) > 1:
            # an evaluation can take minutes on a CPU: its own bar under the training bar, gone when done
            from tqdm.auto import tqdm
            bar = tqdm(total=len(loader), desc=progress_label(self.run_dir, "validation" if split_across_ranks else "scoring"),
                       unit="batch", leave=False, dynamic_ncols=True, position=1 if split_across_ranks else 0)
        for batch in loader:
            if bar is not None:
                bar.update(1)
            batch = to_device(batch, self.device)
            with self.precision.autocast():
                out = model(**batch)
            logits = out.logits.float()
            labels = batch.get("labels")
            if logits.dim() == 3 and labels is not None and labels.dim() == 2:
                keep = batch["attention_mask"].bool() if batch.get("attention_mask") is not None else torch.ones_like(labels, dtype=torch.bool)
                keep &= labels != -100
                logits, labels = logits[keep], labels[keep]
            logits_all.append(logits.cpu())
            if labels is not None:
                labels_all.append(labels.cpu())
            if out.loss is not None:
                bs = batch["input_ids"].shape[0] if "input_ids" in batch else 1
                loss_sum += float(out.loss) * bs
                n += bs
        if bar is not None:
            bar.close()
        if padding:
            collate = self.collate_fn or torch.utils.data.default_collate
            filler = to_device(collate([data[0]]), self.device)
            for _ in range(padding):
                with self.precision.autocast():
                    model(**filler)
        if split:
            logits_all, labels_all, loss_sum, n = dist_utils.gather_eval_outputs(
                logits_all, labels_all, loss_sum, n, env)
        model.train(was_training)
        labels = torch.cat(labels_all) if labels_all else None
        return torch.cat(logits_all), labels, (loss_sum / n if n else math.nan)

    def evaluate(self, data: Dataset | None = None, split_across_ranks: bool = False) -> dict[str, float]:
        """The loss and ``metrics_fn``'s metrics over ``data`` (default: the eval data). Training evaluates
        with ``split_across_ranks`` (see :meth:`predict`): under torchrun each rank reads its share."""
        data = data if data is not None else self.eval_data
        if data is None:
            raise ValueError("evaluate needs eval data (pass eval_data to the Trainer or data here)")
        logits, labels, loss = self.predict(data, split_across_ranks=split_across_ranks)
        result = {"loss": loss}
        if self.metrics_fn is not None and labels is not None:
            result.update({k: float(v) for k, v in self.metrics_fn(logits, labels).items()})
        return result

    def _after_eval(self, metrics: dict[str, float]) -> bool:
        """Tracks the best metric; returns True when early stopping says stop."""
        cfg = self.config
        key = cfg.metric_for_best
        if key not in metrics:
            raise KeyError(f"metric_for_best {key!r} is not among the evaluation metrics {sorted(metrics)}")
        value = metrics[key]
        best = self.state["best_metric"]
        sign = 1.0 if cfg.higher_is_better() else -1.0
        if best is None or sign * (value - best) > cfg.early_stopping_min_delta:
            self.state.update(best_metric=value, best_step=self.state["step"], bad_evals=0)
        else:
            self.state["bad_evals"] += 1
        return cfg.early_stopping_patience > 0 and self.state["bad_evals"] >= cfg.early_stopping_patience

    # -- the loop --------------------------------------------------------------------------
    def train(self) -> TrainResult:
        cfg, env = self.config, self.env
        start = time.time()
        latest = run_state.latest_checkpoint(self.ckpt_dir) if cfg.resume else None
        moved_to, forced = None, []
        if not cfg.resume:
            moved_to = self._set_aside_previous_run()
        if latest is not None:
            saved = run_state.read_trainer_state(latest).get("identity")
            forced = identity.check_resume(saved, self.identity, cfg.resume_force, latest)
            self.resume(latest)
            if forced:
                identity.apply_settings(self.optimizer, self.scheduler, cfg)
                self._adopt_batch_size(saved["train"]["batch_size"])
                self.state["forced_changes"] = self.state.get("forced_changes", []) + [
                    {"step": self.state["step"], "changes": forced}]
            self.state["identity"] = self.identity
        else:
            torch.manual_seed(cfg.seed + env.rank)
        log = MetricsLog(self.run_dir, cfg.tensorboard, resume_step=self.state["step"] if latest else None) \
            if env.is_main else None
        if log is not None and latest is not None:
            log.log({"step": self.state["step"], "event": "resumed", "from": str(latest), "model": self.model_text})
        elif log is not None:
            compiled = {"compile": True} if cfg.compile else {}
            log.log({"step": 0, "event": "start", "model": self.model_text, **compiled})
        if log is not None and forced:
            log.log({"step": self.state["step"], "event": "resume_forced", "changes": forced})
        if log is not None and moved_to is not None:
            log.log({"step": 0, "event": "previous_run_moved", "to": str(moved_to)})
        bar = None
        if env.is_main and cfg.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=self.total_steps, initial=self.state["step"], desc=progress_label(self.run_dir, "train"),
                       unit="step", dynamic_ncols=True)
        self.last_plot = time.time()
        stopped_early = self.state.get("stopped_early", False)
        out_of_time = False
        self.model.train()
        window = {"loss": 0.0, "n": 0, "tokens": 0, "t0": time.time()}
        try:
            while self.state["step"] < self.total_steps and not stopped_early:
                self.sampler.set_position(self.state["epoch"], self.state["micro_in_epoch"] * cfg.batch_size)
                batches = iter(self.loader)
                while (self.state["step"] < self.total_steps
                       and self.micro_per_epoch - self.state["micro_in_epoch"] >= cfg.grad_accum):
                    loss, tokens, grad_norm = self._step(batches)
                    step = self.state["step"]
                    if self.last_skip is not None:
                        if log is not None:
                            log.log({"step": step, "event": "nonfinite_skip", **self.last_skip,
                                     "nonfinite_skips": self.state["nonfinite_skips"]})
                        nonfinite.check_after_skip(self.last_skip, self.state, cfg, self.precision.mode, self.model,
                                                   env, self.ckpt_dir)
                    else:
                        window["loss"] += loss
                        window["n"] += 1
                    window["tokens"] += tokens
                    if bar is not None:
                        elapsed = max(time.time() - window["t0"], 1e-9)
                        bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{window['tokens'] / elapsed:,.0f}")
                        bar.update(1)
                    if log is not None and (step % cfg.log_every == 0 or step == self.total_steps):
                        elapsed = max(time.time() - window["t0"], 1e-9)
                        log.log({"step": step, "epoch": self.state["epoch"],
                                 "train/loss": window["loss"] / window["n"] if window["n"] else math.nan,
                                 "nonfinite_skips": self.state["nonfinite_skips"],
                                 "lr": self.scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                                 "tokens_per_s": window["tokens"] * env.world_size / elapsed,
                                 "tokens": self.state["tokens"], "peak_memory_mb": peak_memory_mb(self.device)})
                        window = {"loss": 0.0, "n": 0, "tokens": 0, "t0": time.time()}
                    if self.monitor is not None and self.monitor.values:
                        record = self.monitor.pop()
                        if log is not None:
                            log.log({"step": step, **record})
                    saved = False
                    if self.eval_data is not None and cfg.eval_every > 0 and step % cfg.eval_every == 0:
                        stopped_early = self._eval_and_log(log)
                        self._live_plot(log)
                        self.state["stopped_early"] = stopped_early
                        if self.state["best_step"] == step or (cfg.save_every == 0):
                            self.save()
                            saved = True
                        if stopped_early:
                            break
                    if not saved and cfg.save_every > 0 and step % cfg.save_every == 0:
                        self.save()
                    run_state.test_pause("step")
                    if cfg.max_minutes is not None and self._out_of_time(start):
                        out_of_time = True
                        if log is not None:
                            log.log({"step": step, "event": "out_of_time", "max_minutes": cfg.max_minutes})
                        break
                if out_of_time:
                    break
                if self.micro_per_epoch - self.state["micro_in_epoch"] < cfg.grad_accum:
                    self.state["epoch"] += 1
                    self.state["micro_in_epoch"] = 0
            if self.eval_data is not None and self.state.get("last_eval", {}).get("step") != self.state["step"]:
                self._eval_and_log(log)
            if run_state.latest_checkpoint(self.ckpt_dir) is None or \
                    int(run_state.latest_checkpoint(self.ckpt_dir).name[len(run_state.STEP_PREFIX):]) != self.state["step"]:
                self.save()
            if cfg.load_best_at_end and self.state["best_step"] is not None \
                    and self.state["best_step"] != self.state["step"]:
                best = run_state.step_dir(self.ckpt_dir, self.state["best_step"])
                if run_state.is_complete(best):
                    self.load_weights(best)
        finally:
            if bar is not None:
                bar.close()
            if log is not None:
                log.close()
        if env.is_main and cfg.plots:
            plot_curves(self.run_dir, self.model_text)
        last_eval = {k: v for k, v in self.state.get("last_eval", {}).items() if k != "step"}
        return TrainResult(self.state["step"], self.state["best_step"], self.state["best_metric"], stopped_early,
                           last_eval, str(self.run_dir), time.time() - start, out_of_time)

    def _live_plot(self, log: MetricsLog | None) -> None:
        """Re-draws plots/loss.png during training (after an evaluation, at most every LIVE_PLOT_SECONDS),
        so the curve can be watched before the run ends."""
        if log is None or not self.config.plots or time.time() - self.last_plot < LIVE_PLOT_SECONDS:
            return
        plot_curves(self.run_dir, self.model_text, only_loss=True)
        self.last_plot = time.time()

    def _set_aside_previous_run(self) -> Path | None:
        """``resume=false`` into a folder holding checkpoints: the old run's checkpoints and logs move to
        ``previous-<time>/`` (printed), so the two runs never mix. Returns where they went."""
        moved = identity.set_aside_previous_run(self.run_dir, self.ckpt_dir) if self.env.is_main else None
        dist_utils.barrier(self.env)
        return moved

    def _adopt_batch_size(self, old: int) -> None:
        """A forced resume with another batch size: the data position, counted in micro-batches, is
        converted so that the same examples are not read twice."""
        if old != self.config.batch_size:
            self.state["micro_in_epoch"] = self.state["micro_in_epoch"] * old // self.config.batch_size

    def _out_of_time(self, start: float) -> bool:
        """Whether ``max_minutes`` is spent; under torchrun every rank takes rank 0's answer, so all stop
        at the same step."""
        over = time.time() - start >= self.config.max_minutes * 60
        if self.env.world_size > 1:
            import torch.distributed as dist
            flag = torch.tensor([float(over)], device=self.device if dist.get_backend() == "nccl" else "cpu")
            dist.broadcast(flag, src=0)
            over = bool(flag.item())
        return over

    def _step(self, batches) -> tuple[float, int, float]:
        """One optimizer step over grad_accum micro-batches; returns (mean loss across ranks, tokens, grad norm)."""
        cfg, env = self.config, self.env
        step = self.state["step"]
        monitor_now = self.monitor is not None and (step + 1) % cfg.monitor_every == 0
        loss_sum, tokens = 0.0, 0
        for i in range(cfg.grad_accum):
            batch = to_device(next(batches), self.device)
            last = i == cfg.grad_accum - 1
            if self.monitor is not None:
                self.monitor.active = monitor_now and last
            with dist_utils.sync_gradients(self.model, env, sync=last):
                with self.precision.autocast():
                    out = self.model(**batch)
                loss = out.loss
                # backward runs whatever the loss (under DDP every rank must reach the gradient all-reduce);
                # the step is judged once every rank's loss and the global gradient norm are known
                self.precision.backward(loss / cfg.grad_accum)
            loss_sum += float(loss.detach())
            tokens += count_tokens(batch)
            self.state["micro_in_epoch"] += 1
        if self.monitor is not None:
            self.monitor.active = False
        self.precision.unscale(self.optimizer)
        grad_norm = dist_utils.clip_grad_norm(self.model, cfg.max_grad_norm)  # NaN/Inf when any gradient is
        mean_loss = dist_utils.mean_across_ranks(loss_sum / cfg.grad_accum, env)  # NaN/Inf when any rank's is
        self.last_skip = None
        if not (math.isfinite(grad_norm) and math.isfinite(mean_loss)):
            # the update would carry NaN/Inf into the weights (and every later checkpoint): drop it
            self.precision.skip()
            self.state["nonfinite_skips"] += 1
            self.state["nonfinite_in_a_row"] += 1
            self.last_skip = {"loss": mean_loss, "grad_norm": grad_norm, "lr": self.scheduler.get_last_lr()[0],
                              "what": "loss" if not math.isfinite(mean_loss) else "gradients"}
        elif self.precision.step(self.optimizer):
            self.state["nonfinite_in_a_row"] = 0
        with warnings.catch_warnings():  # a skipped first step makes torch warn that the schedule runs ahead
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state["step"] = step + 1
        self.state["tokens"] += tokens * env.world_size
        return mean_loss, tokens, grad_norm

    def _eval_and_log(self, log: MetricsLog | None) -> bool:
        metrics = self.evaluate(split_across_ranks=True)
        stop = self._after_eval(metrics)
        self.state["last_eval"] = {"step": self.state["step"], **metrics}
        if log is not None:
            log.log({"step": self.state["step"], **{f"eval/{k}": v for k, v in metrics.items()},
                     "best_step": self.state["best_step"]})
        return stop


def config_from_dict(d: dict) -> TrainConfig:
    """TrainConfig from a plain dict; unknown keys raise with a suggestion."""
    check_known_keys(TrainConfig, d, "train")
    return TrainConfig(**d)
