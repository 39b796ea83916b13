"""Ensembles of document classifiers: several classifiers scored and used as one, by the mean of their
probabilities (softmax; multi-label: sigmoid, with per-class thresholds tuned on the averaged validation
probabilities).

Two ways to make one, both giving the same run folder layout::

    config.yaml (data.ensemble: K)  labels.json  thresholds.json (multi-label)
    member-<k>/   one classifier each: model/, or adapter/ (+ base/), and member.json (its seed, base model)
    results.json  report.md  plots/confusion_*.png

- ``data.ensemble: K`` in a ``classify`` recipe trains the K members in one run (``tasks.run_classify``,
  with ``scores.score_ensemble`` and ``ensemble_runs.training_record``);
- ``mambatune ensemble RUN [RUN ...] --out DIR`` (:func:`combine_runs`) combines finished runs trained
  separately, e.g. seeds trained side by side on several GPUs; a run that is itself an ensemble
  contributes its members. The runs must read the same data the same way (:func:`check_compatible`).

results.json ``test`` holds the ensemble first, then each member alone (``... member k``), then the
baselines. ``mambatune eval / predict / export`` work on the folder (``verbs``).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path


from mambatune.core.atomic import atomic_write_text
from mambatune.domains.documents import DocumentDataset, LabelVocabulary
from mambatune.domains.documents.metrics import save_confusion_matrix
from mambatune.domains.documents.training import predict_scores

from .. import domain_run
from .. import ensemble_runs as shared
from ..recipe import load_resolved
from . import verbs
from .data import load_splits, make_tokenizer
from .report import write_report
from .scores import combine_text, score_ensemble, slug, word_counts, write_test_predictions

# data settings that change what a model reads, or which documents it is scored on
READ_KEYS = ("source", "path", "test_path", "labels_path", "file_column", "text_column", "label_column", "id_column",
             "multi_label", "label_separator", "empty_texts", "encoding", "split_column", "val_fraction",
             "test_fraction", "stratify", "group_column", "fold", "include_deprecated", "tokenizer",
             "max_length", "overflow", "chunk_stride", "chunk_pool", "max_eval", "unseen_labels")


# -- `mambatune ensemble`: finished runs combined ------------------------------------------------

def open_source(run) -> tuple:
    """(folder, recipe, results) of a finished documents classify run, or a clear error."""
    folder = Path(run)
    if folder.is_dir() and (folder / "config.yaml").is_file():
        pipeline = load_resolved(folder).pipeline
        if pipeline != "documents":
            raise ValueError(f"mambatune ensemble combines documents classify runs; {folder} is a {pipeline} run")
    folder, recipe, results = verbs.open_run(folder)
    if recipe.data.task != "classify":
        raise ValueError(f"mambatune ensemble combines documents classify runs; {folder} is a "
                         f"{recipe.data.task} run")
    return folder, recipe, results


def check_compatible(runs: list[tuple]) -> None:
    """The runs predict the same labels from the same documents read the same way; else a ValueError that
    names the setting and the runs."""
    first, _, results = runs[0]
    labels = json.loads((first / "labels.json").read_text())
    for folder, _, res in runs[1:]:
        other_labels = json.loads((folder / "labels.json").read_text())
        if other_labels != labels:
            raise ValueError(f"cannot combine runs with different labels (labels.json): {first}: {labels}; "
                             f"{folder}: {other_labels}")
        if bool(res.get("multi_label")) != bool(results.get("multi_label")):
            raise ValueError(f"cannot combine a multi-label run with a single-label one: {first} multi_label="
                             f"{bool(results.get('multi_label'))}, {folder} multi_label={bool(res.get('multi_label'))}")
    for folder, _, _ in runs[1:]:  # a seeded split of the user's file must be the same split
        mine, theirs = first / "splits.csv", folder / "splits.csv"
        if mine.is_file() != theirs.is_file() or (mine.is_file() and mine.read_bytes() != theirs.read_bytes()):
            raise ValueError(f"cannot combine runs whose documents were split differently: {first}/splits.csv and "
                             f"{folder}/splits.csv differ (a different data.seed or split setting); members must be "
                             "trained and scored on the same split")
    shared.check_settings(runs, READ_KEYS,
                          "cannot combine runs that read their data differently: data.{key} is "
                          "{a!r} in {first} but {b!r} in {folder}; members must be trained and scored on the same "
                          "documents, read the same way")


@domain_run.head_from_the_run()
def combine_runs(runs: list, out) -> Path:
    """Combines finished documents classify runs into one ensemble run folder ``out`` (see the module
    docstring); returns it. The members are copied, rescored on the first run's validation and test
    splits, and averaged; the baselines are copied from the first run's results.json, not refitted."""
    start = time.time()
    opened, members, out, recipe = shared.gather(runs, out, open_source, check_compatible, verbs.member_dirs,
                                                 "classifiers")
    first, _, first_results = opened[0]
    names = json.loads((first / "labels.json").read_text())
    data, test_lengths, test_table = eval_splits(recipe, names)  # before anything is written: the data must still be there

    def write():
        shared.copy_members(out, recipe, members)
        atomic_write_text(out / "labels.json", json.dumps(names) + "\n")
        results = score_combined(out, recipe, first_results, members, names, data, test_lengths, test_table)
        results["total_seconds"] = time.time() - start
        copy_baseline_plots(first, out, results["baselines"])
        shared.finish_combined(out, recipe, results, opened, members, combine_text(results["multi_label"]),
                               write_report)
    shared.write_combined_run(out, write)
    return out


def eval_splits(recipe, names: list[str]) -> tuple:
    """({"val", "test"} DocumentDatasets as the runs scored them, test word counts, the test table)."""
    cfg = recipe.data
    tables = load_splits(cfg, recipe.source)
    vocab = LabelVocabulary.from_table(tables["train"])
    if vocab.names() != names:
        raise ValueError(f"the training split of {cfg.source} now has labels {vocab.names()}, the runs {names}: "
                         "the data changed since they were trained")
    tok = make_tokenizer(cfg)
    data = {s: DocumentDataset(tables[s], tok, vocab=vocab, max_length=cfg.max_length, overflow=cfg.overflow,
                               stride=cfg.chunk_stride, unseen=cfg.unseen_labels) for s in ("val", "test")}
    return data, word_counts(tables["test"]), tables["test"]


def score_combined(out: Path, recipe, first_results: dict, members: list[dict], names: list[str], data: dict,
                   test_lengths, test_table) -> dict:
    """results.json of a combined ensemble: the copied members scored on the first run's val / test split."""
    cfg = recipe.data
    tok, _, multi = verbs.classifier_info(out, recipe, first_results)
    logits = []
    for k, m in enumerate(members):
        wrapped = verbs.load_model(out / f"member-{k}", m["recipe"], m["base_model"], tok, names, multi)
        logits.append({s: predict_scores(wrapped, data[s], recipe.train.batch_size, cfg.max_tokens_per_batch)
                       for s in data})
        del wrapped
    method = shared.combined_method(members)
    y = {s: data[s].label_matrix() for s in data}
    records = [shared.member_record(k, m, method) for k, m in enumerate(members)]
    test, thresholds, ensemble, probs = score_ensemble(logits, y, names, multi, test_lengths,
                                                       tuple(cfg.length_edges), method, records)
    write_test_predictions(out, test_table, names, probs, multi, thresholds)
    baselines = shared.first_baselines(first_results)
    test.update(baselines)
    if multi:
        atomic_write_text(out / "thresholds.json", json.dumps(thresholds.tolist()) + "\n")
    else:
        ens_name = next(iter(test))
        save_confusion_matrix(test[ens_name]["confusion_matrix"], names,
                              out / "plots" / f"confusion_{slug(ens_name)}.png",
                              title=f"{ens_name}: test confusion matrix")
    first_run = members[0]["source_run"]
    ensemble["note"] = (f"The baseline rows are copied from {first_run}/results.json, not refitted: the baselines "
                        "are deterministic on the same split, which every member was scored on.") if baselines else ""
    return {"task": "classify", "multi_label": multi, "labels": names, "test": test, "baselines": baselines,
            "sizes": first_results.get("sizes"), "length_handling": first_results.get("length_handling"),
            "load_reports": first_results.get("load_reports"),
            "train_lengths": first_results.get("train_lengths"), "model_notes": first_results.get("model_notes", []),
            "training": shared.training_record([m["training"] for m in members], [r["seed"] for r in records]),
            "summary": first_results.get("summary"), "base_model": first_results.get("base_model"),
            "ensemble": ensemble}


def copy_baseline_plots(first: Path, out: Path, baselines: dict) -> None:
    for name in baselines:
        plot = first / "plots" / f"confusion_{slug(name)}.png"
        if plot.is_file():
            (out / "plots").mkdir(exist_ok=True)
            shutil.copyfile(plot, out / "plots" / plot.name)
