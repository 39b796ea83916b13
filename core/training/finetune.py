"""The one fine-tune path every domain trains through: PEFT applied, the trainable parameters summarised,
the :class:`~.trainer.Trainer` run, and the trained model handed back whole and unwrapped.

::

    model, result, summary = finetune(model, TrainConfig(output_dir="run"), train_set, val_set, collate,
                                      metrics_fn, methods=PeftConfig([LoRAConfig(r=8)]))

The pipelines' ``domain_run.train_model`` and the GluonTS estimator's ``MambaEstimator.train`` both call
:func:`finetune`, so FSDP gathering, unwrapping and the run identity are done once, here.

A run's identity (see identity.py) holds a fingerprint of its training data (:func:`fingerprint_dataset`),
so a resume onto changed data is refused with the change named, unless ``train.resume_force``.
"""
from __future__ import annotations

import copy
import hashlib
import random
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn as nn

from . import distributed as dist_utils
from .trainer import Trainer, TrainConfig, TrainResult

FINGERPRINT_ITEMS = 20_000  # a larger training set is fingerprinted by this many evenly spaced items (and its size)


def finetune(model: nn.Module, config: TrainConfig, train_data, eval_data=None, collate_fn: Callable | None = None,
             metrics_fn: Callable | None = None, methods=None, train_anyway: Iterable[str] = (),
             data_fingerprint: str | None = None, announce: bool = True
             ) -> tuple[nn.Module | None, TrainResult, str]:
    """Fine-tunes ``model``; returns (the trained model, the TrainResult, the trainable-parameter summary).

    methods: a ``core.peft`` config (a PeftConfig, a method config or a list of them; None or empty: every
    parameter trains); train_anyway: parameter-name prefixes that train whatever ``methods`` freezes (e.g.
    a forecaster's new covariate maps, which a pretrained model did not have); data_fingerprint: what
    identifies the training data (None: :func:`fingerprint_dataset` of ``train_data``), recorded in the run
    identity of every checkpoint; announce: print the summary (the main process only).

    Under torchrun every rank calls this (training is collective) and gets the TrainResult; the model comes
    back whole and unwrapped on the device it trained on, so scoring and saving it afterwards are no
    collective and run on the main rank only. Under FSDP the shards are gathered here, on every rank, into
    a copy the main rank keeps (a :func:`skeleton` taken before sharding, whose parameters stay on the meta
    device until the gathered weights are assigned to them, so rank 0 never holds the model twice); the
    other ranks of an FSDP run get ``None`` for the model."""
    from mambatune.core import peft

    if methods is not None and getattr(methods, "methods", methods):
        peft.apply(model, methods)
    prefixes = tuple(train_anyway)
    if prefixes:
        for name, p in model.named_parameters():
            if name.startswith(prefixes):
                p.requires_grad_(True)
    on_main = dist_utils.is_main_process()
    summary = peft.trainable_summary(model, file=None)
    if announce and on_main:
        print(summary, flush=True)
    fingerprint = data_fingerprint if data_fingerprint is not None else fingerprint_dataset(train_data)
    whole = skeleton(model) if on_main and dist_utils.shards_parameters(config.distributed) else None
    trainer = Trainer(model, config, train_data, eval_data, collate_fn, metrics_fn,
                      identity_extra={"data_fingerprint": fingerprint})
    try:
        result = trainer.train()
        if trainer.env.active and trainer.env.strategy == "fsdp":
            state = trainer.full_state_dict()  # a collective: every rank; only rank 0 receives the tensors
            trained = None
            if whole is not None:
                whole.load_state_dict(state, assign=True)
                trained = trainer.precision.prepare(whole.to(trainer.device))
        else:
            trained = dist_utils.unwrap(trainer.model)
    finally:
        trainer.close()
    return trained, result, summary


def skeleton(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters are empty meta tensors (same shapes, dtypes, requires_grad and
    sharing; PEFT wrappers included); buffers are copied. Filled by ``load_state_dict(state, assign=True)``."""
    memo = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
            for p in model.parameters()}
    return copy.deepcopy(model, memo)


# -- the training data's fingerprint -------------------------------------------------------------

def fingerprint_dataset(dataset) -> str:
    """The first 16 hex digits of a SHA-256 over the training examples (their tensors, arrays, numbers and
    strings; up to FINGERPRINT_ITEMS evenly spaced ones, and the count). A dataset with a ``fingerprint()``
    method gives its own. The examples are read with torch's, NumPy's and Python's global random generators
    seeded alike (and restored afterwards), so a random augmentation drawn from them (e.g. a random reverse
    complement) makes the same draws every time: the fingerprint changes with the data, not with the draws.
    Cost: one read of each example (1.8 s for 10,000 DNA windows of 1 kb on this 2-core machine, busy)."""
    own = getattr(dataset, "fingerprint", None)
    if callable(own):
        return str(own())
    n = len(dataset)
    picks = range(n) if n <= FINGERPRINT_ITEMS else np.linspace(0, n - 1, FINGERPRINT_ITEMS).round().astype(int)
    digest = hashlib.sha256(f"{n} examples;".encode())
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        try:
            torch.manual_seed(0)
            np.random.seed(0)
            random.seed(0)
            for i in picks:
                feed(digest, dataset[int(i)])
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)
    return digest.hexdigest()[:16]


def fingerprint_of(value: Any) -> str:
    """The first 16 hex digits of a SHA-256 over a nested value (see :func:`feed`), e.g. a list of series."""
    digest = hashlib.sha256()
    feed(digest, value)
    return digest.hexdigest()[:16]


def feed(digest, value: Any) -> None:
    """Adds ``value`` to ``digest``: tensors and arrays by dtype, shape and bytes; mappings by sorted key;
    sequences item by item; other values by their ``repr`` when their type defines one (an object whose
    repr is only its address adds its type name alone, so the fingerprint never depends on memory layout)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        value = value.numpy()
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        digest.update(f"array {array.dtype} {array.shape};".encode())
        digest.update(array.tobytes() if array.dtype != object else repr(array.tolist()).encode())
    elif isinstance(value, dict):
        digest.update(f"dict {len(value)};".encode())
        for key in sorted(value, key=str):
            digest.update(f"{key}=".encode())
            feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__} {len(value)};".encode())
        for item in value:
            feed(digest, item)
    elif value is None or isinstance(value, (str, bytes, bool, int, float, np.generic)):
        digest.update(f"{type(value).__name__}:{value!r};".encode())
    elif type(value).__repr__ is not object.__repr__:
        digest.update(f"{type(value).__name__}:{value!r};".encode())
    else:
        digest.update(f"{type(value).__name__};".encode())
