"""Ensembles of genomics classifiers (``promoter``, binary or multiclass, and supervised ``vep`` with
``vep_method: finetune``): several models scored and used as one, by the mean of their class
probabilities (each member's RC-averaged first when ``data.rc_average``).

Two ways to make one, both giving the same run folder layout::

    config.yaml (data.ensemble: K)
    member-<k>/   one model each: model/, or adapter/ (+ base/), and member.json (its seeds, base model)
    results.json  report.md  plots/roc.png plots/pr.png (binary)

- ``data.ensemble: K`` in a promoter / vep recipe trains the K members one after another in one run
  (member k: ``model.seed + k``, ``train.seed + k``), through :func:`train_members` and
  :func:`member_probs`; the scratch twin (``data.scratch_baseline``) and the k-mer baseline are fitted
  once, as in a single run;
- ``mambatune ensemble RUN [RUN ...] --out DIR`` (:func:`combine_runs`) combines finished runs trained
  separately (e.g. one seed per GPU); a run that is itself an ensemble contributes its members. The runs
  must score the same windows the same way (:func:`check_compatible`).

results.json ``test`` holds the ensemble first (``"<method>, ensemble of K"``), then each member alone
(``"<method> member k"``), then the scratch twin and the baselines. ``mambatune eval / predict / export``
work on the folder (``genomics_verbs``).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from mambatune.domains.genomics import DNATokenizer

from . import domain_run
from . import ensemble_runs as shared
from . import genomics as g
from . import genomics_verbs as verbs
from . import genomics_report as report

# data settings that decide which windows are scored and how a model reads them
SCORED_KEYS = ("task", "promoter_classes", "window", "genome", "rc_average", "max_eval", "vep_method", "vep_radius")


# -- data.ensemble: K members in one run ---------------------------------------------------------

def check_setting(cfg) -> None:
    """``data.ensemble`` of a genomics DataConfig: a whole number >= 1; > 1 only where there is a
    classifier to repeat (promoter, vep with vep_method=finetune)."""
    k = cfg.ensemble
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"ensemble must be a whole number >= 1 (the number of models), got {k!r}")
    if k > 1 and cfg.task not in ("promoter", "vep"):
        raise ValueError(f"data.ensemble is for promoter and vep runs; a {cfg.task} run trains one model")
    if k > 1 and cfg.task == "vep" and cfg.vep_method != "finetune":
        raise ValueError("data.ensemble needs vep_method=finetune: an embedding run fits one logistic regression "
                         "on one language model's features, with no member seeds to vary")


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
    summary, member recipe, device) per member (the model is None on the other ranks of an FSDP run)."""
    from mambatune.core.checkpoints import save_pretrained

    size, on_main = recipe.data.ensemble, domain_run.is_main_process()
    out = []
    for k in range(size):
        folder, member = (run_dir, recipe) if size == 1 else \
            (run_dir / f"member-{k}", member_recipe(recipe, k, run_dir))
        if size > 1 and on_main:
            print(f"ensemble member {k + 1}/{size}: model seed {member.model.seed}, train seed {member.train.seed}",
                  flush=True)
        model = build(member, pretrained)
        if save_base and recipe.peft.methods and not pretrained and on_main:
            save_pretrained(model, folder / "base", meta={"note": "initial weights of a model trained from scratch"})
            DNATokenizer(recipe.data.k).save(folder / "base")
        model, result, summary = domain_run.train_model(model, member.train, data["train"], data["val"], collate,
                                                        metrics_fn, recipe.peft)
        device = None
        if on_main:
            g.save_trained(model, folder, recipe)
            if size > 1:
                write_member_info(folder, member, pretrained)
                device = next(model.parameters()).device
                model.cpu()  # off the accelerator while the next member trains
        out.append((model, result, summary, member, device))
    return out


def combine_text(recipe) -> str:
    strands = " (each member's own: the mean of its forward and reverse-complement logits, then softmax)" \
        if recipe.data.rc_average else ""
    return f"the mean of the members' softmax class probabilities{strands}"


def member_probs(recipe, pretrained: str | None, trained: list[tuple], score) -> tuple[dict, dict]:
    """({name: test probabilities}, extra results) on the main rank: one model's (``extra`` empty), or the
    ensemble's mean first, then each member's; ``extra`` then holds the ``ensemble`` and ``training``
    records. ``score(model)`` gives a model's test probabilities (n, classes)."""
    name = g.main_name(recipe, pretrained)
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
    ensemble = {"size": len(trained), "method": name, "combine": combine_text(recipe), "members": records,
                "note": "The ROC / PR curves show the ensemble, not its members." if probs[0].shape[1] == 2 else ""}
    training = shared.training_record([g.training_summary(t[1]) for t in trained], [t[3].model.seed for t in trained])
    return out, {"ensemble": ensemble, "training": training}


def ensemble_text(results: dict) -> str:
    """The report's paragraph on an ensemble (empty for one model)."""
    return shared.ensemble_text(results, "models")


def write_run_report(run_dir: Path, recipe, results: dict) -> None:
    """The report (see ``ensemble_runs.write_run_report``)."""
    shared.write_run_report(run_dir, recipe, results, report.write_report)


# -- `mambatune ensemble`: finished runs combined ------------------------------------------------

def open_source(run) -> tuple:
    """(folder, recipe, results) of a finished promoter or supervised (finetune) vep run, or a clear error."""
    folder, recipe, results = verbs.open_run(run)
    cfg = recipe.data
    if cfg.path:
        raise ValueError(f"mambatune ensemble combines runs on the demo data; {folder} ran on data.path={cfg.path!r}, "
                         "which it does not read yet")
    if cfg.task not in ("promoter", "vep") or (cfg.task == "vep" and cfg.vep_method != "finetune"):
        what = f"{cfg.task} run" + (f" with vep_method={cfg.vep_method}" if cfg.task == "vep" else "")
        raise ValueError(f"mambatune ensemble combines genomics promoter runs and vep runs with vep_method=finetune; "
                         f"{folder} is a {what}")
    return folder, recipe, results


def check_compatible(opened: list[tuple]) -> None:
    """The runs score the same windows read the same way; else a ValueError naming the setting and the runs."""
    shared.check_settings(opened, SCORED_KEYS, "cannot combine runs that score different windows or score them "
                          "differently: data.{key} is {a!r} in {first} but {b!r} in {folder}; members must be "
                          "scored on the same windows, read the same way")


def combine_runs(runs: list, out) -> Path:
    """Combines finished genomics promoter / vep (finetune) runs into one ensemble run folder ``out`` (see
    the module docstring); returns it. The members are copied, rescored on the first run's test windows
    and averaged; the scratch twin and baseline rows are copied from the first run's results.json."""
    start = time.time()
    opened, members, out, recipe = shared.gather(runs, out, open_source, check_compatible, verbs.member_dirs,
                                               "models", train_seed=True)
    first_results = opened[0][2]
    windows, y = test_windows(recipe)  # before anything is written: the data must still be there

    def write():
        shared.copy_members(out, recipe, members, train_seed=True)
        results = score_combined(out, recipe, first_results, members, windows, y)
        results["total_seconds"] = time.time() - start
        shared.finish_combined(out, recipe, results, opened, members, combine_text(recipe), report.write_report,
                             train_seed=True)
    shared.write_combined_run(out, write)
    return out


def test_windows(recipe) -> tuple:
    """(what the models read: promoter windows, or (refs, alts) of the variants; labels) of the test split."""
    cfg = recipe.data
    if cfg.task == "promoter":
        x, y = g.promoter_splits(cfg)["test"]
        return x, np.asarray(y)
    v = g.variant_splits(cfg)["test"]
    return (v["ref"], v["alt"]), np.asarray(v["labels"])


def score_combined(out: Path, recipe, first_results: dict, members: list[dict], windows, y) -> dict:
    """results.json of a combined ensemble: the copied members scored on the first run's test windows."""
    probs = []
    for k, m in enumerate(members):  # one member loaded at a time
        probs.append(verbs.classifier_probs(out / f"member-{k}", m["recipe"], {"base_model": m["base_model"]},
                                            windows))
    method = shared.combined_method(members)
    named = {f"{method}, ensemble of {len(members)}": np.mean(probs, axis=0)}
    records = []
    for k, (m, p) in enumerate(zip(members, probs)):
        name = f"{m['method']} member {k}"
        named[name] = p
        records.append({"member": k, "name": name, **shared.member_record(k, m, method, train_seed=True)})
    binary = probs[0].shape[1] == 2
    # the curves of the ensemble and its members (the baselines' are in the first run's plots/)
    results = g.finish_classification(out, recipe, y, named, binary, None, "", first_results.get("sizes"))
    baselines = shared.first_baselines(first_results)
    results["test"].update(baselines)
    first_run = members[0]["source_run"]
    curves = "; the ROC / PR curves here are the ensemble's and each member's" if binary else ""
    note = (f"The scratch twin and baseline rows are copied from {first_run}/results.json, not refitted: they were "
            f"scored on the same test windows (their curves are in {first_run}/plots){curves}.") if baselines else \
        ("The ROC / PR curves here are the ensemble's and each member's." if binary else "")
    ensemble = {"size": len(members), "method": method, "combine": combine_text(recipe), "members": records,
                "note": note}
    results.update(baselines=baselines, ensemble=ensemble, base_model=first_results.get("base_model"),
                   training=shared.training_record([m["training"] for m in members], [r["seed"] for r in records]),
                   summary=first_results.get("summary"))
    for key in ("long_windows", "skipped_not_snv"):
        if key in first_results:
            results[key] = first_results[key]
    return results
