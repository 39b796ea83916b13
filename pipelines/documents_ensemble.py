"""Ensembles of document classifiers: several classifiers scored and used as one, by the mean of their
probabilities (softmax; multi-label: sigmoid, with per-class thresholds tuned on the averaged validation
probabilities).

Two ways to make one, both giving the same run folder layout::

    config.yaml (data.ensemble: K)  labels.json  thresholds.json (multi-label)
    member-<k>/   one classifier each: model/, or adapter/ (+ base/), and member.json (its seed, base model)
    results.json  report.md  plots/confusion_*.png

- ``data.ensemble: K`` in a ``classify`` recipe trains the K members in one run (``documents.run_classify``,
  with :func:`score_ensemble` and :func:`training_record` from here);
- ``mambatune ensemble RUN [RUN ...] --out DIR`` (:func:`combine_runs`) combines finished runs trained
  separately, e.g. seeds trained side by side on several GPUs; a run that is itself an ensemble
  contributes its members. The runs must read the same data the same way (:func:`check_compatible`).

results.json ``test`` holds the ensemble first, then each member alone (``... member k``), then the
baselines. ``mambatune eval / predict / export`` work on the folder (``documents_verbs``).
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
from mambatune.domains.documents import DocumentDataset, LabelVocabulary
from mambatune.domains.documents.metrics import save_confusion_matrix
from mambatune.domains.documents.training import predict_scores

from . import documents as d
from . import documents_verbs as verbs

ENSEMBLE_INFO = "ensemble.json"
MODEL_FOLDERS = ("model", "adapter", "base")
# data settings that change what a model reads, or which documents it is scored on
READ_KEYS = ("source", "text_column", "label_column", "split_column", "include_deprecated", "tokenizer",
             "max_length", "overflow", "chunk_stride", "chunk_pool", "max_eval", "unseen_labels")


# -- scoring (data.ensemble runs and combined runs alike) ----------------------------------------

def write_member_info(member_dir: Path, member_recipe, base_model: str | None, **extra) -> None:
    """``member-<k>/member.json``: what rebuilding the member needs beyond its model folders (its model
    section: seed, head, behaviour; the pretrained base an adapter sits on) and where it came from."""
    info = {"seed": member_recipe.model.seed, "base_model": base_model,
            "model": dataclasses.asdict(member_recipe.model), **extra}
    member_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(member_dir / verbs.MEMBER_INFO, json.dumps(info, indent=2) + "\n")


def combine_text(multi: bool) -> str:
    if multi:
        return ("the mean of the members' sigmoid probabilities, with per-class thresholds tuned on the averaged "
                "validation probabilities")
    return "the mean of the members' softmax probabilities (prediction: the most probable label)"


def score_ensemble(logits: list[dict], y: dict, names: list[str], multi: bool, lengths, edges, method: str,
                   members: list[dict]) -> tuple:
    """(test metrics, thresholds, ensemble record, the ensemble's test probabilities) from each member's
    ``{"val", "test"}`` logits: the
    ensemble (``"<method>, ensemble of K"``, the mean of the members' probabilities) first, then each
    member alone (``"<its method> member k"``, scored as a single run scores its model). ``members``:
    per member, what the record keeps (``seed``, ``dir``, ...; ``method`` when it differs)."""
    if len(logits) != len(members) or not logits:
        raise ValueError(f"an ensemble needs one record per member: {len(logits)} members, {len(members)} records")
    probs = [{s: d.probabilities(m[s], multi) for s in ("val", "test")} for m in logits]
    mean = {s: np.mean([p[s] for p in probs], axis=0) for s in ("val", "test")}
    metrics, thresholds = d.model_metrics(y, mean["val"], mean["test"], names, multi, lengths, edges)
    test = {f"{method}, ensemble of {len(logits)}": metrics}
    records = []
    for k, (raw, p, info) in enumerate(zip(logits, probs, members)):
        name = f"{info.get('method', method)} member {k}"
        scores = p if multi else raw  # a single run: sigmoid probabilities, or the argmax of its logits
        test[name] = d.model_metrics(y, scores["val"], scores["test"], names, multi, lengths, edges)[0]
        records.append({"member": k, "name": name, **info})
    return test, thresholds, {"size": len(logits), "method": method, "combine": combine_text(multi),
                              "members": records}, mean["test"]


def training_record(summaries: list[dict | None], seeds: list[int]) -> dict:
    """The training summary of an ensemble: totals, and each member's own under ``members``."""
    done = [s for s in summaries if s]
    return {"steps": sum(s["steps"] for s in done), "best_step": [s["best_step"] for s in done],
            "stopped_early": any(s["stopped_early"] for s in done), "seconds": sum(s["seconds"] for s in done),
            "last_eval": None, "members": [{"seed": seed, **(s or {})} for s, seed in zip(summaries, seeds)]}


# -- `mambatune ensemble`: finished runs combined ------------------------------------------------

def open_source(run) -> tuple:
    """(folder, recipe, results) of a finished documents classify run, or a clear error."""
    from .recipe import load_resolved
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
    first, recipe, results = runs[0]
    labels = json.loads((first / "labels.json").read_text())
    for folder, other, res in runs[1:]:
        other_labels = json.loads((folder / "labels.json").read_text())
        if other_labels != labels:
            raise ValueError(f"cannot combine runs with different labels (labels.json): {first}: {labels}; "
                             f"{folder}: {other_labels}")
        if bool(res.get("multi_label")) != bool(results.get("multi_label")):
            raise ValueError(f"cannot combine a multi-label run with a single-label one: {first} multi_label="
                             f"{bool(results.get('multi_label'))}, {folder} multi_label={bool(res.get('multi_label'))}")
        keys = READ_KEYS + (("seed",) if recipe.data.max_eval is not None else ())  # seed picks the max_eval subset
        for key in keys:
            a, b = getattr(recipe.data, key), getattr(other.data, key)
            if a != b:
                raise ValueError(f"cannot combine runs that read their data differently: data.{key} is {a!r} in "
                                 f"{first} but {b!r} in {folder}; members must be trained and scored on the same "
                                 "documents, read the same way")


def source_members(folder: Path, recipe, results: dict) -> list[dict]:
    """The classifiers a run contributes: itself, or each of its members if it is an ensemble."""
    method = results["ensemble"]["method"] if results.get("ensemble") else next(iter(results["test"]))
    members = verbs.member_dirs(folder, recipe)
    if not members:
        return [{"folder": folder, "recipe": recipe, "base_model": results.get("base_model"), "method": method,
                 "source_run": str(folder), "source_member": None,
                 "training": results.get("training")}]
    trainings = (results.get("training") or {}).get("members") or [None] * len(members)
    out = []
    for k, member in enumerate(members):
        member_recipe, base = verbs.member_model(member, k, recipe, results)
        training = {t: v for t, v in (trainings[k] or {}).items() if t != "seed"} or None
        out.append({"folder": member, "recipe": member_recipe, "base_model": base, "method": method,
                    "source_run": str(folder), "source_member": member.name, "training": training})
    return out


def check_out(out: Path, runs: list[tuple]) -> None:
    for folder, *_ in runs:
        if out.resolve() == folder.resolve():
            raise ValueError(f"--out {out} is one of the runs to combine; choose a new folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} exists and is not an empty folder; choose a new folder (or remove it)")


def combine_runs(runs: list, out) -> Path:
    """Combines finished documents classify runs into one ensemble run folder ``out`` (see the module
    docstring); returns it. The members are copied, rescored on the first run's validation and test
    splits, and averaged; the baselines are copied from the first run's results.json, not refitted."""
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
        raise ValueError(f"an ensemble needs at least two classifiers; {runs[0]} is one. Give more runs")
    out = Path(out)
    check_out(out, opened)
    alike = [(m["method"], m["recipe"].model.seed) for m in members]
    if len(set(alike)) < len(alike):
        print(f"mambatune ensemble: members of the same method share a model seed ({alike}); trained alike from "
              "the same seed, they add little", file=sys.stderr)
    first, first_recipe, first_results = opened[0]
    recipe = dataclasses.replace(first_recipe, data=dataclasses.replace(first_recipe.data, ensemble=len(members)),
                                 train=dataclasses.replace(first_recipe.train, output_dir=str(out)))
    names = json.loads((first / "labels.json").read_text())
    data, test_lengths, test_table = eval_splits(recipe, names)  # before anything is written: the data must still be there
    existed = out.exists()
    try:
        write_combined(out, recipe, members, names)
        results = score_combined(out, recipe, first_results, members, names, data, test_lengths, test_table)
        results["total_seconds"] = time.time() - start
        info = {"members": [{"member": k, "dir": f"member-{k}", "source_run": m["source_run"],
                             "source_member": m["source_member"], "seed": m["recipe"].model.seed}
                            for k, m in enumerate(members)],
                "runs": [{"run": str(folder), "seeds": [m["recipe"].model.seed for m in members
                                                        if m["source_run"] == str(folder)]} for folder, *_ in opened],
                "combine": combine_text(results["multi_label"]), "baselines_from": str(first)}
        atomic_write_text(out / ENSEMBLE_INFO, json.dumps(info, indent=2) + "\n")
        copy_baseline_plots(first, out, results["baselines"])
        d.write_report(out, recipe, results)
        atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=float) + "\n")  # last: done
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # it was new or empty (check_out): leave no half-made run
        if existed:
            out.mkdir(exist_ok=True)
        raise
    return out


def write_combined(out: Path, recipe, members: list[dict], names: list[str]) -> None:
    """The member folders (copied model folders + member.json), config.yaml and labels.json."""
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
    atomic_write_text(out / "labels.json", json.dumps(names) + "\n")


def eval_splits(recipe, names: list[str]) -> tuple:
    """({"val", "test"} DocumentDatasets as the runs scored them, test word counts, the test table)."""
    cfg = recipe.data
    tables = d.load_splits(cfg, recipe.source)
    vocab = LabelVocabulary.from_table(tables["train"])
    if vocab.names() != names:
        raise ValueError(f"the training split of {cfg.source} now has labels {vocab.names()}, the runs {names}: "
                         "the data changed since they were trained")
    tok = d.make_tokenizer(cfg)
    data = {s: DocumentDataset(tables[s], tok, vocab=vocab, max_length=cfg.max_length, overflow=cfg.overflow,
                               stride=cfg.chunk_stride, unseen=cfg.unseen_labels) for s in ("val", "test")}
    return data, d.word_counts(tables["test"]), tables["test"]


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
    methods = {m["method"] for m in members}
    method = methods.pop() if len(methods) == 1 else "mamba (mixed methods)"
    y = {s: data[s].label_matrix() for s in data}
    records = [{"seed": m["recipe"].model.seed, "dir": f"member-{k}", "source_run": m["source_run"],
                "source_member": m["source_member"], **({"method": m["method"]} if m["method"] != method else {})}
               for k, m in enumerate(members)]
    test, thresholds, ensemble, probs = score_ensemble(logits, y, names, multi, test_lengths,
                                                       tuple(cfg.length_edges), method, records)
    d.write_test_predictions(out, test_table, names, probs, multi, thresholds)
    first_test = first_results["test"]
    skip = {next(iter(first_test))} | {m["name"] for m in (first_results.get("ensemble") or {}).get("members", [])}
    baselines = {k: v for k, v in first_test.items() if k not in skip}
    test.update(baselines)
    if multi:
        atomic_write_text(out / "thresholds.json", json.dumps(thresholds.tolist()) + "\n")
    else:
        ens_name = next(iter(test))
        save_confusion_matrix(test[ens_name]["confusion_matrix"], names,
                              out / "plots" / f"confusion_{d.slug(ens_name)}.png",
                              title=f"{ens_name}: test confusion matrix")
    first_run = members[0]["source_run"]
    ensemble["note"] = (f"The baseline rows are copied from {first_run}/results.json, not refitted: the baselines "
                        "are deterministic on the same split, which every member was scored on.") if baselines else ""
    return {"task": "classify", "multi_label": multi, "labels": names, "test": test, "baselines": baselines,
            "sizes": first_results.get("sizes"), "length_handling": first_results.get("length_handling"),
            "load_reports": first_results.get("load_reports"),
            "training": training_record([m["training"] for m in members], [r["seed"] for r in records]),
            "summary": first_results.get("summary"), "base_model": first_results.get("base_model"),
            "ensemble": ensemble}


def copy_baseline_plots(first: Path, out: Path, baselines: dict) -> None:
    for name in baselines:
        plot = first / "plots" / f"confusion_{d.slug(name)}.png"
        if plot.is_file():
            (out / "plots").mkdir(exist_ok=True)
            shutil.copyfile(plot, out / "plots" / plot.name)
