"""mambatune search on the CPU: tiny searches of the generic recipe (a 1-layer d_model=8 model, 3 steps a trial).

One in-process search (4 counted trials, a pruner that deterministically prunes the first trial run after a
completed one, a budget that the seeded "LoRA alone" trial exceeds) serves the pruning, budget, output and
rerun tests; one search through the CLI with two workers is killed with SIGKILL and resumed; the docs
example runs as written; the single / hybrid kinds restrict what a trial samples (a non-hybrid sample of
a hybrid search is rejected before it trains).
"""
import csv
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("optuna")
import optuna  # noqa: E402

from mambatune.core import MambaConfig, MambaForTask, SequenceClassificationHead, peft  # noqa: E402
from mambatune.pipelines import search_space  # noqa: E402
from mambatune.pipelines.search import Search, counted, open_study, run_search, study_name, base_recipe  # noqa: E402

from .conftest import tiny_recipe  # noqa: E402

FAST = {"epochs": 1, "eval_every": 1, "plots": False, "tensorboard": False, "monitor_every": 0, "progress": False}
BUDGET = 500  # LoRA alone (rank 8 on in_proj, x_proj, out_proj) trains 712 parameters of the tiny model; prompt alone 128


def fast_recipe(tmp_path: Path, epochs: int = 1) -> Path:
    path = tiny_recipe(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["train"].update(FAST, epochs=epochs)
    raw["eval"]["baselines"] = False
    path.write_text("# mambatune run tiny.yaml\n" + yaml.safe_dump(raw))
    return path


class PruneFirstAfterComplete(optuna.pruners.BasePruner):
    """Prunes, at its first validation score, the first trial that runs after one has completed; only that one."""

    def prune(self, study, trial) -> bool:
        trials = study.get_trials(deepcopy=False)
        if any(t.state.name == "PRUNED" and not t.user_attrs.get("over_budget") for t in trials):
            return False
        return any(t.state.name == "COMPLETE" for t in trials)


def load(search: Search):
    _, recipe = base_recipe(search)
    return open_study(search, study_name(recipe.name, search), recipe.train.higher_is_better())[0]


def workers_with_trials(out: Path) -> set[str]:
    """The worker indices that have asked for a trial so far, read from the study's SQLite file without
    Optuna (which would create the schema that the search may be creating at the same moment)."""
    db = out / "study.db"
    if not db.is_file():
        return set()
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            rows = con.execute("select value_json from trial_user_attributes where key = 'worker'").fetchall()
    except sqlite3.Error:  # the tables are not there yet
        return set()
    return {json.loads(value).split(":")[0] for (value,) in rows}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search")
    # 100 steps a run (4 an epoch), an evaluation after each: far longer than the search's 0.5 s poll even on a
    # fast idle machine, so the pruned run is stopped mid-way (with 6 steps, an idle machine finished it first)
    search = Search(recipe=str(fast_recipe(tmp, epochs=25)), overrides=[], out=str(tmp / "search"), trials=4,
                    methods=["lora", "prompt"], budget=BUDGET)
    run_search(search, pruner=PruneFirstAfterComplete())
    return search, load(search).get_trials()


def test_search_counts_trials_and_prunes_one(searched):
    _, trials = searched
    assert counted(trials) == 4
    by_pruner = [t for t in trials if t.state.name == "PRUNED" and not t.user_attrs.get("over_budget")]
    assert len(by_pruner) == 1
    pruned = by_pruner[0]
    assert pruned.intermediate_values, "the pruner acts on a reported validation score"
    assert not (Path(pruned.user_attrs["run_dir"]) / "results.json").exists(), "the pruned run was stopped"
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    for t in done:  # the objective is the run's best validation loss (the tiny recipe's metric_for_best)
        scores = [json.loads(line)["eval/loss"] for line in
                  (Path(t.user_attrs["run_dir"]) / "metrics.jsonl").read_text().splitlines() if "eval/loss" in line]
        assert t.value == pytest.approx(min(scores))


def test_budget_is_respected(searched):
    _, trials = searched
    over = [t for t in trials if t.user_attrs["method_params"] > BUDGET]
    assert over and over[0].user_attrs["methods"] == "lora", "the seeded LoRA-alone trial exceeds the budget"
    for t in over:
        assert t.state.name == "PRUNED" and t.user_attrs["over_budget"] and "run_dir" not in t.user_attrs
    for t in trials:
        if "run_dir" in t.user_attrs:
            assert t.user_attrs["method_params"] <= BUDGET
            # the run's own count: the methods' parameters plus the head's (2 labels x 8 + 2)
            assert t.user_attrs["trainable_params"] == t.user_attrs["method_params"] + 18


def test_outputs(searched):
    search, trials = searched
    folder = Path(search.out)
    with open(folder / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["number"]) for r in rows] == [t.number for t in trials]
    assert {r["state"] for r in rows} <= {"COMPLETE", "PRUNED"}
    assert any("over the parameter budget" in r["note"] for r in rows)
    best = min((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert (folder / "best").resolve() == Path(best.user_attrs["run_dir"]).resolve()
    for plot in ("optimization_history", "param_importances"):
        assert (folder / "plots" / f"{plot}.png").stat().st_size > 1000
    report = (folder / "search_report.md").read_text()
    assert "| best hybrid |" in report and "| best single method |" in report and "test accuracy" in report


def test_best_recipe_reruns_to_the_same_validation_score(searched, tmp_path):
    from mambatune.pipelines.cli import main
    search, trials = searched
    best = min((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    recipe = Path(search.out) / "best_recipe.yaml"
    raw = yaml.safe_load(recipe.read_text())
    assert raw["peft"]["methods"] == json.loads(best.user_attrs["peft"])
    assert main(["run", str(recipe), f"train.output_dir={tmp_path / 'rerun'}"]) == 0
    scores = [r["eval/loss"] for r in map(json.loads, (tmp_path / "rerun" / "metrics.jsonl").read_text().splitlines())
              if "eval/loss" in r]
    assert min(scores) == pytest.approx(best.value, abs=1e-6)


def test_resume_after_sigkill_with_two_workers(tmp_path):
    recipe = fast_recipe(tmp_path)
    out = tmp_path / "search"
    args = [str(recipe), "--trials", "4", "--methods", "lora,prompt", "--workers", "2", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "mambatune.pipelines.cli", "search", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    search = Search(recipe=str(recipe), overrides=[], out=str(out), trials=4, methods=["lora", "prompt"])
    try:  # kill the search once both workers have a trial and one run has logged a validation score
        deadline = time.time() + 300
        while time.time() < deadline:
            if len(workers_with_trials(out)) == 2 and any("eval/loss" in p.read_text() for p in out.glob("trials/*/run/metrics.jsonl")):
                break
            assert proc.poll() is None, "the search ended before it could be killed"
            time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    before = {t.number: t for t in load(search).get_trials()}
    assert sum(t.state.name == "RUNNING" for t in before.values()) >= 1
    assert len({t.user_attrs["worker"].split(":")[0] for t in before.values()}) == 2, "two workers, one study"

    search.workers = 2
    run_search(search)
    after = load(search).get_trials()
    assert counted(after) == 4 and all(t.state.name in ("COMPLETE", "PRUNED", "FAIL") for t in after)
    killed = [t for t in after if t.state.name == "FAIL"]
    assert {t.number for t in killed} == {n for n, t in before.items() if t.state.name == "RUNNING"}
    for t in killed:  # each killed trial runs again exactly once, with the parameters it had drawn
        retries = [r for r in after if r.user_attrs.get("retry_of") == t.number]
        assert len(retries) == 1 and retries[0].state.name != "FAIL"
        # a worker killed while sampling (e.g. between the methods and the learning rate) leaves a trial
        # with only some parameters; the retry keeps those and draws the rest
        assert {k: retries[0].params[k] for k in t.params} == t.params
    for n, t in before.items():  # trials that had ended are kept as they were
        if t.state.name in ("COMPLETE", "PRUNED"):
            assert after[n].state == t.state and after[n].value == t.value
    resumed = {t.user_attrs["worker"] for t in after if t.number >= len(before)}
    assert len(resumed) >= 1
    with open(out / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sum("worker was killed" in r["note"] for r in rows) == len(killed)


@pytest.mark.parametrize("arch", ["mamba1", "mamba2"])
def test_space_applies_to_the_backbone_and_counts_what_apply_trains(arch):
    assert set(search_space.SWITCHES.values()) <= set(peft.METHODS)
    extra = {"arch": "mamba2", "headdim": 8} if arch == "mamba2" else {}
    config = MambaConfig(d_model=16, n_layer=2, d_state=4, vocab_size=16, **extra)
    space = search_space.build_space(None, config)
    if arch == "mamba2":  # its mixer has no x_proj / dt_proj; additional-scan adds states per group there
        assert "additional_scan" in space.switches
        assert all("x_proj" not in c for c in space.lora_targets) and space.lora_targets
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):
        methods, lr = search_space.sample(study.ask(), space, 1e-3)
        assert 1e-4 <= lr <= 1e-2
        model = MambaForTask(config, SequenceClassificationHead(16, num_labels=2))
        peft.apply(model, peft.PeftConfig(methods=methods, train_head=False))
        trained = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head."))
        assert search_space.method_params(config, methods) == trained


def test_docs_example_runs(tmp_path, monkeypatch):
    page = Path(__file__).resolve().parents[2] / "docs" / "search.md"
    code = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert code
    monkeypatch.chdir(tmp_path)
    for i, block in enumerate(code):
        exec(compile(block, f"search.md[python block {i}]", "exec"), {"__name__": f"docs_{i}"})


@pytest.mark.parametrize("kind", ["single", "hybrid"])
def test_kind_restricts_the_combinations_and_rejects_before_training(kind, tmp_path):
    from mambatune.pipelines.search_trial import run_trial
    config = MambaConfig(d_model=16, n_layer=2, d_state=4, vocab_size=16)
    space = search_space.build_space(["lora", "prompt", "additional_scan"], config, kind)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    if kind == "single":  # one categorical 'method', no on/off switches; the usual settings enqueue as trials name them
        assert search_space.single("prompt", space, 1e-3) == {"method": "prompt", "prompt.num_tokens": 16, "lr": 1e-3}
        for _ in range(8):
            trial = study.ask()
            methods, _ = search_space.sample(trial, space, 1e-3)
            assert search_space.kind_of(methods) == "single" and trial.params["method"] in space.switches
            assert not set(space.switches) & set(trial.params)
        return
    # a budget of 0 rejects every hybrid too, so nothing trains (the context has no processes to run one)
    ctx = {"folder": tmp_path, "space": space, "base_lr": 1e-3, "kind": "hybrid", "shape": config, "budget": 0}
    ends = [run_trial(study, None, study.ask(), ctx) for _ in range(12)]
    assert {end for _, end in ends} == {"not_hybrid", "over_budget"}
    rejected = [t for t in study.get_trials() if t.user_attrs.get("not_hybrid")]
    assert rejected and all(search_space.kind_of(json.loads(t.user_attrs["peft"])) != "hybrid" for t in rejected)
    assert all(t.state.name == "PRUNED" for t in rejected) and counted(rejected) == 0
    assert sum(end == "not_hybrid" for _, end in ends) == len(rejected)
    with pytest.raises(ValueError, match="at least two methods"):
        search_space.build_space(["lora"], config, "hybrid")
    with pytest.raises(ValueError, match="kind must be one of"):
        search_space.build_space(None, config, "pairs")
