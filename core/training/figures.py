"""One look for every PNG a run writes: a title naming the run and its model, readable axis labels,
legends beside the data (never over it), and the figure's text kept in the PNG itself.

Every plotting function of the package (the training curves here, the domains' ROC / PR, confusion and
forecast charts, the pipelines' comparison of our model with the same run's baselines) ends in
:func:`save_figure`, which writes the PNG with its titles and labels as PNG text chunks;
:func:`figure_text` reads them back, so a test (or a script) can check what a picture says without
looking at its pixels.

Who the run is comes from its folder: ``<run>/scratch`` is the same-run twin trained from a new
model, ``<run>/member-<k>`` one member of an ensemble, and the Trainer records its model's description
in ``metrics.jsonl`` (:func:`describe_model`, :func:`run_model_text`), so a plot drawn after training
names the model that made it.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .metrics_log import read_metrics

# how a metric key reads on an axis or in a legend
METRIC_NAMES = {
    "loss": "loss", "auroc": "AUROC", "auprc": "AUPRC", "accuracy": "accuracy", "macro_f1": "macro-F1",
    "micro_f1": "micro-F1", "weighted_f1": "weighted F1", "mcc": "MCC", "pearson": "Pearson r",
    "spearman": "Spearman rank correlation", "r2": "R²", "mse": "mean squared error", "mae": "mean absolute error",
    "MASE": "MASE", "sMAPE": "sMAPE", "MSIS": "MSIS", "wQL": "weighted quantile loss", "ND": "normalised deviation",
    "bits_per_base": "bits per base", "bits_per_byte": "bits per byte", "perplexity": "perplexity",
    "lr": "learning rate", "grad_norm": "gradient norm", "tokens_per_s": "tokens per second",
}
SPLIT_NAMES = {"eval": "validation", "train": "training", "val": "validation", "test": "test"}
LOWER_IS_BETTER = {"loss", "mse", "mae", "MASE", "sMAPE", "MSIS", "wQL", "ND", "bits_per_base", "bits_per_byte",
                   "perplexity"}


def metric_label(key: str) -> str:
    """``eval/auroc`` -> ``AUROC (validation)``; ``macro_f1`` -> ``macro-F1``; an unknown key loses its
    underscores."""
    split, _, name = key.rpartition("/")
    text = METRIC_NAMES.get(name, name.replace("_", " "))
    return f"{text} ({SPLIT_NAMES.get(split, split)})" if split else text


def run_role(run_dir: str | Path) -> str:
    """The run's name as a title says it: ``promoter_full``, ``promoter_full: scratch twin (same
    architecture, no pretraining)``, ``license_full: ensemble member 2``."""
    run_dir = Path(run_dir)
    name = run_dir.name
    if name == "scratch":
        return f"{run_dir.parent.name}: scratch twin (same architecture, no pretraining)"
    member = re.fullmatch(r"member-(\d+)", name)
    if member:
        return f"{run_dir.parent.name}: ensemble member {member.group(1)}"
    return name


def describe_model(model) -> str:
    """What a model is, in one line: its base (the pretrained folder's name, or a new model), shape,
    parameters and how it trains, e.g. ``dna-mamba-120k (d64×4, 120,578 parameters), LoRA``."""
    def found(name):  # on the model or, for a wrapper (a document classifier, a forecaster), on a part of it
        return next((getattr(m, name) for m in model.modules() if getattr(m, name, None) is not None), None)

    report = found("load_report")
    base = Path(report.path).name if report is not None and getattr(report, "path", None) else "new model"
    config = found("config")
    shape = f"d{config.d_model}×{config.n_layer}, " if hasattr(config, "d_model") and hasattr(config, "n_layer") else ""
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    state = found("peft_state")
    methods = [m.method for m in state.config.methods] if state is not None else []
    if methods:
        how = " + ".join("LoRA" if m == "lora" else m.replace("_", "-") for m in methods)
    elif trainable == total:
        how = "full fine-tuning" if base != "new model" else "trained from scratch"
    else:
        how = f"{trainable:,} of the parameters trained"
    return f"{base} ({shape}{total:,} parameters), {how}"


def run_model_text(run_dir: str | Path) -> str:
    """The model a run trained, as the Trainer recorded it in ``metrics.jsonl`` (its last ``start`` or
    ``resumed`` record); an ensemble run names its members' model. "" when the folder records none."""
    run_dir = Path(run_dir)
    for record in reversed(read_metrics(run_dir / "metrics.jsonl")):
        if record.get("event") in ("start", "resumed") and record.get("model"):
            return str(record["model"])
    members = sorted(run_dir.glob("member-*"))
    if members:
        first = run_model_text(members[0])
        return f"ensemble of {len(members)} × {first}" if first else f"ensemble of {len(members)} models"
    return ""


def figure_title(run_dir: str | Path, model: str | None = None, what: str = "", name: str = "") -> str:
    """Two lines: ``<what> — <run>`` and the model (``model``, else what the run folder records).
    ``name`` (e.g. the recipe's name) leads the run's part when given; the folder is named too when its
    name differs."""
    run_dir = Path(run_dir)
    run = run_role(run_dir)
    if name and name != run:
        run = f"{name} (run folder {run_dir.name})" if run_dir.name != name else name
    model = model if model is not None else run_model_text(run_dir)
    head = f"{what} — {run}" if what else run
    return f"{head}\n{model}" if model else head


def run_dir_of(path: str | Path) -> Path:
    """The run folder a plot is written into: the parent of the ``plots`` folder above ``path`` (a file
    or a folder), else ``path``'s own folder."""
    path = Path(path)
    for parent in [path, *path.parents]:
        if parent.name == "plots":
            return parent.parent
    return path if path.is_dir() or not path.suffix else path.parent


def legend_outside(ax, **kwargs) -> None:
    """The legend to the right of the axes, so it never hides a curve (``save_figure`` keeps it in frame)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False,
                  fontsize=kwargs.pop("fontsize", 8), **kwargs)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Writes ``fig`` to ``path`` (a PNG; the folder is made) with everything outside the axes in frame,
    and its text (title, each axes' title, labels and whether its legend sits outside) as PNG metadata
    (see :func:`figure_text`); closes the figure. Returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.set_layout_engine("constrained")  # the heading, axes titles and an outside legend never overlap
    suptitle = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
    axes = []
    for ax in fig.get_axes():
        if not ax.get_label() == "<colorbar>":
            legend = ax.get_legend()
            outside = None
            if legend is not None:
                anchor = legend.get_bbox_to_anchor().transformed(ax.transAxes.inverted())
                outside = bool(anchor.x0 >= 1.0 or anchor.y0 >= 1.0 or anchor.x1 <= 0.0 or anchor.y1 <= 0.0)
            axes.append({"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                         "legend": [t.get_text() for t in legend.get_texts()] if legend is not None else [],
                         "legend_outside": outside})
    text = {"title": suptitle or (axes[0]["title"] if axes else ""), "axes": axes}
    fig.savefig(path, dpi=dpi, bbox_inches="tight",
                metadata={"Title": text["title"], "Description": json.dumps(text), "Software": "mambatune"})
    plt.close(fig)
    return path


def figure_text(path: str | Path) -> dict:
    """What :func:`save_figure` recorded in a PNG: ``{"title": ..., "axes": [{"title", "xlabel", "ylabel",
    "legend", "legend_outside"}, ...]}``; ``{}`` for a PNG written some other way."""
    from PIL import Image

    with Image.open(path) as image:
        description = image.text.get("Description") if hasattr(image, "text") else None
    try:
        return json.loads(description) if description else {}
    except ValueError:
        return {}


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_curves(run_dir: str | os.PathLike, model: str | None = None, only_loss: bool = False) -> list[Path]:
    """Writes ``plots/loss.png`` (training and validation loss) and, unless ``only_loss``, one PNG per
    validation metric; each titled with the run (and its role: scratch twin, ensemble member) and
    ``model`` (default: what ``metrics.jsonl`` records). Returns the files."""
    plt = pyplot()
    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    out_dir = run_dir / "plots"
    written = []

    def series(key):
        pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))
               and not isinstance(r.get(key), bool) and "step" in r]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key in ("train/loss", "eval/loss"):
        xs, ys = series(key)
        if xs:
            ax.plot(xs, ys, marker="o" if key.startswith("eval") else None, ms=3, label=metric_label(key))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("training and validation loss", fontsize=9)
    legend_outside(ax)
    ax.grid(alpha=0.3)
    fig.suptitle(figure_title(run_dir, model), fontsize=10)
    written.append(save_figure(fig, out_dir / "loss.png", dpi=100))
    if only_loss:
        return written

    keys = sorted({k for r in records for k in r if k.startswith("eval/") and k != "eval/loss"})
    for key in keys:
        xs, ys = series(key)
        if not xs:
            continue
        fig, ax = plt.subplots(figsize=(6.5, 4))
        ax.plot(xs, ys, marker="o", ms=3)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(metric_label(key))
        ax.set_title(f"{metric_label(key)} during training", fontsize=9)
        ax.grid(alpha=0.3)
        fig.suptitle(figure_title(run_dir, model), fontsize=10)
        written.append(save_figure(fig, out_dir / (key.replace("/", "_") + ".png"), dpi=100))
    return written
