"""``mambatune search``: MambaPEFT's hybrid PEFT search over a recipe, on Optuna.

Each trial is one ``mambatune run`` of the recipe with the trial's PEFT methods and learning rate,
started as a subprocess into ``<search>/trials/trial-NNNN/run``. The search reads the run's
metrics.jsonl as it grows, reports every validation score of ``train.metric_for_best`` to the
trial, and stops the run when the pruner says so. The objective is the best validation score of
the run (the checkpoint the run keeps), maximised or minimised as the Trainer ranks that metric.

The study lives in ``<search>/study.db`` (SQLite) or any Optuna storage URL. Trials survive a
killed search: each worker holds a lock file on its running trial, so a later worker on this
host sees a dead owner at once (on other hosts a missing heartbeat tells the same after a grace
period); the dead trial is marked FAIL and re-enqueued with the same parameters, and ``--trials``
counts the re-run, not the dead one. ``--workers K`` runs K worker processes on one study; asking
for a new trial is serialised through a lock file, so local workers never overshoot ``--trials``.

``--budget P`` caps the parameters the PEFT methods train (the task head, the same in every trial,
is not counted). The count is exact and costs nothing (the methods are applied to a meta-device
copy of the backbone), so an over-budget trial is pruned before it trains, marked
``over_budget`` and not counted; the TPE sampler learns the region is infeasible (its
``constraints_func``).

``kind`` (``Search.kind``; ``any`` by default) restricts the combinations: ``single`` samples exactly
one method per trial, ``hybrid`` only combinations of two or more (a sample with fewer is rejected
before it trains and not counted, like an over-budget one). Two searches of the same recipe, trials and
budget, one ``single`` and one ``hybrid``, compare the best hybrid with the best single method at equal
effort (``benchmarks/search.py``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .search_space import build_space, check_kind, check_switches, model_shape, single
from .search_trial import HEARTBEAT_S, POLL_S, fork_server, optuna_module, run_trial, trial_dir, without_children

PRUNERS = ("median", "hyperband", "none")
GRACE_S = 30  # a worker on another host is dead after this long without a heartbeat
MAX_OVER_BUDGET = 50  # consecutive over-budget samples before the search gives up on the budget
MAX_FAILED = 3  # consecutive failed trials of a worker before it stops (a recipe that cannot run)


@dataclasses.dataclass
class Search:
    """What defines a search (kept in ``<out>/search.json``) and how this invocation runs it."""

    recipe: str
    overrides: list[str]
    out: str
    trials: int = 20
    timeout: float | None = None
    storage: str | None = None
    workers: int = 1
    pruner: str = "median"
    budget: int | None = None
    methods: list[str] | None = None
    seed: int = 0
    kind: str = "any"

    DEFINING = ("recipe", "overrides", "budget", "methods", "seed", "kind")  # a resumed search must not change these

    def __post_init__(self) -> None:
        if Path(self.recipe).is_file():  # a file by its absolute path, so workers and resumes find it anywhere
            self.recipe = str(Path(self.recipe).resolve())
        self.out = str(self.out)
        self.overrides = list(self.overrides)

    @property
    def folder(self) -> Path:
        return Path(self.out)

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.folder / 'study.db').resolve()}"


# -- the recipe of a trial -------------------------------------------------------------------------

def is_path_key(key: str) -> bool:
    return key.endswith(("path", "paths")) or key == "genome"


def absolute_data_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """The data section with each relative file of a path key (``path``, ``test_path``, ``labels_path``,
    ``genome``, ...) that exists in the working folder or beside the recipe file (where the pipelines
    look) made absolute, so trial recipes, written elsewhere, and the best recipe read the same files."""
    def absolute(value: Any) -> Any:
        if isinstance(value, list):
            return [absolute(v) for v in value]
        if isinstance(value, str) and value and not Path(value).is_absolute():
            for where in (Path(value), base / value):
                if where.exists():
                    return str(where.resolve())
        return value
    return {k: absolute(v) if is_path_key(k) else v for k, v in (data or {}).items()}


def base_recipe(search: Search) -> tuple[dict[str, Any], Any]:
    """(the resolved recipe as a dict that ``mambatune run`` loads, the Recipe)."""
    from .recipe import load_recipe
    recipe = load_recipe(search.recipe, search.overrides)
    if getattr(recipe.data, "cv_folds", None):
        raise ValueError("mambatune search scores each trial on one validation split; set data.cv_folds=null "
                         "(rerun the best recipe with K folds afterwards)")
    raw = recipe.to_dict()
    raw["data"] = absolute_data_paths(raw["data"], Path(recipe.source).parent)
    return raw, recipe


def study_name(recipe_name: str, search: Search) -> str:
    """The recipe's name and a fingerprint of what the user gave to define the search (not of the
    resolved recipe, whose defaults and absolute paths differ between versions and machines), so a
    resumed search, or the same command on another host, finds the same study."""
    defining = {"name": recipe_name, "overrides": search.overrides, "budget": search.budget,
                "methods": check_switches(search.methods), "seed": search.seed}
    if search.kind != "any":  # so the studies of searches made before kinds existed keep their names
        defining["kind"] = search.kind
    digest = hashlib.sha256(json.dumps(defining, sort_keys=True).encode()).hexdigest()[:8]
    return f"{recipe_name}-{digest}"


# -- the study ----------------------------------------------------------------------------------

def make_pruner(name, optuna):
    """A pruner by name; an Optuna pruner object passes through (the Python API, one worker)."""
    if not isinstance(name, str):
        return name
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"--pruner must be one of {', '.join(PRUNERS)}, got {name!r}")


def over_budget_violation(trial) -> list[float]:
    """TPE's constraint: positive for a trial pruned over the budget (or, in a hybrid search, with fewer
    than two methods), so the sampler avoids its region."""
    return [float(trial.user_attrs.get("over_budget_by", 0)) + float(bool(trial.user_attrs.get("not_hybrid")))]


def open_study(search: Search, name: str, maximize: bool, worker: int = 0, pruner=None):
    optuna = optuna_module()
    import inspect
    kwargs = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S}
    callback = ("heartbeat_stale_trial_callback"
                if "heartbeat_stale_trial_callback" in inspect.signature(optuna.storages.RDBStorage).parameters
                else "failed_trial_callback")
    kwargs[callback] = retry_trial
    if search.storage_url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
    storage = optuna.storages.RDBStorage(search.storage_url, **kwargs)
    probe = optuna.create_study(study_name=name, storage=storage, direction="maximize" if maximize else "minimize",
                                load_if_exists=True)
    # a seed per worker and per restart, so a resumed or parallel worker does not redraw earlier trials
    seed = search.seed + 7919 * worker + len(probe.get_trials(deepcopy=False))
    sampler = optuna.samplers.TPESampler(seed=seed, constraints_func=over_budget_violation)
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler,
                             pruner=make_pruner(pruner or search.pruner, optuna)), storage


def retry_trial(study, trial) -> None:
    """Re-enqueues a trial whose worker died, with the parameters it had drawn (``retry_of`` names it);
    a worker killed while sampling leaves some undrawn, and the retry draws those afresh."""
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def rejected(trial) -> bool:
    """Pruned before it trained: over the budget, or not a hybrid in a hybrid search."""
    return bool(trial.user_attrs.get("over_budget") or trial.user_attrs.get("not_hybrid"))


def counted(trials) -> int:
    """Trials that count towards --trials: all but rejected ones and dead ones that were re-enqueued."""
    retried = {t.user_attrs.get("retry_of") for t in trials}
    return sum(1 for t in trials if not rejected(t)
               and not (t.state.name == "FAIL" and t.number in retried))


@contextlib.contextmanager
def file_lock(path: Path, blocking: bool = True):
    """An exclusive flock on ``path``; yields False at once when ``blocking`` is off and it is held."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def fail_dead_local_trials(study, storage, folder: Path) -> None:
    """Marks FAIL (and re-enqueues) each RUNNING trial of this search folder on this host whose
    worker no longer holds its lock: the worker was killed."""
    from optuna.trial import TrialState
    host, where = socket.gethostname(), str(folder.resolve())
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("host") != host or t.user_attrs.get("folder") != where:
            continue
        with file_lock(trial_dir(folder, t.number) / "running.lock", blocking=False) as free:
            if free and storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                print(f"trial {t.number}: its worker was killed; marked failed and re-enqueued", flush=True)
                retry_trial(study, t)


def gpu_of_worker(index: int, workers: int) -> dict[str, str]:
    """With several local workers and several GPUs, worker i's trials see GPU i mod n only."""
    import torch
    n = torch.cuda.device_count()  # counts devices without creating a CUDA context
    if workers < 2 or n < 2:
        return {}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(n)))).split(",")
    return {"CUDA_VISIBLE_DEVICES": visible[index % len(visible)]}


def enqueue_singles(study, space, trials: int, lr: float) -> None:
    """One trial per method alone at its usual settings first, when --trials leaves as many for the search."""
    if trials < 2 * len(space.switches) or len(space.switches) < 2 or space.kind == "hybrid":
        return
    for switch in space.switches:
        study.enqueue_trial(single(switch, space, lr), user_attrs={"seeded": f"{switch} alone"})


# -- workers --------------------------------------------------------------------------------------

def worker(search: Search, index: int = 0, pruner=None) -> None:
    """Runs trials of the search's study until --trials count, the timeout passes, or none is left."""
    optuna = optuna_module()
    from optuna.trial import TrialState
    folder = search.folder
    base, recipe = base_recipe(search)
    study, storage = open_study(search, study_name(recipe.name, search), recipe.train.higher_is_better(), index,
                                pruner)
    shape = model_shape(recipe)
    if search.budget is not None and shape is None:
        raise ValueError(f"--budget: cannot read the shape of model.pretrained={recipe.model.pretrained!r} here; "
                         "name a model folder or a shipped model there")
    from .recipe import pipeline_module
    space = build_space(search.methods, shape, search.kind)
    if index == 0 and space.left_out:
        study.set_user_attr("left_out", space.left_out)
    ctx = {"processes": fork_server(pipeline_module(recipe.pipeline).__name__), "folder": folder,
           "space": space, "base_lr": recipe.train.lr, "base": base,
           "shape": shape, "budget": search.budget, "metric": recipe.train.metric_for_best,
           "maximize": recipe.train.higher_is_better(), "env": gpu_of_worker(index, search.workers),
           "kind": space.kind}
    deadline = time.time() + search.timeout if search.timeout else None
    in_a_row = {"over_budget": 0, "failed": 0}
    while deadline is None or time.time() < deadline:
        with contextlib.ExitStack() as hold:
            with file_lock(folder / "ask.lock"):
                optuna.storages.fail_stale_trials(study)  # workers on other hosts, by heartbeat
                fail_dead_local_trials(study, storage, folder)
                trials = study.get_trials(deepcopy=False)
                if not trials:
                    enqueue_singles(study, space, search.trials, recipe.train.lr)
                waiting = any(t.state == TrialState.WAITING for t in trials)
                running = any(t.state == TrialState.RUNNING for t in trials)
                trial = None
                if waiting or counted(trials) < search.trials:
                    trial = study.ask()
                    storage.record_heartbeat(trial._trial_id)  # Trial has no public id; the storage wants it
                    tdir = trial_dir(folder, trial.number)
                    tdir.mkdir(parents=True, exist_ok=True)
                    hold.enter_context(file_lock(tdir / "running.lock"))  # taken before the ask lock is let go
                    trial.set_user_attr("host", socket.gethostname())
                    trial.set_user_attr("folder", str(folder.resolve()))
                    trial.set_user_attr("worker", f"{index}:{os.getpid()}")
            if trial is None:
                if not running:
                    return
                time.sleep(2 * POLL_S)  # another worker's trial: if its worker dies, its re-run comes back here
                continue
            line, end = run_trial(study, storage, trial, ctx)
        print(line, flush=True)
        if end == "not_hybrid":  # neither breaks nor extends a run of over-budget samples
            continue
        in_a_row = {kind: count + 1 if end == kind else 0 for kind, count in in_a_row.items()}
        if in_a_row["over_budget"] >= MAX_OVER_BUDGET:
            raise ValueError(f"--budget {search.budget:,}: {MAX_OVER_BUDGET} samples in a row exceed it; raise it "
                             "or restrict --methods")
        if in_a_row["failed"] >= MAX_FAILED:
            raise ValueError(f"{MAX_FAILED} trials in a row failed; the last: {line}")


# -- the command ------------------------------------------------------------------------------------

def settings_file(folder: Path) -> Path:
    return folder / "search.json"


def record_settings(search: Search) -> None:
    """Writes search.json the first time; a later search into the folder must define the same search."""
    from mambatune.core.atomic import atomic_write_text
    path = settings_file(search.folder)
    if path.is_file():
        old = json.loads(path.read_text())
        defaults = {f.name: f.default for f in dataclasses.fields(Search)}
        changed = [k for k in Search.DEFINING if old.get(k, defaults[k]) != getattr(search, k)]
        if changed:
            raise ValueError(f"{search.folder} holds a search with other {', '.join(changed)} "
                             f"({', '.join(f'{k}={old.get(k)!r}' for k in changed)}); resume it with the same ones "
                             "or give another --out")
    atomic_write_text(path, json.dumps(dataclasses.asdict(search), indent=2) + "\n")


def run_search(search: Search, pruner=None) -> Path:
    """Runs (or resumes) a search: ``search.workers`` worker processes on one study, then writes the
    search folder's trials.csv, best run link, best_recipe.yaml, plots and search_report.md.
    ``pruner``: an Optuna pruner object instead of ``search.pruner`` (one worker only)."""
    from .search_report import write_outputs
    optuna_module()
    if search.trials < 1 or search.workers < 1:
        raise ValueError("--trials and --workers must be at least 1")
    if pruner is not None and search.workers > 1:
        raise ValueError("a pruner object runs in one worker; name one of "
                         f"{', '.join(PRUNERS)} for several workers")
    make_pruner(search.pruner, optuna_module())
    check_switches(search.methods)
    check_kind(search.kind)
    base, recipe = base_recipe(search)
    folder = search.folder
    folder.mkdir(parents=True, exist_ok=True)
    record_settings(search)
    extra = []
    for i in range(1, search.workers):
        with open(folder / f"worker-{i}.log", "a") as log:  # the worker keeps its own copy of the descriptor
            extra.append(subprocess.Popen(
                [sys.executable, "-m", "mambatune.pipelines.search", str(folder), str(i)],
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=without_children))  # noqa: PLW1509 (no threads here)
    try:
        worker(search, 0, pruner)
    finally:
        for proc in extra:
            proc.wait()
    failed = [i for i, proc in enumerate(extra, 1) if proc.returncode != 0]
    if failed:
        print(f"worker(s) {failed} stopped with an error: see {folder}/worker-<i>.log", file=sys.stderr)
    study, _ = open_study(search, study_name(recipe.name, search), recipe.train.higher_is_better(), 0, pruner)
    return write_outputs(study, search, base, recipe)


def worker_main(argv: list[str]) -> int:
    """``python -m mambatune.pipelines.search <folder> <index>``: one extra worker of a running search."""
    folder, index = Path(argv[0]), int(argv[1])
    search = Search(**json.loads(settings_file(folder).read_text()))
    worker(search, index)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
