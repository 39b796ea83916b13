"""The ``mambatune`` command: list, models, run, eval, predict, advise, export, ensemble."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

EPILOG = """examples:
  mambatune list
  mambatune models
  mambatune run generic/sequence_classification_lora train.epochs=2 train.output_dir=runs/demo
  mambatune eval runs/demo --split val
  mambatune predict runs/demo "Permission is granted to copy this document"
  mambatune predict runs/promoter regions.bed --genome hg38.fa -o scores.tsv
  mambatune predict runs/vep variants.vcf --genome hg38.fa -o variants.csv
  mambatune predict runs/forecast series.csv -o forecasts.csv
  mambatune advise --examples 20000 --gpu-memory 24
  mambatune export runs/demo exported/
  mambatune ensemble runs/license_seed0 runs/license_seed1 runs/license_seed2 --out runs/license_ensemble
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mambatune", description="Fine-tune Mamba models from recipes.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"mambatune {package_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the shipped recipes and the commands that run them")
    sub.add_parser("models", help="the shipped pretrained models (model.pretrained takes their names)")
    r = sub.add_parser("run", help="run a recipe (a shipped name or a YAML path) with key=value overrides")
    r.add_argument("recipe")
    r.add_argument("overrides", nargs="*", help="dotted key=value, e.g. train.lr=3e-4 peft.methods.0.rank=4")
    r.add_argument("--dry-run", action="store_true", help="print the resolved recipe and stop")
    e = sub.add_parser("eval", help="score a finished run on a split of its data")
    e.add_argument("run_dir")
    e.add_argument("--split", default=None, help="train, val or test (default: the recipe's eval.split)")
    pr = sub.add_parser("predict", help="predict with a finished run")
    pr.add_argument("run_dir")
    pr.add_argument("input", help="generic runs: a CSV / TSV / parquet (the recipe's text column), a .txt (one per "
                    "line) or a text; genomics: a FASTA, a BED / CSV / TSV of regions or a VCF (both with --genome); "
                    "documents: a folder of .txt files, a .txt, or a JSONL / CSV / TSV / parquet with a text column; "
                    "time series: a long CSV / parquet (item_id, timestamp, target) or GluonTS JSON lines")
    pr.add_argument("--output", "-o", default=None, help="write CSV (TSV when it ends in .tsv) here instead of stdout")
    pr.add_argument("--genome", default=None, help="genomics: the reference FASTA that regions and variants refer to")
    pr.add_argument("--text-column", default=None, help="documents: the table's text column (default: the run's "
                    "data.text_column, else 'text')")
    pr.add_argument("--id-column", default=None, help="documents: the table's id column (default: the run's "
                    "data.id_column, else 'id', else the row number)")
    a = sub.add_parser("advise", help="recommend full / PEFT / head-only from data size, model size and GPU memory")
    a.add_argument("--examples", type=int, required=True, help="number of training examples")
    a.add_argument("--gpu-memory", type=float, default=None, help="GPU memory in GiB (leave out, or 0, on a CPU)")
    a.add_argument("--params", type=float, default=130e6, help="model parameters (default 130e6; the shipped "
                   "models' sizes: `mambatune models`)")
    c = sub.add_parser("cp", help="copy a shipped recipe to a file of your own, to edit and run")
    c.add_argument("recipe", help="a shipped recipe name (see `mambatune list`)")
    c.add_argument("dest", help="the new YAML file (must not exist)")
    x = sub.add_parser("export", help="write a standalone model folder (LoRA merged) from a run")
    x.add_argument("run_dir")
    x.add_argument("out")
    n = sub.add_parser("ensemble", help="combine finished runs of one pipeline (e.g. other seeds) into one ensemble "
                       "run folder: documents classify and genomics promoter / vep (finetune) runs (mean "
                       "probabilities), time-series forecast runs (pooled forecasts)")
    n.add_argument("runs", nargs="+", metavar="RUN", help="run folders; an ensemble run contributes its members")
    n.add_argument("--out", required=True, help="the new ensemble run folder (must not exist, or be empty)")
    s = sub.add_parser("search", help="search hybrid PEFT methods and learning rate for a recipe (Optuna; see docs/search.md)")
    s.add_argument("recipe")
    s.add_argument("overrides", nargs="*", help="dotted key=value applied to every trial, e.g. train.epochs=3")
    s.add_argument("--trials", type=int, default=20, help="trials in the study in all (a resumed search runs the rest)")
    s.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    s.add_argument("--storage", default=None, help="an Optuna storage URL (default: sqlite in the search folder)")
    s.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    s.add_argument("--pruner", default="median", choices=["median", "hyperband", "none"])
    s.add_argument("--budget", type=float, default=None, help="most parameters the PEFT methods may train (head not counted)")
    s.add_argument("--methods", default=None, help="comma-separated switches to search (default all: "
                   "lora,lorap,prompt,affix,additional_scan,partial,parallel_adapter)")
    s.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    s.add_argument("--kind", default="any", choices=["any", "single", "hybrid"], help="which combinations a trial "
                   "may take: any, exactly one method (single) or two or more (hybrid); a single and a hybrid "
                   "search of equal trials compare the two fairly (docs/search.md)")
    s.add_argument("--out", default=None, help="the search folder (default: the recipe's train.output_dir + '-search')")
    return p


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("mambatune")
    except PackageNotFoundError:
        return "unknown (not installed)"


def recipe_summary(path: Path) -> dict:
    """task, method and model of a shipped recipe, read from the file itself."""
    import yaml
    raw = yaml.safe_load(path.read_text()) or {}
    data, model = raw.get("data") or {}, raw.get("model") or {}
    methods = [m.get("method") for m in (raw.get("peft") or {}).get("methods") or []]
    task = data.get("task") or ("classify" if raw.get("pipeline") == "sequence_classification" else "")
    config = model.get("config") or {}
    shape = f"new d{config['d_model']}x{config.get('n_layer', '?')}" if config.get("d_model") else "new"
    method = "+".join(m for m in methods if m) or "full"
    if "pretrain" in task:
        method = "pretraining"
    elif "zeroshot" in task:
        method = "zero-shot"
    return {"task": task, "method": method,
            "model": model.get("pretrained") or shape}


def cmd_list() -> int:
    """One line per shipped recipe: task, method, model and the measured time on 2 CPU cores and on a GPU
    (pipelines/recipe_times.py says where each was measured), then how to run and copy one."""
    from .recipe import RECIPES_DIR, list_recipes, recipe_command
    from .recipe_times import recipe_times
    rows = []
    for path in list_recipes():
        name = path.relative_to(RECIPES_DIR).with_suffix("").as_posix()
        info = recipe_summary(path)
        cpu, gpu = recipe_times(name)
        rows.append((name, info["task"], info["method"], str(info["model"]), cpu.short(), gpu.short(),
                     recipe_command(path)))
    head = ("recipe", "task", "method", "model", "2-core CPU", "GPU")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print("  ".join(f"{h:{w}s}" for h, w in zip(head, widths)).rstrip())
    for row in rows:
        print("  ".join(f"{v:{w}s}" for v, w in zip(row, widths)).rstrip())
    print("times: a whole `mambatune run` (training, same-run baselines, report), measured; busy = on a 2-core "
          "machine shared with other jobs; GPU figures use the GPU-size overrides in each recipe's header "
          "(sources: mambatune/pipelines/recipe_times.py)")
    print("run one: " + (rows[0][6] if rows and rows[0][6] else "mambatune run <recipe>") +
          "   (each recipe's first line gives its command)")
    print("start one of your own: mambatune cp <recipe> my.yaml, edit it, then mambatune run my.yaml")
    return 0


def cmd_cp(args) -> int:
    from .recipe import resolve_recipe_path
    source = resolve_recipe_path(args.recipe)
    dest = Path(args.dest)
    if dest.exists():
        raise FileExistsError(f"{dest} exists; choose a new file name")
    if dest.suffix.lower() not in (".yaml", ".yml"):
        raise ValueError(f"{dest}: name the copy with a .yaml ending")
    text = source.read_text()
    lines = text.splitlines(keepends=True)
    if lines and lines[0].startswith("# mambatune run "):
        lines[0] = f"# mambatune run {dest}\n"
    dest.write_text(f"".join(lines))
    print(f"copied {source} to {dest}; run it with: mambatune run {dest}")
    return 0


def shipped_models() -> list[dict]:
    """Every pretrained model shipped in the package: domain, name, parameters, held-out score."""
    import math

    from safetensors import safe_open

    from . import documents, genomics, timeseries
    from .domain_run import shipped_models as shipped_folders

    defaults = {p.parent.parent.name: p.name for p in (genomics.SHIPPED_DNA_MODEL, documents.SHIPPED_TEXT_MODEL,
                                                       timeseries.SHIPPED_SERIES_MODEL)}
    rows = []
    for model_dir in shipped_folders().values():
        domain = model_dir.parent.parent.name
        with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
            params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
        score = ""
        results = model_dir / "results.json"
        if results.is_file():
            test = json.loads(results.read_text()).get("test", {})
            ours = next(iter(test.values()), {})
            key = next((k for k in ("bits_per_base", "bits_per_byte", "MASE") if k in ours), None)
            if key:
                score = f"{key} {ours[key]:.3f}"
        rows.append({"domain": domain, "name": model_dir.name, "parameters": params, "held_out": score,
                     "default": defaults.get(domain) == model_dir.name, "path": str(model_dir)})
    return rows


def cmd_models() -> int:
    for r in shipped_models():
        mark = "  (default)" if r["default"] else ""
        print(f"{r['domain']:11s} {r['name']:18s} {r['parameters']:>10,} params  {r['held_out']:22s}{mark}")
    print("use: model.pretrained=<name>; each folder holds the recipe and training log that made it")
    return 0


def cmd_run(args) -> int:
    import yaml
    from .recipe import load_recipe
    from .registry import get as pipeline_module
    recipe = load_recipe(args.recipe, args.overrides)
    if args.dry_run:
        print(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
        return 0
    if getattr(recipe.train, "tensorboard", False):
        from mambatune.core.training.metrics_log import require_tensorboard
        require_tensorboard()  # at the start, not after the data is read and the model built
    module = pipeline_module(recipe.pipeline)
    from mambatune.core.training.distributed import is_main_process
    if getattr(recipe.data, "cv_folds", None) and getattr(recipe.data, "fold", None) is None:
        from .cross_validation import console_summary, run_folds
        run_dir = run_folds(recipe, module.run)
        if is_main_process():
            print(console_summary(run_dir))
        return 0
    run_dir = module.run(recipe)
    if not is_main_process():  # under torchrun this rank trained; rank 0 scores and writes results.json
        return 0
    ensure_comparison_figure(Path(run_dir), recipe.name)
    print(results_table(run_dir))
    return 0


def ensure_comparison_figure(run_dir: Path, name: str) -> None:
    """plots/comparison.png (our model beside the same run's baselines) for a run whose report did not draw it."""
    from .comparison_figure import plot_comparison
    results = run_dir / "results.json"
    if results.is_file() and not (run_dir / "plots" / "comparison.png").exists():
        plot_comparison(run_dir, json.loads(results.read_text()), name)


def results_table(run_dir: Path) -> str:
    """A few lines for the console: each model's main test metrics (ours first, then the same-run baselines) and
    where the run folder is; everything else is in results.json and report.md."""
    from .cross_validation import key_metrics, test_metrics

    results = json.loads((Path(run_dir) / "results.json").read_text())
    models = test_metrics(results)
    metrics = key_metrics(models) if models else []
    lines = []
    if metrics:
        width = max(len(m) for m in models) + 2
        cols = [max(12, len(m) + 2) for m in metrics]
        lines.append("test" + " " * (width - 4) + "".join(f"{m:>{c}s}" for m, c in zip(metrics, cols)))
        for model, values in models.items():
            lines.append(f"{model:<{width}s}" + "".join(f"{values[m]:>{c}.4g}" if m in values else " " * c
                                                          for m, c in zip(metrics, cols)))
    lines.append(f"run folder: {run_dir} (report.md, results.json)")
    return "\n".join(lines)


def head_from_the_run():
    """domain_run.head_from_the_run (imported when used: the CLI's start stays light)."""
    from .domain_run import head_from_the_run as quiet

    return quiet()


def refuse_cv_folder(run_dir: str, verb: str) -> None:
    from .cross_validation import is_cv_folder
    if is_cv_folder(run_dir):
        raise ValueError(f"{run_dir} is a cross-validation folder (one run per fold): run `mambatune {verb}` on one "
                         f"fold's folder, e.g. {Path(run_dir) / 'fold-0'}; the folds' summary is in cv_report.md")


def cmd_eval(args) -> int:
    from mambatune.core.atomic import atomic_write_text

    from .recipe import load_resolved
    from .registry import get as pipeline_module
    refuse_cv_folder(args.run_dir, "eval")
    recipe = load_resolved(args.run_dir)
    split = args.split or recipe.eval.split
    with head_from_the_run():
        metrics = pipeline_module(recipe.pipeline).evaluate(args.run_dir, split)
    text = json.dumps(metrics, indent=2, default=float) + "\n"
    atomic_write_text(Path(args.run_dir) / f"eval_{split}.json", text)
    print(text, end="")
    return 0


def cmd_predict(args) -> int:
    from . import registry
    from .recipe import load_resolved
    from .registry import get as pipeline_module
    refuse_cv_folder(args.run_dir, "predict")
    recipe = load_resolved(args.run_dir)
    module = pipeline_module(recipe.pipeline)
    options = registry.entry(recipe.pipeline).predict_options
    for name, flag, what in (("genome", "--genome", "genomics"), ("text_column", "--text-column", "documents"),
                             ("id_column", "--id-column", "documents")):
        if getattr(args, name) is not None and name not in options:
            raise ValueError(f"{flag} applies to {what} runs; {args.run_dir} is a {recipe.pipeline} run")
    extra = {name: getattr(args, name) for name in options}
    with head_from_the_run():
        rows = module.predict(args.run_dir, module.read_inputs(args.input, recipe, **extra))
    fields = list(dict.fromkeys(k for row in rows for k in row)) or ["text", "label", "probability"]
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        delimiter = "\t" if args.output and args.output.lower().endswith(".tsv") else ","
        w = csv.DictWriter(out, fieldnames=fields, delimiter=delimiter)
        w.writeheader()
        w.writerows(rows)
    finally:
        if args.output:
            out.close()
    if args.output:
        print(f"{len(rows)} rows written to {args.output}", file=sys.stderr)
    return 0


def cmd_advise(args) -> int:
    from .advise import advise
    print(advise(args.examples, args.gpu_memory, args.params))
    return 0


def cmd_export(args) -> int:
    from .recipe import load_resolved
    from .registry import get as pipeline_module
    refuse_cv_folder(args.run_dir, "export")
    recipe = load_resolved(args.run_dir)
    with head_from_the_run():
        out = pipeline_module(recipe.pipeline).export(args.run_dir, args.out)
    print(f"exported to {out}")
    return 0


def cmd_ensemble(args) -> int:
    """Dispatches on the runs' pipeline (all the same) to its ensemble module's ``combine_runs``."""
    from . import registry
    from .recipe import load_resolved
    pipelines = {run: load_resolved(run).pipeline for run in args.runs}
    kinds = sorted(set(pipelines.values()))
    if len(kinds) > 1:
        listed = ", ".join(f"{run} ({p})" for run, p in pipelines.items())
        raise ValueError(f"mambatune ensemble combines runs of one pipeline; these mix {' and '.join(kinds)}: {listed}")
    try:
        module = registry.ensemble_module(kinds[0])
    except registry.PipelineError as err:
        raise ValueError(f"{err} ({args.runs[0]} is a {kinds[0]} run)") from None
    keys = registry.entry(kinds[0]).ensemble_metrics
    with head_from_the_run():
        out = module.combine_runs(args.runs, args.out)
    results = json.loads((out / "results.json").read_text())
    print(json.dumps({"run_dir": str(out), "test": {k: {m: v[m] for m in keys if m in v}
                                                    for k, v in results["test"].items()}}, indent=2, default=float))
    return 0


def cmd_search(args) -> int:
    from .recipe import load_recipe
    from .search import Search, run_search
    out = args.out or load_recipe(args.recipe, args.overrides).train.output_dir.rstrip("/") + "-search"
    run_search(Search(recipe=args.recipe, overrides=args.overrides, out=out, trials=args.trials, timeout=args.timeout,
                      storage=args.storage, workers=args.workers, pruner=args.pruner,
                      budget=int(args.budget) if args.budget is not None else None,
                      methods=args.methods.split(",") if args.methods else None, seed=args.seed,
                      kind=args.kind))
    return 0


def quiet_third_party_warnings() -> None:
    """Warnings of libraries about their own setup, which users cannot act on, stay off the console."""
    import warnings
    warnings.filterwarnings("ignore", message=r"Using `json`-module for json-handling", category=UserWarning)


def report_native_crashes_under_torchrun() -> None:
    """A process torchrun launched that dies in native code (an abort inside a collective library, a
    segfault) prints the Python stack of each of its threads on stderr, so the rank's last line of the run's
    log says where it was; torchrun itself reports only the signal."""
    import faulthandler
    import os
    launched = os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1")  # a bad value: launch_env says so
    if launched and not faulthandler.is_enabled():
        faulthandler.enable(all_threads=True)


def main(argv: list[str] | None = None) -> int:
    from .recipe import RecipeError
    args = parser().parse_args(argv)
    quiet_third_party_warnings()
    report_native_crashes_under_torchrun()
    commands = {"list": lambda: cmd_list(), "models": lambda: cmd_models(), "run": lambda: cmd_run(args),
                "cp": lambda: cmd_cp(args), "eval": lambda: cmd_eval(args),
                "predict": lambda: cmd_predict(args), "advise": lambda: cmd_advise(args),
                "export": lambda: cmd_export(args), "ensemble": lambda: cmd_ensemble(args),
                "search": lambda: cmd_search(args)}
    try:
        return commands[args.command]()
    except (RecipeError, FileNotFoundError, FileExistsError, KeyError, ValueError) as err:
        print(f"mambatune {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader closed the pipe (e.g. `mambatune predict ... | head`): stop quietly
        import io
        import os
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush does not fail
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        return 0
    except KeyboardInterrupt:
        print(f"mambatune {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug or an environment problem: one readable line, the traceback on request
        import os
        if os.environ.get("MAMBATUNE_DEBUG"):
            raise
        print(f"mambatune {args.command}: unexpected error ({type(err).__name__}: {err}). Set MAMBATUNE_DEBUG=1 "
              "to see the traceback, and please report it with the command you ran.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
