"""Best hybrid PEFT combination against the best single method, at equal trials and equal budget (issue 19).

    python -m mambatune.benchmarks.search --out runs/search-bench [--trials 8] [--domains genomics,documents,timeseries]
        [--timeout 170] [--workers 2] [--size gpu|tiny] [--n-boot 1000]

For each domain's task, two ``mambatune search`` studies of the same recipe, the same trials, the same
cap on the parameters the methods train (``--budget``), the same methods and the same seed: one whose
trials each use exactly one method (``kind=single``), one whose trials each combine two or more
(``kind=hybrid``; a sample with fewer is rejected before it trains and not counted). All six searches
run at once, one process each, with ``--workers`` workers on each study. Each arm's best trial is the best validation score among its first
``k`` trained trials, ``k`` the smaller of the two arms' counts (equal when neither hit ``--timeout``);
its kept checkpoint's test metric comes with a 95 % percentile bootstrap interval over test examples:

| domain | task (recipe) | test metric | bootstrap unit |
|---|---|---|---|
| genomics | promoter vs GC-matched windows, chr20 (``genomics/promoter_lora``) | AUROC | window |
| documents | licence category, 10 classes (``documents/license_lora``) | macro-F1 | document |
| time series | hourly electricity, 7 daily 24 h windows (``timeseries/forecast_lora``) | wQL | series-window |

``--size gpu`` keeps each recipe's CPU-sized data and adds bf16 and larger batches; ``--size tiny``
trains a few steps on the CPU (a check that the benchmark runs, not a result). Writes
``<out>/table.md`` and ``<out>/results.json``; each search folder is ``<out>/<domain>-<kind>``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

METHODS = ["lora", "lorap", "additional_scan", "partial"]  # MambaPEFT's strongest methods on Mamba
KINDS = ("single", "hybrid")
COMMON = ["eval.baselines=false", "train.plots=false", "train.tensorboard=false", "train.progress=false",
          "train.monitor_every=0"]
TASKS = {  # recipe, overrides for --size gpu / tiny, budget (method parameters), test metric
    "genomics": {
        "recipe": "genomics/promoter_lora",
        "gpu": ["model.pretrained=dna-mamba-120k", "data.scratch_baseline=false", "train.precision=bf16",
                "train.batch_size=32", "train.epochs=4", "train.eval_every=10"],
        "tiny": ["model.pretrained=dna-mamba-120k", "data.scratch_baseline=false", "data.window=100",
                 "train.max_steps=4", "train.eval_every=2", "data.n_boot=50"],
        "budget": 25_000, "metric": "AUROC"},
    "documents": {
        "recipe": "documents/license_lora",
        "gpu": ["model.pretrained=text-mamba-140k", "train.precision=bf16", "train.epochs=3", "train.eval_every=20"],
        "tiny": ["model.pretrained=text-mamba-140k", "data.max_length=128", "train.max_steps=4",
                 "train.eval_every=2"],
        "budget": 25_000, "metric": "macro-F1"},
    "timeseries": {
        "recipe": "timeseries/forecast_lora",
        "gpu": ["model.pretrained=series-mamba-500k", "data.scratch_baseline=false", "train.precision=bf16",
                "train.epochs=2", "train.eval_every=16"],
        "tiny": ["model.pretrained=series-mamba-500k", "data.scratch_baseline=false", "data.max_train_windows=64",
                 "data.num_samples=20", "data.windows=2", "train.max_steps=4", "train.eval_every=2"],
        "budget": 50_000, "metric": "wQL"},
}


# -- running the searches ----------------------------------------------------------------------------

def search_of(domain: str, kind: str, args):
    from mambatune.pipelines.search import Search
    task = TASKS[domain]
    return Search(recipe=task["recipe"], overrides=task[args.size] + COMMON, out=str(Path(args.out) / f"{domain}-{kind}"),
                  trials=args.trials, timeout=args.timeout, budget=task["budget"], methods=METHODS, seed=args.seed,
                  kind=kind, workers=args.workers)


def run_arm(domain: str, kind: str, args) -> None:
    """One search (``--arm domain kind``): what the benchmark starts once per domain and kind."""
    from mambatune.pipelines.search import run_search
    run_search(search_of(domain, kind, args))


def run_all(domains: list[str], args) -> None:
    """Every arm at once, one process each; each one's output in ``<out>/<domain>-<kind>.log``."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    procs = {}
    for domain in domains:
        for kind in KINDS:
            cmd = [sys.executable, "-m", "mambatune.benchmarks.search", "--arm", domain, kind, "--out", str(out),
                   "--trials", str(args.trials), "--size", args.size, "--seed", str(args.seed),
                   "--workers", str(args.workers)]
            if args.timeout:
                cmd += ["--timeout", str(args.timeout)]
            with open(out / f"{domain}-{kind}.log", "a") as log:
                procs[(domain, kind)] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    for (domain, kind), proc in procs.items():
        if proc.wait() != 0:
            print(f"{domain} {kind}: the search stopped with an error (see {out / f'{domain}-{kind}.log'})",
                  file=sys.stderr)


# -- test metrics with intervals ---------------------------------------------------------------------

def first_test_entry(run_dir: Path) -> tuple[str, dict]:
    """(name, metrics) of the fine-tuned model in the run's results.json (domain pipelines list it first)."""
    path = run_dir / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the run has no results.json (did it finish?)")
    test = json.loads(path.read_text()).get("test") or {}
    if not test or not all(isinstance(v, dict) for v in test.values()):
        raise ValueError(f"{path}: 'test' does not hold one entry per model")
    name = next(iter(test))
    return name, test[name]


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    return float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))


def genomics_test(run_dir: Path, n_boot: int) -> tuple[float, tuple[float, float]]:
    """AUROC and its interval as the run computed them (``data.n_boot`` resamples of the test windows)."""
    _, m = first_test_entry(run_dir)
    if "auroc_ci" not in m:
        raise ValueError(f"{run_dir / 'results.json'}: the test entry has no auroc_ci (data.n_boot=0?)")
    return float(m["auroc"]), tuple(m["auroc_ci"])


def documents_test(run_dir: Path, n_boot: int) -> tuple[float, tuple[float, float]]:
    """Macro-F1 over the test documents of predictions_test.csv, resampled by document."""
    from sklearn.metrics import f1_score
    path = run_dir / "predictions_test.csv"
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "label" not in rows[0] or "predicted" not in rows[0]:
        raise ValueError(f"{path}: expected one row per test document with label and predicted columns")
    truth = np.array([r["label"] for r in rows])
    pred = np.array([r["predicted"] for r in rows])
    labels = sorted(set(truth))  # the classes of the test set, as the run's macro-F1 counts them
    score = lambda idx: f1_score(truth[idx], pred[idx], labels=labels, average="macro", zero_division=0)  # noqa: E731
    rng = np.random.default_rng(0)
    boots = np.array([score(rng.integers(0, len(rows), len(rows))) for _ in range(n_boot)])
    return float(score(np.arange(len(rows)))), percentile_interval(boots)


WQL_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # the run's wQL (domains.timeseries.evaluation)


def timeseries_test(run_dir: Path, n_boot: int) -> tuple[float, tuple[float, float]]:
    """wQL (mean over the quantiles of 2 * pinball loss / sum |actual|) of forecasts.csv, resampled by
    series-window (item, forecast origin)."""
    import polars as pl
    name, m = first_test_entry(run_dir)
    path = run_dir / "forecasts.csv"
    frame = pl.read_csv(path).filter(pl.col("model") == name).drop_nulls("actual")
    if frame.height == 0:
        raise ValueError(f"{path}: no forecasts of model {name!r} (the first test entry of results.json)")
    windows = frame.group_by(["item_id", "origin"], maintain_order=True).agg(
        [pl.col("actual").abs().sum().alias("scale")]
        + [(2 * ((pl.col("actual") - pl.col(f"q{q}")) * (q - (pl.col("actual") < pl.col(f"q{q}")).cast(pl.Float64))))
           .sum().alias(f"loss{q}") for q in WQL_QUANTILES])
    scale = windows["scale"].to_numpy()
    losses = np.stack([windows[f"loss{q}"].to_numpy() for q in WQL_QUANTILES])  # [quantiles, windows]

    def wql(idx):
        return float(np.mean(losses[:, idx].sum(1) / scale[idx].sum()))
    rng = np.random.default_rng(0)
    boots = np.array([wql(rng.integers(0, len(scale), len(scale))) for _ in range(n_boot)])
    point = wql(np.arange(len(scale)))
    if "wQL" in m and abs(point - float(m["wQL"])) > 1e-3 * max(1.0, abs(float(m["wQL"]))):
        raise ValueError(f"{path}: wQL {point:.5f} from the forecasts differs from results.json's {m['wQL']:.5f}")
    return point, percentile_interval(boots)


TESTS = {"genomics": genomics_test, "documents": documents_test, "timeseries": timeseries_test}


# -- the table -------------------------------------------------------------------------------------

def trained_trials(folder: Path) -> list[dict]:
    """The trials of a search that trained, in the order they were asked (trials.csv rows with a run
    folder; trials rejected before training and runs whose worker was killed are left out)."""
    path = folder / "trials.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the search wrote no trials table (see {folder}.log)")
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["run_dir"] and "worker was killed" not in r["note"]]
    return sorted(rows, key=lambda r: int(r["number"]))


def best_row(rows: list[dict], maximize: bool) -> dict | None:
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"]]
    if not done:
        return None
    return (max if maximize else min)(done, key=lambda r: float(r["value"]))


def summarize(domains: list[str], args) -> dict:
    from mambatune.pipelines.recipe import load_recipe
    out = Path(args.out)
    results = {}
    for domain in domains:
        task = TASKS[domain]
        recipe = load_recipe(task["recipe"], task[args.size] + COMMON)
        maximize = recipe.train.higher_is_better()
        arms = {kind: trained_trials(out / f"{domain}-{kind}") for kind in KINDS}
        k = min(len(rows) for rows in arms.values())
        entry = {"recipe": task["recipe"], "overrides": task[args.size] + COMMON, "budget": task["budget"],
                 "methods": METHODS, "trials_each": k, "validation_metric": recipe.train.metric_for_best,
                 "test_metric": task["metric"], "arms": {}}
        for kind, rows in arms.items():
            used = rows[:k]
            best = best_row(used, maximize)
            arm = {"trained": len(rows), "complete": sum(r["state"] == "COMPLETE" for r in used),
                   "pruned": sum(r["state"] == "PRUNED" for r in used),
                   "seconds": round(sum(float(r["seconds"] or 0) for r in used), 1)}
            if best is not None:
                point, (lo, hi) = TESTS[domain](Path(best["run_dir"]), args.n_boot)
                arm |= {"trial": int(best["number"]), "methods": best["methods"],
                        "method_params": int(best["method_params"] or 0), "validation": float(best["value"]),
                        "test": point, "test_ci": [lo, hi], "lr": float(best.get("lr") or "nan")}
            entry["arms"][kind] = arm
        results[domain] = entry
    return results


def markdown(results: dict, device: str, date: str) -> str:
    lines = ["| domain | test metric | trials each (budget) | best single method: methods (params), val, test [95 % CI] "
             "| best hybrid: methods (params), val, test [95 % CI] |", "|---|---|---|---|---|"]
    for domain, e in results.items():
        cells = []
        for kind in KINDS:
            a = e["arms"][kind]
            if "test" not in a:
                cells.append(f"no completed trial ({a['trained']} trained)")
                continue
            cells.append(f"{a['methods']} ({a['method_params']:,}), {e['validation_metric']} {a['validation']:.4f}, "
                         f"**{a['test']:.3f}** [{a['test_ci'][0]:.3f}, {a['test_ci'][1]:.3f}]")
        lines.append(f"| {domain} | {e['test_metric']} | {e['trials_each']} ({e['budget']:,}) | {cells[0]} | {cells[1]} |")
    return f"Device: {device}; {date}.\n\n" + "\n".join(lines) + "\n"


def device_name() -> str:
    import torch
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"CPU ({os.cpu_count()} cores), torch {torch.__version__}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/search-bench")
    ap.add_argument("--trials", type=int, default=8, help="trained trials of each arm (single, hybrid)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds after which an arm starts no new trial")
    ap.add_argument("--workers", type=int, default=2, help="worker processes on each arm's study")
    ap.add_argument("--domains", default="genomics,documents,timeseries")
    ap.add_argument("--size", choices=("gpu", "tiny"), default="gpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--arm", nargs=2, metavar=("DOMAIN", "KIND"), help=argparse.SUPPRESS)
    ap.add_argument("--table-only", action="store_true", help="summarize finished searches in --out")
    args = ap.parse_args(argv)
    domains = [d for d in args.domains.split(",") if d]
    unknown = [d for d in domains if d not in TASKS]
    if unknown:
        ap.error(f"--domains: unknown {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    if args.arm:
        run_arm(args.arm[0], args.arm[1], args)
        return 0
    start = time.time()
    if not args.table_only:
        run_all(domains, args)
    results = summarize(domains, args)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    table = markdown(results, device_name(), date)
    out = Path(args.out)
    (out / "table.md").write_text(table)
    (out / "results.json").write_text(json.dumps({"device": device_name(), "date": date, "trials": args.trials,
                                                  "workers": args.workers, "timeout": args.timeout,
                                                  "size": args.size, "seconds": round(time.time() - start, 1),
                                                  "domains": results}, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
