"""``data.ensemble: K`` in a genomics promoter / vep (finetune) recipe, and the one model of K = 1: the
members trained one after another in one run (member k: ``model.seed + k``, ``train.seed + k``, saved in
``member-<k>/``), scored by the mean of their class probabilities (a regressor's: of their predictions;
each member's RC-averaged first when ``data.rc_average``); the run report. A user's sequences
(``genomics.user_tasks``) and VCF (``genomics.user_vep``) train their members here too. Finished runs are combined by ``mambatune ensemble``
(``genomics.ensemble``) into the same folder layout.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from mambatune.core.checkpoints import save_pretrained
from mambatune.domains.genomics import DNATokenizer

from .. import domain_run
from .. import ensemble_runs as shared
from .models import main_name, record_model, save_trained, training_summary
from .report import write_report


def member_recipe(recipe, k: int, run_dir: Path):
    """Member k's recipe: model seed + k, trainer seed + k, its output under ``member-<k>/``."""
    return dataclasses.replace(
        recipe, model=dataclasses.replace(recipe.model, seed=recipe.model.seed + k),
        train=dataclasses.replace(recipe.train, output_dir=str(run_dir / f"member-{k}"), seed=recipe.train.seed + k))


def write_member_info(member_dir: Path, member, base_model: str | None, **extra) -> None:
    """``member-<k>/member.json`` (see ``ensemble_runs.write_member_info``), with the member's train seed."""
    shared.write_member_info(member_dir, member, base_model, train_seed=True, **extra)


def train_members(recipe, run_dir: Path, pretrained: str | None, build, data: dict, collate, metrics_fn,
                  save_base: bool = False) -> list[tuple]:
    """Trains the main model (``data.ensemble`` 1: saved at the run's top, as always) or the K members
    one after another (each saved in ``member-<k>/``, then kept on the CPU until scored). Every rank
    trains; the main rank saves. ``build(recipe, pretrained)`` makes a fresh model; ``save_base``: a
    PEFT model from scratch keeps its initial weights in ``base/``. Returns (model, TrainResult,
    summary, member recipe, device) per member (the model is None on the other ranks of an FSDP run);
    config.yaml records the first model as built (``models.record_model``)."""
    size, on_main = recipe.data.ensemble, domain_run.is_main_process()
    out = []
    for k in range(size):
        folder, member = (run_dir, recipe) if size == 1 else \
            (run_dir / f"member-{k}", member_recipe(recipe, k, run_dir))
        if size > 1 and on_main:
            print(f"ensemble member {k + 1}/{size}: model seed {member.model.seed}, train seed {member.train.seed}",
                  flush=True)
        model = build(member, pretrained)
        if k == 0:  # config.yaml: the model as built (every member has that shape)
            record_model(recipe, run_dir, model, pretrained)
        if save_base and recipe.peft.methods and not pretrained and on_main:
            save_pretrained(model, folder / "base", meta={"note": "initial weights of a model trained from scratch"})
            DNATokenizer(recipe.data.k).save(folder / "base")
        model, result, summary = domain_run.train_model(model, member.train, data["train"], data["val"], collate,
                                                        metrics_fn, recipe.peft)
        device = None
        if on_main:
            save_trained(model, folder, recipe)
            if size > 1:
                write_member_info(folder, member, pretrained)
                device = next(model.parameters()).device
                model.cpu()  # off the accelerator while the next member trains
        out.append((model, result, summary, member, device))
    return out


# what the members' outputs are, per kind of head, and how a member reads both strands (data.rc_average)
OUTPUTS = {"classes": "softmax class probabilities", "multilabel": "per-class sigmoid probabilities",
           "regression": "predictions, on the target's own scale"}
STRANDS = {"classes": "then softmax", "multilabel": "then sigmoid", "regression": "then rescaled"}


def combine_text(recipe, outputs: str = "classes") -> str:
    """How an ensemble's members combine: the mean of their ``outputs`` (a key of :data:`OUTPUTS`: a softmax
    classifier's, a multi-label one's or a regressor's), each member's RC-averaged first when ``data.rc_average``."""
    strands = (f" (each member's own: the mean of its forward and reverse-complement logits, {STRANDS[outputs]})"
               if recipe.data.rc_average else "")
    return f"the mean of the members' {OUTPUTS[outputs]}{strands}"


def member_probs(recipe, pretrained: str | None, trained: list[tuple], score,
                 outputs: str = "classes") -> tuple[dict, dict]:
    """({name: test outputs}, extra results) on the main rank: one model's (``extra`` empty), or the
    ensemble's mean first, then each member's; ``extra`` then holds the ``ensemble`` and ``training``
    records. ``score(model)`` gives a model's test outputs: class probabilities (n, classes), or for a
    regressor (``outputs="regression"``) predictions (n,); ``outputs``: see :func:`combine_text`."""
    name = main_name(recipe, pretrained)
    if len(trained) == 1:
        return {name: score(trained[0][0])}, {}
    probs = []
    for model, _, _, _, device in trained:  # one member on the accelerator at a time
        probs.append(score(model.to(device)))
        model.cpu()
    out = {f"{name}, ensemble of {len(trained)}": np.mean(probs, axis=0)}
    records = []
    for k, (p, (_, _, _, member, _)) in enumerate(zip(probs, trained)):
        out[f"{name} member {k}"] = p
        records.append({"member": k, "name": f"{name} member {k}", "seed": member.model.seed,
                        "train_seed": member.train.seed, "dir": f"member-{k}"})
    binary = outputs == "classes" and probs[0].shape[1] == 2
    ensemble = {"size": len(trained), "method": name, "combine": combine_text(recipe, outputs), "members": records,
                "note": "The ROC / PR curves show the ensemble, not its members." if binary else ""}
    training = shared.training_record([training_summary(t[1]) for t in trained], [t[3].model.seed for t in trained])
    return out, {"ensemble": ensemble, "training": training}


def write_run_report(run_dir: Path, recipe, results: dict, report=write_report) -> None:
    """The report, ``report(run_dir, recipe, results)`` (the demo tasks' by default; see
    ``ensemble_runs.write_run_report``)."""
    shared.write_run_report(run_dir, recipe, results, report)
