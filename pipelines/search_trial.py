"""One trial of ``mambatune search``: its recipe, its run as a subprocess, its scores.

The run is what ``mambatune run <trial>/recipe.yaml`` does (the recipe loaded, then its pipeline's ``run``
from the registry; the CLI is above this module and not imported) in a process of its own, in its own
process group and, on Linux, set to die with its worker. The process is forked from a multiprocessing
fork server that has imported mambatune and the recipe's pipeline once, so it starts in milliseconds
instead of importing torch and the pipeline again (seconds on a CPU). Its metrics.jsonl is polled:
each validation score is reported to the Optuna trial, and the run is stopped when the pruner says so.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from .search_space import kind_of, method_names, method_params, sample

HEARTBEAT_S = 5  # a worker on another host is dead after the storage's grace period without a heartbeat
POLL_S = 0.5


def optuna_module():
    try:
        import optuna
    except ImportError as err:
        raise ImportError("mambatune search needs Optuna: pip install 'optuna>=4'") from err
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed", category=UserWarning)  # we beat
    warnings.filterwarnings("ignore", message="Some regimes for parameter", category=UserWarning)  # few trials
    return optuna


def trial_recipe(base: dict[str, Any], methods: list[dict], lr: float, output_dir: Path) -> dict[str, Any]:
    raw = json.loads(json.dumps(base))
    raw["peft"]["methods"] = methods
    raw["train"]["lr"] = lr
    raw["train"]["output_dir"] = str(output_dir)
    return raw


def write_recipe(raw: dict[str, Any], path: Path, comment: str) -> None:
    import yaml

    from mambatune.core.atomic import atomic_write_text
    atomic_write_text(path, f"# mambatune run {path}\n# {comment}\n" + yaml.safe_dump(raw, sort_keys=False))


def trial_dir(folder: Path, number: int) -> Path:
    return folder / "trials" / f"trial-{number:04d}"


def eval_scores(run_dir: Path, metric: str) -> list[tuple[int, float]]:
    """(step, validation score) of every evaluation logged so far in the run's metrics.jsonl."""
    from mambatune.core.training import read_metrics
    key = f"eval/{metric}"
    return [(int(r["step"]), float(r[key])) for r in read_metrics(run_dir / "metrics.jsonl")
            if isinstance(r.get(key), (int, float)) and "step" in r]


def trainable_from_log(log: Path) -> int | None:
    """The total of the first trainable-parameter table the run printed: the model it fine-tunes (a run
    may train baselines after it, e.g. the same model from scratch)."""
    if log.is_file():
        for line in log.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "trainable" and parts[2].endswith("%"):
                return int(parts[1].replace(",", ""))
    return None


def without_children() -> None:
    """In a trial's process: die with the worker (Linux), so a killed search leaves no orphan run."""
    with contextlib.suppress(Exception):
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_recipe(recipe_path: str) -> int:
    """What ``mambatune run <recipe>`` does for a trial (a search has no K-fold recipes): the recipe
    through its pipeline's ``run``. An error is one line in the trial's log, as on the command line
    (``MAMBATUNE_DEBUG=1`` adds the traceback); returns the exit status."""
    warnings.filterwarnings("ignore", message=r"Using `json`-module for json-handling", category=UserWarning)
    from .recipe import RecipeError, load_recipe, pipeline_module
    try:
        recipe = load_recipe(recipe_path, [])
        pipeline_module(recipe.pipeline).run(recipe)
        return 0
    except (RecipeError, FileNotFoundError, FileExistsError, KeyError, ValueError) as err:
        print(f"mambatune run: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if os.environ.get("MAMBATUNE_DEBUG"):
            import traceback
            traceback.print_exc()
        print(f"mambatune run: unexpected error ({type(err).__name__}: {err})", file=sys.stderr)
        return 1


def run_process(recipe_path: str, log_path: str, cwd: str, env: dict[str, str]) -> None:
    """A trial's process: the recipe's run in the worker's folder and environment (the fork server
    keeps those of its start), its output into the log, in its own process group."""
    os.setsid()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    without_children()  # its parent is the fork server, which exits when the worker dies
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    sys.exit(run_recipe(recipe_path))


def fork_server(pipeline_module: str):
    """A multiprocessing context whose fork server has imported mambatune and the recipe's pipeline once,
    so a trial's process starts in milliseconds instead of importing torch and the pipeline again."""
    import multiprocessing
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["mambatune.pipelines.search_trial", "mambatune.pipelines.recipe", pipeline_module])
    return ctx


def launch(proc) -> None:
    """Starts a trial's process without multiprocessing's re-import of the caller's ``__main__`` in it:
    the process runs mambatune, and a script that calls the search unguarded would otherwise start
    another search inside every trial."""
    main = sys.modules["__main__"]
    saved = {k: main.__dict__.pop(k) for k in ("__spec__", "__file__") if k in main.__dict__}
    main.__spec__ = None
    try:
        proc.start()
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def stop(proc) -> None:
    """Ends a trial's run and everything it started (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    proc.join(10)
    if proc.exitcode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.join()


def run_trial(study, storage, trial, ctx: dict) -> tuple[str, str]:
    """Samples, checks the budget, runs and scores one trial (asked, locked and attributed by the
    caller); tells the study its end. Returns (a one-line summary, how it ended: complete, pruned,
    over_budget, not_hybrid or failed)."""
    optuna = optuna_module()
    folder: Path = ctx["folder"]
    tdir = trial_dir(folder, trial.number)
    methods, lr = sample(trial, ctx["space"], ctx["base_lr"])
    names = method_names(methods)
    trial.set_user_attr("methods", "+".join(names) or "head_only")
    trial.set_user_attr("kind", kind_of(methods))
    trial.set_user_attr("peft", json.dumps(methods))
    label = f"trial {trial.number} ({'+'.join(names) or 'head only'}, lr {lr:.2g}"
    if ctx.get("kind") == "hybrid" and kind_of(methods) != "hybrid":
        trial.set_user_attr("not_hybrid", True)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return f"{label}): not a hybrid, pruned before training", "not_hybrid"
    if ctx["shape"] is not None:
        count = method_params(ctx["shape"], methods)
        trial.set_user_attr("method_params", count)
        label += f", {count:,} method params"
        if ctx["budget"] is not None and count > ctx["budget"]:
            trial.set_user_attr("over_budget", True)
            trial.set_user_attr("over_budget_by", count - ctx["budget"])
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return f"{label}): over the budget of {ctx['budget']:,}, pruned before training", "over_budget"
    run_dir = tdir / "run"
    recipe_path = tdir / "recipe.yaml"
    write_recipe(trial_recipe(ctx["base"], methods, lr, run_dir), recipe_path,
                 f"trial {trial.number} of the search in {folder}")
    trial.set_user_attr("run_dir", str(run_dir))
    log_path = tdir / "log.txt"
    start, metric, reported, pruned = time.time(), ctx["metric"], {}, False
    log_path.write_text("")
    proc = ctx["processes"].Process(target=run_process, args=(str(recipe_path), str(log_path), os.getcwd(),
                                                          {**os.environ, **ctx["env"]}))
    launch(proc)
    try:
        beat = 0.0
        while True:
            done = proc.exitcode is not None
            if time.time() - beat >= HEARTBEAT_S:
                storage.record_heartbeat(trial._trial_id)
                beat = time.time()
            for step, value in eval_scores(run_dir, metric):
                if step not in reported and math.isfinite(value):
                    trial.report(value, step)
                    reported[step] = value
            if done:
                break
            if reported and trial.should_prune():
                stop(proc)
                pruned = True
                break
            time.sleep(POLL_S)
    except BaseException:
        stop(proc)  # interrupted (Ctrl-C): the run goes with it; the trial is re-run on resume
        raise
    trial.set_user_attr("seconds", round(time.time() - start, 1))
    total = trainable_from_log(log_path)
    if total is not None:
        trial.set_user_attr("trainable_params", total)
    scores = [v for _, v in eval_scores(run_dir, metric) if math.isfinite(v)]
    if pruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        step = max(reported)
        return f"{label}): pruned at step {step} ({metric} {reported[step]:.4g})", "pruned"
    if proc.exitcode != 0 or not scores:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        why = " / ".join(tail) if proc.exitcode != 0 else \
            f"no validation {metric} in {run_dir / 'metrics.jsonl'} (the recipe needs a validation split)"
        trial.set_user_attr("error", why[-500:])
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return f"{label}): failed: {why[-300:]} (log: {log_path})", "failed"
    best = max(scores) if ctx["maximize"] else min(scores)
    study.tell(trial, best)
    return f"{label}): {metric} {best:.4g}, {time.time() - start:.0f} s", "complete"


