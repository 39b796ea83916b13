"""What every domain pipeline does around its tasks: resolve the base model, run the task,
write results.json and report.md; and what the CLI verbs on a finished run share (open the run,
check the split, make a plain model, export it, report what input was skipped)."""
from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from mambatune.core.atomic import atomic_write_text


def default_model(env_var: str, shipped: Path | None, made_by_recipe: str) -> str:
    """What ``model.pretrained: default`` means: ``$env_var`` when set, else the model shipped with the
    package (pretrained by this project's recipe on a GPU, with its recipe and log beside it), else the
    folder the domain's pretraining recipe writes."""
    if os.environ.get(env_var):
        return os.environ[env_var]
    if shipped is not None and (shipped / "model.safetensors").is_file():
        return str(shipped)
    return made_by_recipe


def shipped_models() -> dict[str, Path]:
    """Every model shipped in the package by name (``dna-mamba-120k``, ``text-mamba-1m``, ...)."""
    import mambatune.domains as domains

    return {p.parent.name: p.parent for p in sorted(Path(domains.__path__[0]).glob("*/pretrained/*/model.safetensors"))}


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
        make_with, default = recipe_that_writes(path, make_with, default)
        raise FileNotFoundError(
            f"pretrained {what} {path!r} does not exist. Create one with `mambatune run {make_with}` "
            f"(it writes {default}; set train.output_dir to put it elsewhere), or set model.pretrained "
            "to a model folder" + (f" or a shipped model ({', '.join(names)})" if names else "")
            + ", or model.pretrained=null to train from scratch")
    return path


def recipe_that_writes(path: str, make_with: str, default: str) -> tuple[str, str]:
    """(the shipped recipe, its model folder) that makes ``path`` when ``path`` is a run's model folder named
    after a recipe of ``make_with``'s domain (``runs/pretrain_dna_mamba2/model`` -> genomics/pretrain_dna_mamba2);
    else ``(make_with, default)``."""
    from .recipe import RECIPES_DIR
    parts = Path(path).parts
    if len(parts) >= 2 and parts[-1] == "model":
        domain = make_with.split("/")[0]
        if (RECIPES_DIR / domain / f"{parts[-2]}.yaml").is_file():
            return f"{domain}/{parts[-2]}", path
    return make_with, default


def train_model(model, train_cfg, train_data, val_data, collate, metrics_fn, methods=None):
    """Applies ``methods`` (a PeftConfig; None or empty: full fine-tuning), prints the trainable
    parameters, trains; returns (the trained model, the TrainResult, the printed summary): the one
    fine-tune path, ``core.training.finetune`` (see it for torchrun: under FSDP the ranks other than the
    main one get ``None`` for the model). The run identity holds a fingerprint of ``train_data``, so a
    resume onto changed data is refused."""
    from mambatune.core.training.finetune import finetune

    return finetune(model, train_cfg, train_data, val_data, collate, metrics_fn, methods=methods)


def is_main_process() -> bool:
    """Whether this process scores, fits the baselines and writes the run's results (see
    ``core.training.distributed.is_main_process``): the only process, or rank 0 under torchrun."""
    from mambatune.core.training.distributed import is_main_process as rank_is_main
    return rank_is_main()


def announce_baselines(names: list[str]) -> None:
    """Prints which baselines the run fits now (one line; the main rank's only under torchrun)."""
    print(f"baselines: fitting {', '.join(names)}", flush=True)


def base_model_text(recipe, results: dict) -> str:
    """How a report names the base model: the recipe's setting and, when it differs, the folder it resolved to."""
    setting, folder = recipe.model.pretrained, results.get("base_model")
    if not setting:
        return "none (from scratch)"
    return setting if not folder or folder == setting else f"{setting} ({folder})"


def run_task(recipe, runners: dict[str, Callable], pretrained: str | None,
             write_report: Callable[[Path, object, dict], None]) -> Path:
    """Runs ``runners[recipe.data.task]`` and writes the run folder; the first model of
    ``results["test"]`` is ours, the others are the baselines of the same run. Under torchrun a runner
    trains on every rank and returns None on all but the main one, which alone writes the folder."""
    import torch

    from .recipe import save_resolved

    start = time.time()
    run_dir = Path(recipe.train.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    on_main = is_main_process()
    if on_main:
        save_resolved(recipe, run_dir)
    torch.manual_seed(recipe.data.seed)
    results = runners[recipe.data.task](recipe, run_dir, pretrained)
    if not on_main:  # under torchrun the runner trained on this rank and left the rest to rank 0
        return run_dir
    results["total_seconds"] = time.time() - start
    results.setdefault("base_model", pretrained)  # the folder `model.pretrained` resolved to (None: from scratch)
    main = next(iter(results["test"]))
    results["baselines"] = {k: v for k, v in results["test"].items() if k != main}
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2, default=float) + "\n")
    write_report(run_dir, recipe, results)
    return run_dir


def report_tail(run_dir: Path, results: dict, train: dict | None, no_training: str = "",
                plots_heading: str = "Plots") -> str:
    """The part every domain report ends with: training line, trainable parameters, plots (among them
    ``plots/comparison.png``, drawn here: our model beside the same run's baselines on the test metrics)."""
    from .comparison_figure import plot_comparison

    plot_comparison(run_dir, results)
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


def open_run(run_dir, pipeline: str):
    """(recipe, results) of a finished run of ``pipeline``; a clear error for a missing folder, a
    run of another pipeline, or one that did not finish (no results.json)."""
    from .recipe import load_resolved

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    recipe = load_resolved(run_dir)
    if recipe.pipeline != pipeline:
        raise ValueError(f"{run_dir} is a run of the {recipe.pipeline!r} pipeline, not {pipeline!r}")
    if not (run_dir / "results.json").is_file():
        raise FileNotFoundError(f"{run_dir} has no results.json: the run did not finish; run it again")
    return recipe, json.loads((run_dir / "results.json").read_text())


def check_split(split: str | None, recipe, allowed: tuple[str, ...] = ("train", "val", "test")) -> str:
    split = split or recipe.eval.split
    if split not in allowed:
        raise ValueError(f"--split must be one of {', '.join(allowed)} for a {recipe.pipeline} {recipe.data.task} "
                         f"run, got {split!r}")
    return split


MERGEABLE = {"lora", "head_only", "partial", "top_layers"}  # methods whose result is a plain model


def plain_model(model):
    """The model without PEFT wrappers: LoRA merged into the base weights; other methods that add
    modules a plain model has no place for raise."""
    from mambatune.core import peft

    state = getattr(model, "peft_state", None)
    if state is None:
        return model
    methods = {m.method for m in state.config.methods}
    if methods - MERGEABLE:
        raise ValueError(f"export merges LoRA only; this run uses {sorted(methods - MERGEABLE)}, whose parameters "
                         "have no place in a plain model. Keep the run folder (base + adapter) instead.")
    if "lora" in methods:
        peft.merge(model, unload=True)
    model.peft_state = None
    return model


def export_model(model, out, meta: dict, tokenizer_spec: dict | None = None) -> dict:
    """Writes ``out/hf`` (the backbone as a Hugging Face ``MambaForCausalLM``: the model's own LM head
    when it is a language model, else an LM head tied to the embedding), ``out/head`` (a task head:
    ``head.json`` with its spec + ``head.safetensors``) and, for a ``MambaForTask``, ``out/model`` (our
    format, what ``load_pretrained`` reads). Returns the manifest written to ``out/export.json``;
    an architecture Hugging Face Mamba cannot hold (bidirectional, RC-equivariant) is named there.
    ``hf/`` gets the tokenizer as Hugging Face tokenizer files: ``tokenizer_spec`` (a mambatune-tokenizer
    dict), else the run's own (``<run_dir>/model/tokenizer.json`` or ``<run_dir>/tokenizer.json``)."""
    import dataclasses

    from safetensors.torch import save_file

    from mambatune.core import MambaForTask
    from mambatune.core.atomic import atomic_write, atomic_write_json
    from mambatune.core.checkpoints import CheckpointError, export_hf, save_pretrained
    from mambatune.core.heads import LMHead

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = plain_model(model).cpu().eval()
    manifest = {"exported_from": meta.get("run_dir"), **meta, "written": []}
    if isinstance(model, MambaForTask):
        save_pretrained(model, out / "model", meta=meta)
        manifest["written"].append("model")
    is_lm = isinstance(getattr(model, "head", None), LMHead)
    if not is_lm:
        head = model.head
        spec = dict(getattr(head, "spec", {}) or {"kind": type(head).__name__})
        (out / "head").mkdir(exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
        atomic_write(out / "head" / "head.safetensors", lambda f: save_file(tensors, f, metadata={"format": "pt"}))
        atomic_write_json(out / "head" / "head.json", {"format": "mambatune-head", "head": spec, "meta": meta})
        manifest["written"].append("head")
    try:
        lm = model if is_lm else MambaForTask(dataclasses.replace(model.config, tie_embeddings=True),
                                              backbone=model.backbone)
        export_hf(lm, out / "hf")
        manifest["written"].append("hf")
        export_hf_tokenizer(out / "hf", tokenizer_spec, meta.get("run_dir"), manifest)
        if not is_lm:
            manifest["hf_note"] = "the LM head of hf/ is tied to the embedding: use hf/ as a backbone"
    except CheckpointError as err:
        manifest["hf_skipped"] = str(err)
    atomic_write_json(out / "export.json", manifest)
    return manifest


def export_hf_tokenizer(folder: Path, spec: dict | None, run_dir: str | None, manifest: dict) -> None:
    """Writes ``spec`` (else the run's saved tokenizer spec) into ``folder`` as Hugging Face tokenizer files;
    ``manifest`` says what was written or why not."""
    from mambatune.core.hf_tokenizer import TokenizerExportError, save_hf_tokenizer

    for candidate in ([] if spec is not None or not run_dir else
                      [Path(run_dir) / "model" / "tokenizer.json", Path(run_dir) / "tokenizer.json"]):
        if candidate.is_file():
            found = json.loads(candidate.read_text())
            if isinstance(found, dict) and found.get("format") == "mambatune-tokenizer":
                spec = found
                break
    if spec is None:
        manifest["hf_tokenizer_skipped"] = "the run holds no mambatune-tokenizer file"
        return
    try:
        save_hf_tokenizer(spec, folder)
        manifest["hf_tokenizer"] = spec.get("kind")
    except TokenizerExportError as err:
        manifest["hf_tokenizer_skipped"] = str(err)


def report_skipped(what: str, counts: dict[str, int]) -> None:
    """Prints, on stderr, what ``predict`` read and what it could not score (nothing is dropped silently)."""
    import sys

    shown = ", ".join(f"{k}: {v}" for k, v in counts.items() if v)
    print(f"{what}: {shown or 'nothing to report'}", file=sys.stderr)


@contextmanager
def head_from_the_run():
    """The finished-run verbs (``evaluate``, ``predict``, ``export``, ensembles' ``combine_runs``) build a run's
    model from its base with a new head and then load the run's trained head (and adapter) over it, so the
    loader's "newly initialised (train these): head.*" would be untrue there: inside this context (also usable
    as a decorator) it is not logged. Every other loader message still is."""

    def drop_new_head(record: logging.LogRecord) -> bool:
        return "newly initialised" not in record.getMessage()

    logger = logging.getLogger("mambatune.core.checkpoints")
    logger.addFilter(drop_new_head)
    try:
        yield
    finally:
        logger.removeFilter(drop_new_head)
