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
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from mambatune.core.atomic import atomic_write_text

from . import domain_run
from . import genomics as g
from . import genomics_verbs as verbs

ENSEMBLE_INFO = "ensemble.json"
MODEL_FOLDERS = ("model", "adapter", "base")
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
    """``member-<k>/member.json``: what rebuilding the member needs beyond its model folders (its model
    section: seed, head, architecture; the pretrained base) and where it came from."""
    info = {"seed": member.model.seed, "train_seed": member.train.seed, "base_model": base_model,
            "model": dataclasses.asdict(member.model), **extra}
    member_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(member_dir / verbs.MEMBER_INFO, json.dumps(info, indent=2) + "\n")


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
    training = training_record([g.training_summary(t[1]) for t in trained], [t[3].model.seed for t in trained])
    return out, {"ensemble": ensemble, "training": training}


def training_record(summaries: list[dict | None], seeds: list[int]) -> dict | None:
    """The training summary of an ensemble: totals, and each member's own under ``members``."""
    done = [s for s in summaries if s]
    if not done:
        return None
    return {"steps": sum(s["steps"] for s in done), "best_step": [s["best_step"] for s in done],
            "stopped_early": any(s["stopped_early"] for s in done), "seconds": sum(s["seconds"] for s in done),
            "last_eval": None, "members": [{"seed": seed, **(s or {})} for s, seed in zip(summaries, seeds)]}


def ensemble_text(results: dict) -> str:
    """The report's paragraph on an ensemble (empty for one model)."""
    ens = results.get("ensemble")
    if not ens:
        return ""
    seeds = ", ".join(str(m["seed"]) for m in ens["members"])
    text = (f"\n\nEnsemble of {ens['size']} models ({ens['method']}; model seeds {seeds}; saved in `member-<k>/`), "
            f"scored by {ens['combine']}: the ensemble row scores those mean probabilities, each `member k` row "
            "that member alone.")
    return text + (f" {ens['note']}" if ens.get("note") else "")


def write_run_report(run_dir: Path, recipe, results: dict) -> None:
    """The report; for an ensemble, ``results.json``'s ``baselines`` first loses the member rows
    (``run_task`` counts every row after the first as a baseline)."""
    if results.get("ensemble"):
        members = {m["name"] for m in results["ensemble"]["members"]}
        results["baselines"] = {k: v for k, v in results["baselines"].items() if k not in members}
        atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2, default=float) + "\n")
    g.write_report(run_dir, recipe, results)


# -- `mambatune ensemble`: finished runs combined ------------------------------------------------

def open_source(run) -> tuple:
    """(folder, recipe, results) of a finished promoter or supervised (finetune) vep run, or a clear error."""
    folder, recipe, results = verbs.open_run(run)
    cfg = recipe.data
    if cfg.task not in ("promoter", "vep") or (cfg.task == "vep" and cfg.vep_method != "finetune"):
        what = f"{cfg.task} run" + (f" with vep_method={cfg.vep_method}" if cfg.task == "vep" else "")
        raise ValueError(f"mambatune ensemble combines genomics promoter runs and vep runs with vep_method=finetune; "
                         f"{folder} is a {what}")
    return folder, recipe, results


def check_compatible(runs: list[tuple]) -> None:
    """The runs score the same windows read the same way; else a ValueError naming the setting and the runs."""
    first, recipe, _ = runs[0]
    keys = SCORED_KEYS + (("seed",) if recipe.data.max_eval is not None else ())  # seed picks the max_eval subset
    for folder, other, _ in runs[1:]:
        for key in keys:
            a, b = getattr(recipe.data, key), getattr(other.data, key)
            if a != b:
                raise ValueError(f"cannot combine runs that score different windows or score them differently: "
                                 f"data.{key} is {a!r} in {first} but {b!r} in {folder}; members must be scored on "
                                 "the same windows, read the same way")


def source_members(folder: Path, recipe, results: dict) -> list[dict]:
    """The models a run contributes: itself, or each of its members if it is an ensemble."""
    method = results["ensemble"]["method"] if results.get("ensemble") else next(iter(results["test"]))
    members = verbs.member_dirs(folder, recipe)
    if not members:
        return [{"folder": folder, "recipe": recipe, "base_model": results.get("base_model"), "method": method,
                 "source_run": str(folder), "source_member": None, "training": results.get("training")}]
    trainings = (results.get("training") or {}).get("members") or [None] * len(members)
    out = []
    for k, member in enumerate(members):
        member_rec, base = verbs.member_model(member, k, recipe, results)
        training = {t: v for t, v in (trainings[k] or {}).items() if t != "seed"} or None
        out.append({"folder": member, "recipe": member_rec, "base_model": base["base_model"], "method": method,
                    "source_run": str(folder), "source_member": member.name, "training": training})
    return out


def check_out(out: Path, runs: list[tuple]) -> None:
    for folder, *_ in runs:
        if out.resolve() == folder.resolve():
            raise ValueError(f"--out {out} is one of the runs to combine; choose a new folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} exists and is not an empty folder; choose a new folder (or remove it)")


def combine_runs(runs: list, out) -> Path:
    """Combines finished genomics promoter / vep (finetune) runs into one ensemble run folder ``out`` (see
    the module docstring); returns it. The members are copied, rescored on the first run's test windows
    and averaged; the scratch twin and baseline rows are copied from the first run's results.json."""
    start = time.time()
    if not runs:
        raise ValueError("mambatune ensemble needs the run folders to combine")
    seen = [Path(r).resolve() for r in runs]
    repeated = sorted({str(r) for r in runs if seen.count(Path(r).resolve()) > 1})
    if repeated:
        raise ValueError(f"run given more than once: {', '.join(repeated)}")
    opened = [open_source(r) for r in runs]
    check_compatible(opened)
    members = [m for run in opened for m in source_members(*run)]
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two models; {runs[0]} is one. Give more runs")
    out = Path(out)
    check_out(out, opened)
    alike = [(m["method"], m["recipe"].model.seed, m["recipe"].train.seed) for m in members]
    if len(set(alike)) < len(alike):
        print(f"mambatune ensemble: members of the same method share their model and train seeds ({alike}); "
              "trained alike from the same seeds, they add little", file=sys.stderr)
    first, first_recipe, first_results = opened[0]
    recipe = dataclasses.replace(first_recipe, data=dataclasses.replace(first_recipe.data, ensemble=len(members)),
                                 train=dataclasses.replace(first_recipe.train, output_dir=str(out)))
    windows, y = test_windows(recipe)  # before anything is written: the data must still be there
    existed = out.exists()
    try:
        write_combined(out, recipe, members)
        results = score_combined(out, recipe, first_results, members, windows, y)
        results["total_seconds"] = time.time() - start
        info = {"members": [{"member": k, "dir": f"member-{k}", "source_run": m["source_run"],
                             "source_member": m["source_member"], "seed": m["recipe"].model.seed,
                             "train_seed": m["recipe"].train.seed} for k, m in enumerate(members)],
                "runs": [{"run": str(folder), "seeds": [m["recipe"].model.seed for m in members
                                                        if m["source_run"] == str(folder)]} for folder, *_ in opened],
                "combine": combine_text(recipe), "baselines_from": str(first)}
        atomic_write_text(out / ENSEMBLE_INFO, json.dumps(info, indent=2) + "\n")
        g.write_report(out, recipe, results)
        atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=float) + "\n")  # last: done
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # it was new or empty (check_out): leave no half-made run
        if existed:
            out.mkdir(exist_ok=True)
        raise
    return out


def write_combined(out: Path, recipe, members: list[dict]) -> None:
    """The member folders (copied model folders + member.json) and config.yaml."""
    from .recipe import save_resolved
    out.mkdir(parents=True, exist_ok=True)
    for k, m in enumerate(members):
        dest = out / f"member-{k}"
        for name in MODEL_FOLDERS:
            if (m["folder"] / name).is_dir():
                shutil.copytree(m["folder"] / name, dest / name)
        write_member_info(dest, m["recipe"], m["base_model"], source_run=m["source_run"],
                          source_member=m["source_member"])
    save_resolved(recipe, out)


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
    methods = {m["method"] for m in members}
    method = methods.pop() if len(methods) == 1 else "mamba (mixed methods)"
    named = {f"{method}, ensemble of {len(members)}": np.mean(probs, axis=0)}
    records = []
    for k, (m, p) in enumerate(zip(members, probs)):
        name = f"{m['method']} member {k}"
        named[name] = p
        records.append({"member": k, "name": name, "seed": m["recipe"].model.seed, "train_seed": m["recipe"].train.seed,
                        "dir": f"member-{k}", "source_run": m["source_run"], "source_member": m["source_member"],
                        **({"method": m["method"]} if m["method"] != method else {})})
    binary = probs[0].shape[1] == 2
    # the curves of the ensemble and its members (the baselines' are in the first run's plots/)
    results = g.finish_classification(out, recipe, y, named, binary, None, "", first_results.get("sizes"))
    first_test = first_results["test"]
    skip = {next(iter(first_test))} | {m["name"] for m in (first_results.get("ensemble") or {}).get("members", [])}
    baselines = {k: v for k, v in first_test.items() if k not in skip}
    results["test"].update(baselines)
    first_run = members[0]["source_run"]
    curves = "; the ROC / PR curves here are the ensemble's and each member's" if binary else ""
    note = (f"The scratch twin and baseline rows are copied from {first_run}/results.json, not refitted: they were "
            f"scored on the same test windows (their curves are in {first_run}/plots){curves}.") if baselines else \
        ("The ROC / PR curves here are the ensemble's and each member's." if binary else "")
    ensemble = {"size": len(members), "method": method, "combine": combine_text(recipe), "members": records,
                "note": note}
    results.update(baselines=baselines, ensemble=ensemble, base_model=first_results.get("base_model"),
                   training=training_record([m["training"] for m in members], [r["seed"] for r in records]),
                   summary=first_results.get("summary"))
    for key in ("long_windows", "skipped_not_snv"):
        if key in first_results:
            results[key] = first_results[key]
    return results
