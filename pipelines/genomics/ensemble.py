"""Ensembles of genomics classifiers (``promoter``, binary or multiclass, and supervised ``vep`` with
``vep_method: finetune``; on a user's sequences also multi-label classifiers and regressors): several
models scored and used as one, by the mean of their class probabilities (a regressor's: of their
predictions; each member's RC-averaged first when ``data.rc_average``).

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
  must score the same windows the same way (:func:`check_compatible`), and runs on a user's data
  (``data.path``: sequences of any label kind, or a labelled VCF) must have been trained on the same data
  (:func:`check_same_data`, :func:`check_unchanged`); their folder also gets ``splits.csv`` and the
  ensemble's ``predictions_test.csv``, as a ``data.ensemble`` run on that data does.

results.json ``test`` holds the ensemble first (``"<method>, ensemble of K"``), then each member alone
(``"<method> member k"``), then the scratch twin and the baselines. ``mambatune eval / predict / export``
work on the folder (``genomics.verbs``).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from mambatune.domains.genomics.metrics import binary_metrics, plot_roc_pr

from .. import domain_run
from .. import ensemble_runs as shared
from .data import promoter_splits, variant_splits
from .members import combine_text
from .report import write_report
from .scoring import classifier_probs, member_dirs, open_run
from .tasks import finish_classification
from .user_data import load_user_data
from .user_tasks import OUTPUTS, score_test_outputs, write_report as write_sequences_report
from .user_verbs import model_outputs
from .user_vep import labelled_parts, read_user_variants, write_predictions as write_variant_predictions
from .user_vep import write_report as write_variants_report

# data settings that decide which windows are scored and how a model reads them
SCORED_KEYS = ("task", "promoter_classes", "window", "genome", "rc_average", "max_eval", "vep_method", "vep_radius")
# and, for runs on a user's files, which examples are read, how, and how they are split
USER_KEYS = ("path", "test_path", "format", "sequence_column", "label_column", "id_column", "label_kind",
             "label_separator", "positive_label", "max_length", "too_long", "k", "labels_path", "header_label",
             "flank", "on_invalid", "label_info", "encoding", "split_column", "val_fraction", "test_fraction",
             "stratify", "group_column", "cv_folds", "fold", "seed", "max_train")


def open_source(run) -> tuple:
    """(folder, recipe, results) of a finished promoter or supervised (finetune) vep run, or a clear error."""
    folder, recipe, results = open_run(run)
    cfg = recipe.data
    if cfg.task not in ("promoter", "vep") or (cfg.task == "vep" and cfg.vep_method != "finetune"):
        what = f"{cfg.task} run" + (f" with vep_method={cfg.vep_method}" if cfg.task == "vep" else "")
        raise ValueError(f"mambatune ensemble combines genomics promoter runs and vep runs with vep_method=finetune; "
                         f"{folder} is a {what}")
    return folder, recipe, results


def check_compatible(opened: list[tuple]) -> None:
    """The runs score the same windows read the same way, and runs on a user's files were trained and
    scored on the same examples of the same files (:func:`check_same_data`); else a ValueError naming the
    setting and the runs."""
    first, recipe, _ = opened[0]
    for folder, other, _ in opened[1:]:
        if bool(other.data.path) != bool(recipe.data.path):
            user, demo = (first, folder) if recipe.data.path else (folder, first)
            raise ValueError(f"cannot combine a run on a user's data with one on the demo data: {user} ran on "
                             f"data.path={recipe.data.path or other.data.path!r}, {demo} on the demo "
                             "data (data.path unset); members must be trained and scored on the same data")
    shared.check_settings(opened, SCORED_KEYS, "cannot combine runs that score different windows or score them "
                          "differently: data.{key} is {a!r} in {first} but {b!r} in {folder}; members must be "
                          "scored on the same windows, read the same way")
    if recipe.data.path:
        check_same_data(opened)


def check_same_data(opened: list[tuple]) -> None:
    """Runs on a user's files: the same data keys (:data:`USER_KEYS`), the same rows in each split
    (``splits.csv``) and the same examples (the data fingerprint results.json records of each split)."""
    shared.check_settings(opened, USER_KEYS, "cannot combine runs trained on different data: data.{key} is {a!r} "
                          "in {first} but {b!r} in {folder}; members must be trained and scored on the same "
                          "examples of the same files, read and split the same way")
    first, _, results = opened[0]
    for folder, _, other in opened[1:]:
        mine, theirs = first / "splits.csv", folder / "splits.csv"
        if mine.is_file() != theirs.is_file() or (mine.is_file() and mine.read_bytes() != theirs.read_bytes()):
            raise ValueError(f"cannot combine runs whose data were split differently: {first}/splits.csv and "
                             f"{folder}/splits.csv differ; members must be trained and scored on the same split")
        if other["data"].get("labels") != results["data"].get("labels"):
            raise ValueError(f"cannot combine runs with different labels: {first} has {results['data']['labels']}, "
                             f"{folder} has {other['data']['labels']} (results.json data.labels)")
        a, b = results["data"].get("fingerprint") or {}, other["data"].get("fingerprint") or {}
        differs = [split for split in a if split in b and a[split] != b[split]]
        if differs:
            raise ValueError(f"cannot combine runs trained on different data: the {differs[0]} split's data "
                             f"fingerprint is {a[differs[0]]} in {first} but {b[differs[0]]} in {folder} (results.json "
                             f"data.fingerprint): the file(s) at data.path={opened[0][1].data.path!r} changed between "
                             "the runs; train the runs again on one version of the data")


def check_unchanged(recipe, recorded: dict, now: dict) -> None:
    """The user's data, read again now, has the fingerprints the first run recorded (a run made before they
    were recorded has none: splits.csv alone was compared)."""
    differs = [split for split in recorded if split in now and recorded[split] != now[split]]
    if differs:
        raise ValueError(f"data.path={recipe.data.path!r} changed since the runs were trained: the {differs[0]} "
                         f"split's data fingerprint is {now[differs[0]]} now but {recorded[differs[0]]} in the runs' "
                         "results.json; combine the runs while their data is as they read it (or train them again)")


@domain_run.head_from_the_run()
def combine_runs(runs: list, out) -> Path:
    """Combines finished genomics promoter / vep (finetune) runs into one ensemble run folder ``out`` (see
    the module docstring); returns it. The members are copied, rescored on the first run's test windows
    and averaged; the scratch twin and baseline rows are copied from the first run's results.json."""
    start = time.time()
    opened, members, out, recipe = shared.gather(runs, out, open_source, check_compatible, member_dirs,
                                                 "models", train_seed=True)
    first, _, first_results = opened[0]
    if not recipe.data.path:
        windows, y = test_windows(recipe)  # before anything is written: the data must still be there
        score, combine, report = (lambda: score_combined(out, recipe, first_results, members, windows, y),
                                  combine_text(recipe), write_report)
    elif first_results["data"].get("format") == "vcf":
        data = user_variants(recipe, first_results)
        score, combine, report = (lambda: score_user_variants(out, recipe, first_results, members, data),
                                  combine_text(recipe), write_variants_report)
    else:
        data = load_user_data(recipe.data)
        check_unchanged(recipe, first_results["data"].get("fingerprint") or {}, data.fingerprint())
        score, combine, report = (lambda: score_user_sequences(out, recipe, first_results, members, data),
                                  combine_text(recipe, OUTPUTS[data.space.kind]), write_sequences_report)

    def write():
        shared.copy_members(out, recipe, members, train_seed=True)
        if (first / "splits.csv").is_file():  # which row went to which split, as in every run on a user's data
            shutil.copyfile(first / "splits.csv", out / "splits.csv")
        results = score()
        results["total_seconds"] = time.time() - start
        shared.finish_combined(out, recipe, results, opened, members, combine, report, train_seed=True)
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
    probs = [classifier_probs(out / f"member-{k}", m["recipe"], {"base_model": m["base_model"]}, windows)
             for k, m in enumerate(members)]  # one member loaded at a time
    binary = probs[0].shape[1] == 2
    named, ensemble = combined_outputs(first_results, members, probs, combine_text(recipe), binary, "test windows")
    # the curves of the ensemble and its members (the baselines' are in the first run's plots/)
    results = finish_classification(out, recipe, y, named, binary, None, "", first_results.get("sizes"))
    baselines = shared.first_baselines(first_results)
    results["test"].update(baselines)
    results.update(baselines=baselines, ensemble=ensemble, base_model=first_results.get("base_model"),
                   training=shared.training_record([m["training"] for m in members],
                                                   [r["seed"] for r in ensemble["members"]]),
                   summary=first_results.get("summary"))
    for key in ("long_windows", "skipped_not_snv"):
        if key in first_results:
            results[key] = first_results[key]
    return results


def combined_outputs(first_results: dict, members: list[dict], outputs: list, combine: str, curves: bool,
                     scored_on: str) -> tuple[dict, dict]:
    """({model: test outputs}: the ensemble's (the mean of ``outputs``) first, then each member's; results.json's
    ``ensemble`` record) of combined members; ``curves``: the run draws ROC / PR curves of the ensemble and each
    member; ``scored_on``: what the first run's copied baseline rows were scored on."""
    method = shared.combined_method(members)
    records = [{"member": k, "name": f"{m['method']} member {k}",
                **shared.member_record(k, m, method, train_seed=True)} for k, m in enumerate(members)]
    named = {f"{method}, ensemble of {len(members)}": np.mean(outputs, axis=0)}
    named.update({r["name"]: o for r, o in zip(records, outputs)})
    first_run = members[0]["source_run"]
    here = "the ROC / PR curves here are the ensemble's and each member's"
    if shared.first_baselines(first_results):
        note = (f"The scratch twin and baseline rows are copied from {first_run}/results.json, not refitted: they were "
                f"scored on the same {scored_on}" + (f" (their curves are in {first_run}/plots); {here}" if curves
                                                     else "") + ".")
    else:
        note = f"{here[0].upper()}{here[1:]}." if curves else ""
    return named, {"size": len(members), "method": method, "combine": combine, "members": records, "note": note}


# -- runs on a user's files ----------------------------------------------------------------------

def combined_results(first_results: dict, members: list[dict], metrics: dict, ensemble: dict) -> dict:
    """results.json of a combined run on a user's data: the first run's record of the data, the ensemble's and
    its members' test metrics, then the first run's baseline rows (copied)."""
    baselines = shared.first_baselines(first_results)
    results = {k: v for k, v in first_results.items() if k not in ("test", "baselines", "ensemble", "training",
                                                                    "total_seconds")}
    results.update(test={**metrics, **baselines}, baselines=baselines, ensemble=ensemble,
                   training=shared.training_record([m["training"] for m in members],
                                                   [r["seed"] for r in ensemble["members"]]))
    return results


def score_user_sequences(out: Path, recipe, first_results: dict, members: list[dict], data) -> dict:
    """The copied members' outputs on the test split of the user's sequences (read again, split as in the
    runs), their mean, metrics, curves and ``predictions_test.csv``."""
    test = data.sequences["test"]
    outputs = [model_outputs(out / f"member-{k}", m["recipe"], first_results | {"base_model": m["base_model"]}, test)
               for k, m in enumerate(members)]  # one member loaded at a time
    named, ensemble = combined_outputs(first_results, members, outputs, combine_text(recipe, OUTPUTS[data.space.kind]),
                                       data.space.kind == "binary", "test examples")
    metrics = score_test_outputs(out, recipe, data, named)
    return combined_results(first_results, members, metrics, ensemble)


def user_variants(recipe, first_results: dict) -> dict:
    """The test split of a user's labelled VCF, read and split again as in the runs (checked unchanged)."""
    df, info = read_user_variants(recipe.data)
    parts, data, _ = labelled_parts(recipe.data, df, info)
    check_unchanged(recipe, first_results["data"].get("fingerprint") or {}, data["fingerprint"])
    return parts["test"]


def score_user_variants(out: Path, recipe, first_results: dict, members: list[dict], test: dict) -> dict:
    """The copied members' P(deleterious) on the test variants of the user's VCF, their mean, metrics, curves
    and ``predictions_test.csv``."""
    cfg = recipe.data
    probs = [classifier_probs(out / f"member-{k}", m["recipe"], {"base_model": m["base_model"]},
                              (test["ref"], test["alt"]))[:, 1] for k, m in enumerate(members)]
    named, ensemble = combined_outputs(first_results, members, probs, combine_text(recipe), True, "test variants")
    y = np.asarray(test["labels"])
    metrics = {k: binary_metrics(y, p, n_boot=cfg.n_boot, seed=cfg.seed) for k, p in named.items()}
    plot_roc_pr(y, named, out / "plots", title=recipe.name)
    write_variant_predictions(out / "predictions_test.csv", test["frame"], named,
                              first_results["data"]["labels"]["classes"], y)
    return combined_results(first_results, members, metrics, ensemble)
