"""Ensembles of genomics classifiers (``promoter``, binary or multiclass, and supervised ``vep`` with
``vep_method: finetune``): several models scored and used as one, by the mean of their class
probabilities (each member's RC-averaged first when ``data.rc_average``).

Two ways to make one, both giving the same run folder layout::

    config.yaml (data.ensemble: K)
    member-<k>/   one model each: model/, or adapter/ (+ base/), and member.json (its seeds, base model)
    results.json  report.md  plots/roc.png plots/pr.png (binary)

- ``data.ensemble: K`` in a promoter / vep recipe trains the K members one after another in one run
  (member k: ``model.seed + k``, ``train.seed + k``), through ``members.train_members`` and
  ``members.member_probs``; the scratch twin (``data.scratch_baseline``) and the k-mer baseline are fitted
  once, as in a single run;
- ``mambatune ensemble RUN [RUN ...] --out DIR`` (:func:`combine_runs`) combines finished runs trained
  separately (e.g. one seed per GPU); a run that is itself an ensemble contributes its members. The runs
  must score the same windows the same way (:func:`check_compatible`).

results.json ``test`` holds the ensemble first (``"<method>, ensemble of K"``), then each member alone
(``"<method> member k"``), then the scratch twin and the baselines. ``mambatune eval / predict / export``
work on the folder (``genomics.verbs``).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import domain_run
from .. import ensemble_runs as shared
from .data import promoter_splits, variant_splits
from .members import combine_text
from .report import write_report
from .scoring import classifier_probs, member_dirs, open_run
from .tasks import finish_classification

# data settings that decide which windows are scored and how a model reads them
SCORED_KEYS = ("task", "promoter_classes", "window", "genome", "rc_average", "max_eval", "vep_method", "vep_radius")


def open_source(run) -> tuple:
    """(folder, recipe, results) of a finished promoter or supervised (finetune) vep run, or a clear error."""
    folder, recipe, results = open_run(run)
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


@domain_run.head_from_the_run()
def combine_runs(runs: list, out) -> Path:
    """Combines finished genomics promoter / vep (finetune) runs into one ensemble run folder ``out`` (see
    the module docstring); returns it. The members are copied, rescored on the first run's test windows
    and averaged; the scratch twin and baseline rows are copied from the first run's results.json."""
    start = time.time()
    opened, members, out, recipe = shared.gather(runs, out, open_source, check_compatible, member_dirs,
                                                 "models", train_seed=True)
    first_results = opened[0][2]
    windows, y = test_windows(recipe)  # before anything is written: the data must still be there

    def write():
        shared.copy_members(out, recipe, members, train_seed=True)
        results = score_combined(out, recipe, first_results, members, windows, y)
        results["total_seconds"] = time.time() - start
        shared.finish_combined(out, recipe, results, opened, members, combine_text(recipe), write_report,
                               train_seed=True)
    shared.write_combined_run(out, write)
    return out


def test_windows(recipe) -> tuple:
    """(what the models read: promoter windows, or (refs, alts) of the variants; labels) of the test split."""
    cfg = recipe.data
    if cfg.task == "promoter":
        x, y = promoter_splits(cfg)["test"]
        return x, np.asarray(y)
    v = variant_splits(cfg)["test"]
    return (v["ref"], v["alt"]), np.asarray(v["labels"])


def score_combined(out: Path, recipe, first_results: dict, members: list[dict], windows, y) -> dict:
    """results.json of a combined ensemble: the copied members scored on the first run's test windows."""
    probs = []
    for k, m in enumerate(members):  # one member loaded at a time
        probs.append(classifier_probs(out / f"member-{k}", m["recipe"], {"base_model": m["base_model"]}, windows))
    method = shared.combined_method(members)
    named = {f"{method}, ensemble of {len(members)}": np.mean(probs, axis=0)}
    records = []
    for k, (m, p) in enumerate(zip(members, probs)):
        name = f"{m['method']} member {k}"
        named[name] = p
        records.append({"member": k, "name": name, **shared.member_record(k, m, method, train_seed=True)})
    binary = probs[0].shape[1] == 2
    # the curves of the ensemble and its members (the baselines' are in the first run's plots/)
    results = finish_classification(out, recipe, y, named, binary, None, "", first_results.get("sizes"))
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
