"""What the pipelines' ensembles share: member folders, combining finished runs.

The documents and genomics pipelines make ensembles the same way (``documents.ensemble``,
``genomics.ensemble``): an ensemble run keeps its K members in ``member-<k>/`` (model folders and
``member.json``), and ``mambatune ensemble RUN [RUN ...] --out DIR`` combines finished runs into such a
folder. This module holds one version of what they share; where the domains differ it takes:

- ``noun``: what a member is called in messages and the report ("classifiers", "models");
- ``train_seeds``: whether member.json and the records keep each member's train seed besides its model
  seed (genomics) or not (documents);
- the domain's own ``open_source``, ``check_compatible`` and ``member_dirs`` (which tasks can be
  ensembles), and, in :func:`check_settings`, its data settings and the wording of a mismatch.

``timeseries.ensemble`` (forecasters pooled, no member folders) uses :func:`check_settings` only.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

from mambatune.core.atomic import atomic_write_text

MEMBER_INFO = "member.json"  # in member-<k>/: its seeds, base model and model section
ENSEMBLE_INFO = "ensemble.json"  # in a combined run: where each member came from
MODEL_FOLDERS = ("model", "adapter", "base")


# -- member folders ------------------------------------------------------------------------------

def member_dirs(run_dir: Path, recipe, applies: bool = True) -> list[Path]:
    """An ensemble run's ``member-0`` .. ``member-<K-1>`` folders; [] for a run of one model, or where
    ``applies`` is false (the domain's check: a task that has no ensembles)."""
    if not applies or recipe.data.ensemble == 1:
        return []
    dirs = [run_dir / f"member-{k}" for k in range(recipe.data.ensemble)]
    missing = [p.name for p in dirs if not p.is_dir()]
    if missing:
        raise FileNotFoundError(f"{run_dir} is an ensemble of {recipe.data.ensemble} (data.ensemble) but has no "
                                f"{', '.join(missing)}: the run did not finish, or its folder is incomplete")
    return dirs


def member_model(member_dir: Path, k: int, recipe, results: dict, train_seed: bool = False) -> tuple:
    """(recipe with the member's model section, its base model) of ``member-<k>/``; ``train_seed``: its
    trainer seed too. Without member.json: the seeds ``data.ensemble`` gives member k."""
    from .recipe import ModelSection
    path = member_dir / MEMBER_INFO
    info = json.loads(path.read_text()) if path.is_file() else {}
    model = ModelSection(**info["model"]) if "model" in info else \
        dataclasses.replace(recipe.model, seed=recipe.model.seed + k)  # as data.ensemble seeds its members
    member = dataclasses.replace(recipe, model=model)
    if train_seed:
        member = dataclasses.replace(member, train=dataclasses.replace(
            recipe.train, seed=info.get("train_seed", recipe.train.seed + k)))
    return member, info.get("base_model", results.get("base_model"))


def member_seeds(member, train_seed: bool) -> dict:
    """A member's seeds as member.json and the records keep them."""
    return {"seed": member.model.seed, **({"train_seed": member.train.seed} if train_seed else {})}


def write_member_info(member_dir: Path, member, base_model: str | None, train_seed: bool = False, **extra) -> None:
    """``member-<k>/member.json``: what rebuilding the member needs beyond its model folders (its model
    section: seed, head, architecture; the pretrained base an adapter sits on) and where it came from."""
    info = {**member_seeds(member, train_seed), "base_model": base_model, "model": dataclasses.asdict(member.model),
            **extra}
    member_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(member_dir / MEMBER_INFO, json.dumps(info, indent=2) + "\n")


# -- an ensemble's records and report ------------------------------------------------------------

def training_record(summaries: list[dict | None], seeds: list[int]) -> dict | None:
    """The training summary of an ensemble: totals, and each member's own under ``members`` (None when
    no member has one)."""
    done = [s for s in summaries if s]
    if not done:
        return None
    return {"steps": sum(s["steps"] for s in done), "best_step": [s["best_step"] for s in done],
            "stopped_early": any(s["stopped_early"] for s in done), "seconds": sum(s["seconds"] for s in done),
            "last_eval": None, "members": [{"seed": seed, **(s or {})} for s, seed in zip(summaries, seeds)]}


def ensemble_text(results: dict, noun: str) -> str:
    """The report's paragraph on an ensemble of ``noun`` (empty for a run of one)."""
    ens = results.get("ensemble")
    if not ens:
        return ""
    seeds = ", ".join(str(m["seed"]) for m in ens["members"])
    text = (f"\n\nEnsemble of {ens['size']} {noun} ({ens['method']}; model seeds {seeds}; saved in `member-<k>/`), "
            f"scored by {ens['combine']}: the ensemble row scores those mean probabilities, each `member k` row "
            "that member alone.")
    return text + (f" {ens['note']}" if ens.get("note") else "")


def write_run_report(run_dir: Path, recipe, results: dict, write_report) -> None:
    """``write_report(run_dir, recipe, results)``; for an ensemble, ``results.json``'s ``baselines`` first
    loses the member rows (``run_task`` counts every row after the first as a baseline)."""
    if results.get("ensemble"):
        members = {m["name"] for m in results["ensemble"]["members"]}
        results["baselines"] = {k: v for k, v in results["baselines"].items() if k not in members}
        atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2, default=float) + "\n")
    write_report(run_dir, recipe, results)


# -- `mambatune ensemble`: finished runs combined ------------------------------------------------

def check_settings(runs: list[tuple], keys: tuple, mismatch: str) -> None:
    """The runs (folder, recipe, results) agree on the data settings ``keys`` (and on ``seed`` where it
    picks a ``max_eval`` subset); else a ValueError, ``mismatch`` formatted with the setting (``key``), its
    values (``a``, ``b``) and the two runs (``first``, ``folder``)."""
    first, recipe, _ = runs[0]
    keys = tuple(keys) + (("seed",) if getattr(recipe.data, "max_eval", None) is not None else ())
    for folder, other, _ in runs[1:]:
        for key in keys:
            a, b = getattr(recipe.data, key), getattr(other.data, key)
            if a != b:
                raise ValueError(mismatch.format(key=key, a=a, b=b, first=first, folder=folder))


def check_repeated(runs: list) -> None:
    seen = [Path(r).resolve() for r in runs]
    repeated = sorted({str(r) for r in runs if seen.count(Path(r).resolve()) > 1})
    if repeated:
        raise ValueError(f"run given more than once: {', '.join(repeated)}")


def check_out(out: Path, runs: list[tuple]) -> None:
    for folder, *_ in runs:
        if out.resolve() == folder.resolve():
            raise ValueError(f"--out {out} is one of the runs to combine; choose a new folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} exists and is not an empty folder; choose a new folder (or remove it)")


def source_members(folder: Path, recipe, results: dict, member_dirs, train_seed: bool = False) -> list[dict]:
    """The models a run contributes: itself, or each of its members if it is an ensemble
    (``member_dirs(folder, recipe)``: the domain's)."""
    method = results["ensemble"]["method"] if results.get("ensemble") else next(iter(results["test"]))
    members = member_dirs(folder, recipe)
    if not members:
        return [{"folder": folder, "recipe": recipe, "base_model": results.get("base_model"), "method": method,
                 "source_run": str(folder), "source_member": None, "training": results.get("training")}]
    trainings = (results.get("training") or {}).get("members") or [None] * len(members)
    out = []
    for k, member in enumerate(members):
        member_rec, base = member_model(member, k, recipe, results, train_seed)
        training = {t: v for t, v in (trainings[k] or {}).items() if t != "seed"} or None
        out.append({"folder": member, "recipe": member_rec, "base_model": base, "method": method,
                    "source_run": str(folder), "source_member": member.name, "training": training})
    return out


def gather(runs: list, out, open_source, check_compatible, member_dirs, noun: str, train_seed: bool = False) -> tuple:
    """(opened runs, members, out as a Path, the combined run's recipe) of ``mambatune ensemble RUN ... --out
    OUT``, or a clear error: ``open_source(run)`` gives a run's (folder, recipe, results), the domain's
    ``check_compatible`` and ``member_dirs`` vet them; ``noun``: what a member is called."""
    if not runs:
        raise ValueError("mambatune ensemble needs the run folders to combine")
    check_repeated(runs)
    opened = [open_source(r) for r in runs]
    check_compatible(opened)
    members = [m for run in opened for m in source_members(*run, member_dirs, train_seed)]
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two {noun}; {runs[0]} is one. Give more runs")
    out = Path(out)
    check_out(out, opened)
    alike = [(m["method"], *member_seeds(m["recipe"], train_seed).values()) for m in members]
    if len(set(alike)) < len(alike):
        seeds, same = ("their model and train seeds", "seeds") if train_seed else ("a model seed", "seed")
        print(f"mambatune ensemble: members of the same method share {seeds} ({alike}); trained alike from the "
              f"same {same}, they add little", file=sys.stderr)
    _, first_recipe, _ = opened[0]
    recipe = dataclasses.replace(first_recipe, data=dataclasses.replace(first_recipe.data, ensemble=len(members)),
                                 train=dataclasses.replace(first_recipe.train, output_dir=str(out)))
    return opened, members, out, recipe


def copy_members(out: Path, recipe, members: list[dict], train_seed: bool = False) -> None:
    """The member folders (copied model folders + member.json) and config.yaml."""
    from .recipe import save_resolved
    out.mkdir(parents=True, exist_ok=True)
    for k, m in enumerate(members):
        dest = out / f"member-{k}"
        for name in MODEL_FOLDERS:
            if (m["folder"] / name).is_dir():
                shutil.copytree(m["folder"] / name, dest / name)
        write_member_info(dest, m["recipe"], m["base_model"], train_seed, source_run=m["source_run"],
                          source_member=m["source_member"])
    save_resolved(recipe, out)


def combined_method(members: list[dict]) -> str:
    methods = {m["method"] for m in members}
    return methods.pop() if len(methods) == 1 else "mamba (mixed methods)"


def member_record(k: int, m: dict, method: str, train_seed: bool = False) -> dict:
    """What results.json's ensemble record keeps of combined member k (its method where it differs)."""
    return {**member_seeds(m["recipe"], train_seed), "dir": f"member-{k}", "source_run": m["source_run"],
            "source_member": m["source_member"], **({"method": m["method"]} if m["method"] != method else {})}


def first_baselines(first_results: dict) -> dict:
    """The first run's baseline rows (its test rows but its own model and its members)."""
    first_test = first_results["test"]
    skip = {next(iter(first_test))} | {m["name"] for m in (first_results.get("ensemble") or {}).get("members", [])}
    return {k: v for k, v in first_test.items() if k not in skip}


def write_combined_run(out: Path, write) -> None:
    """Runs ``write()``, which fills ``out`` (new or empty: :func:`check_out`); if it fails, ``out`` is
    left as it was, with no half-made run."""
    existed = out.exists()
    try:
        write()
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        if existed:
            out.mkdir(exist_ok=True)
        raise


def finish_combined(out: Path, recipe, results: dict, opened: list[tuple], members: list[dict], combine: str,
                    write_report, train_seed: bool = False) -> None:
    """ensemble.json (where each member came from), the report, and last results.json (the run is done)."""
    info = {"members": [{"member": k, "dir": f"member-{k}", "source_run": m["source_run"],
                         "source_member": m["source_member"], **member_seeds(m["recipe"], train_seed)}
                        for k, m in enumerate(members)],
            "runs": [{"run": str(folder), "seeds": [m["recipe"].model.seed for m in members
                                                    if m["source_run"] == str(folder)]} for folder, *_ in opened],
            "combine": combine, "baselines_from": str(opened[0][0])}
    atomic_write_text(out / ENSEMBLE_INFO, json.dumps(info, indent=2) + "\n")
    write_report(out, recipe, results)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=float) + "\n")
