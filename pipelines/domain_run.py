"""What every domain pipeline does around its tasks: resolve the base model, run the task,
write results.json and report.md, and answer CLI verbs it does not support yet."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable


def default_model(env_var: str, shipped: Path | None, made_by_recipe: str) -> str:
    """What ``model.pretrained: default`` means: ``$env_var`` when set, else the model shipped with the
    package (pretrained by this project's recipe on a GPU, with its recipe and log beside it), else the
    folder the domain's pretraining recipe writes."""
    if os.environ.get(env_var):
        return os.environ[env_var]
    if shipped is not None and (shipped / "model.safetensors").is_file():
        return str(shipped)
    return made_by_recipe


def resolve_pretrained(path: str | None, env_var: str, default: str, make_with: str, what: str,
                       shipped: Path | None = None) -> str | None:
    """The base model's folder. ``None``: from scratch; ``default``: see :func:`default_model`; the name
    of a shipped model (a folder beside ``shipped``, e.g. ``dna-mamba-1m``): that model. A folder that
    does not exist is an error that says how to make one."""
    if path is None:
        return None
    if path == "default":
        path = default_model(env_var, shipped, default)
    if not Path(path).exists() and shipped is not None and (shipped.parent / path / "model.safetensors").is_file():
        path = str(shipped.parent / path)  # a shipped model by name, e.g. dna-mamba-1m
    if not Path(path).exists():
        names = sorted(p.name for p in shipped.parent.iterdir() if p.is_dir()) if shipped is not None and \
            shipped.parent.is_dir() else []
        raise FileNotFoundError(
            f"pretrained {what} {path!r} does not exist. Create one with `mambatune run {make_with}` "
            f"(it writes {default}; set train.output_dir to put it elsewhere), or set model.pretrained "
            "to a model folder" + (f" or a shipped model ({', '.join(names)})" if names else "")
            + ", or model.pretrained=null to train from scratch")
    return path


def base_model_text(recipe, results: dict) -> str:
    """How a report names the base model: the recipe's setting and, when it differs, the folder it resolved to."""
    setting, folder = recipe.model.pretrained, results.get("base_model")
    if not setting:
        return "none (from scratch)"
    return setting if not folder or folder == setting else f"{setting} ({folder})"


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
    results.setdefault("base_model", pretrained)  # the folder `model.pretrained` resolved to (None: from scratch)
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
