"""What every domain pipeline does around its tasks: resolve the base model, run the task,
write results.json and report.md, and answer CLI verbs it does not support yet."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable


def resolve_pretrained(path: str | None, env_var: str, default: str, make_with: str, what: str) -> str | None:
    """The base model's folder. ``None``: from scratch; ``default``: ``$env_var`` or ``default``.
    A folder that does not exist is an error that says how to make one."""
    if path is None:
        return None
    if path == "default":
        path = os.environ.get(env_var, default)
    if not Path(path).exists():
        raise FileNotFoundError(
            f"pretrained {what} {path!r} does not exist. Create one with `mambatune run {make_with}` "
            f"(it writes {default}; set train.output_dir to put it elsewhere), or set model.pretrained "
            "to a model folder, or model.pretrained=null to train from scratch")
    return path


def run_task(recipe, runners: dict[str, Callable], pretrained: str | None,
             write_report: Callable[[Path, object, dict], None]) -> Path:
    """Runs ``runners[recipe.data.task]`` and writes the run folder; the first model of
    ``results["test"]`` is ours, the others are the baselines of the same run."""
    import torch

    from .recipe import save_resolved

    start = time.time()
    run_dir = Path(recipe.train.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_resolved(recipe, run_dir)
    torch.manual_seed(recipe.data.seed)
    results = runners[recipe.data.task](recipe, run_dir, pretrained)
    results["total_seconds"] = time.time() - start
    main = next(iter(results["test"]))
    results["baselines"] = {k: v for k, v in results["test"].items() if k != main}
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    write_report(run_dir, recipe, results)
    return run_dir


def report_tail(run_dir: Path, results: dict, train: dict | None, no_training: str = "",
                plots_heading: str = "Plots") -> str:
    """The part every domain report ends with: training line, trainable parameters, plots."""
    train_line = (f"Training: {train['steps']} optimizer steps, best step {train['best_step']}, "
                  f"{train['seconds']:.0f} s." if train else no_training)
    plots = "\n".join(f"![{p.stem}](plots/{p.name})" for p in sorted((run_dir / "plots").glob("*.png")))
    return f"""{train_line} Total {results['total_seconds']:.0f} s.

## Trainable parameters

```
{results.get('summary') or '(none)'}
```

## {plots_heading}

{plots}
"""


def unsupported_verbs(domain: str, hint: str):
    """``evaluate, predict, export, read_inputs`` that raise a clear error for this domain's runs."""
    def verb(command: str):
        def stub(run_dir, *args, **kwargs):
            raise ValueError(f"`mambatune {command}` does not support {domain} runs yet; {hint}")
        return stub

    def read_inputs(source: str, recipe) -> list[str]:
        raise ValueError(f"`mambatune predict` does not support {domain} runs yet; {hint}")

    return verb("eval"), verb("predict"), verb("export"), read_inputs
