"""DDP and FSDP (``fully_shard``) for runs launched by torchrun.

The same TrainConfig runs on one process or many: ``torchrun --nproc-per-node N
script.py`` sets RANK / WORLD_SIZE / LOCAL_RANK and ``setup`` joins the process
group (NCCL on CUDA, gloo on CPU). Rank 0 logs and writes checkpoints; every
rank takes part in collectives (FSDP state gathering, loss averaging).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DistributedSampler

STRATEGIES = ("auto", "none", "ddp", "fsdp")
_groups_joined = 0  # process groups this process joined; every rank joins the same sequence of them


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    strategy: str = "none"
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cuda" and torch.cuda.is_available():
        return torch.device(f"cuda:{local_rank}")
    return torch.device(name)


def launch_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) as torchrun set them; (0, 1, 0) for a process not launched by it."""
    values = []
    for name, default in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
        raw = os.environ.get(name, default)
        try:
            values.append(int(raw))
        except ValueError:
            raise ValueError(f"environment variable {name}={raw!r} is not an integer; torchrun sets it, "
                             "or unset it to run as a single process") from None
    return values[0], values[1], values[2]


def is_main_process() -> bool:
    """Whether this process is the main one (rank 0, or the only process), with or without a Trainer:
    the rank of the joined process group, else torchrun's RANK. Pipelines use it to score, fit baselines
    and write results on one rank only, after training (which runs on every rank)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return launch_env()[0] == 0


def shards_parameters(strategy: str) -> bool:
    """Whether a Trainer built now with this ``distributed`` strategy shards the model (FSDP under torchrun)."""
    return strategy == "fsdp" and launch_env()[1] > 1


def join_process_group(backend: str) -> None:
    """Joins the default process group, under a store prefix of its own.

    A run may train several times (a scratch baseline, ensemble members) and leaves the group after
    each; torchrun's store outlives a group and torch names a re-created default group like the first,
    so without the prefix the second group meets the first one's keys and ranks hang or connect to
    the dead group."""
    global _groups_joined
    store, rank, world = next(dist.rendezvous("env://"))
    store = dist.PrefixStore(f"mambatune-group-{_groups_joined}", store)
    _groups_joined += 1
    dist.init_process_group(backend, store=store, rank=rank, world_size=world)


def setup(strategy: str = "auto", device: str = "auto") -> DistEnv:
    """Reads torchrun's environment and joins the process group when WORLD_SIZE > 1."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown distributed strategy {strategy!r}; choose one of {STRATEGIES}")
    rank, world, local = launch_env()
    dev = pick_device(device, local)
    if world == 1:
        return DistEnv(0, 1, 0, "none", dev)
    if strategy == "none":
        raise ValueError("WORLD_SIZE > 1 (launched by torchrun) but distributed strategy is 'none'; use ddp or fsdp")
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        join_process_group(backend)
    return DistEnv(rank, world, local, "ddp" if strategy == "auto" else strategy, dev)


def teardown(env: DistEnv) -> None:
    if env.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: nn.Module, env: DistEnv) -> nn.Module:
    """DDP-wraps the model, or shards it in place with ``fully_shard`` (each block, then the root)."""
    if not env.active:
        return model
    if env.strategy == "ddp":
        ids = [env.device.index] if env.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.fsdp import fully_shard  # torch >= 2.6
    layers = getattr(getattr(model, "backbone", None), "layers", None)
    for block in layers or []:
        fully_shard(block)
    fully_shard(model)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def sync_gradients(model: nn.Module, env: DistEnv, sync: bool):
    """Context for one micro-batch: gradients are all-reduced only when ``sync`` (the last of an accumulation)."""
    if not env.active or sync:
        if env.strategy == "fsdp" and env.active:
            model.set_requires_gradient_sync(True)
        return contextlib.nullcontext()
    if env.strategy == "ddp":
        return model.no_sync()
    model.set_requires_gradient_sync(False)
    return contextlib.nullcontext()


def clip_grad_norm(model: nn.Module, max_norm: float) -> float:
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


def mean_across_ranks(value: float, env: DistEnv) -> float:
    if not env.active:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=env.device if env.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return float(t.item()) / env.world_size


def max_across_ranks(value: int, env: DistEnv) -> int:
    if not env.active:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=env.device if env.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def gather_eval_outputs(logits: list[torch.Tensor], labels: list[torch.Tensor], loss_sum: float, count: int,
                        env: DistEnv) -> tuple[list[torch.Tensor], list[torch.Tensor], float, int]:
    """Every rank's evaluation outputs (CPU tensors per batch, summed loss, samples), joined in rank
    order on every rank (a collective)."""
    if not env.active:
        return logits, labels, loss_sum, count
    parts: list = [None] * env.world_size
    dist.all_gather_object(parts, (logits, labels, loss_sum, count))
    return ([t for p in parts for t in p[0]], [t for p in parts for t in p[1]],
            sum(p[2] for p in parts), sum(p[3] for p in parts))


def barrier(env: DistEnv) -> None:
    if env.active:
        dist.barrier()


def barrier_between_launched() -> None:
    """Waits until every process torchrun launched gets here, with or without a Trainer (e.g. until the
    main rank has written a file the others read next); outside a Trainer it joins a gloo process group
    for the barrier and leaves it. A single process returns at once."""
    if launch_env()[1] == 1:
        return
    if dist.is_initialized():
        dist.barrier()
        return
    join_process_group("gloo")
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


def model_state(model: nn.Module, env: DistEnv) -> dict[str, torch.Tensor]:
    """The full (unsharded) state dict on CPU; a collective under FSDP (call on every rank)."""
    if env.active and env.strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], env: DistEnv, strict: bool = True) -> None:
    if env.active and env.strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=strict))
        return
    missing, unexpected = unwrap(model).load_state_dict(state, strict=False)
    if unexpected or (strict and missing):
        raise ValueError(f"checkpoint does not fit the model: missing {missing[:10]}, unexpected {unexpected[:10]}")


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, env: DistEnv) -> dict:
    if env.active and env.strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
        return get_optimizer_state_dict(model, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return optimizer.state_dict()


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, env: DistEnv) -> None:
    if env.active and env.strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
        set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
        return
    optimizer.load_state_dict(state)


class ResumableSampler(DistributedSampler):
    """DistributedSampler (also for one process) that can start part-way through an epoch.

    The order of an epoch depends only on (seed, epoch), so skipping the first
    ``skip`` samples of this replica resumes the data stream exactly."""

    def __init__(self, dataset, env: DistEnv, shuffle: bool = True, seed: int = 0, drop_last: bool = True):
        super().__init__(dataset, num_replicas=env.world_size, rank=env.rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.skip = 0

    def set_position(self, epoch: int, skip: int) -> None:
        self.set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)
