"""Run logs: metrics.jsonl (one JSON object per line), TensorBoard on request, PNG curves."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from mambatune.core.atomic import atomic_write_text


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Records of a metrics.jsonl; a torn last line (a kill mid-write) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


class TensorBoardMissingError(ImportError, ValueError):
    """``tensorboard=True`` on a machine without TensorBoard."""


def require_tensorboard() -> None:
    """Raises :class:`TensorBoardMissingError` (one line that says what to install) unless TensorBoard is
    installed; cheap (finds the package without importing it)."""
    import importlib.util
    if importlib.util.find_spec("tensorboard") is None:
        raise TensorBoardMissingError(
            'train.tensorboard=true needs TensorBoard, which is not installed: pip install "mambatune[tensorboard]" '
            "(or set train.tensorboard=false: metrics.jsonl and plots/ hold the same curves)")


class MetricsLog:
    """Appends records to ``<run>/metrics.jsonl`` and, with ``tensorboard``, to ``<run>/tensorboard`` (TensorBoard
    event files; a :class:`TensorBoardMissingError` when TensorBoard is not installed)."""

    def __init__(self, run_dir: str | os.PathLike, tensorboard: bool = False, resume_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            # records past the checkpoint we resume from belong to a timeline that no longer exists
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self.file = open(self.path, "a")
        self.writer = None
        if tensorboard:
            require_tensorboard()
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    def log(self, record: dict) -> None:
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in record.items()}
        self.file.write(json.dumps(clean) + "\n")
        self.file.flush()
        if self.writer is not None:
            step = record.get("step", 0)
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()


def plot_curves(run_dir: str | os.PathLike, model: str | None = None, only_loss: bool = False) -> list[Path]:
    """Writes ``plots/loss.png`` (training and validation loss) and, unless ``only_loss``, one PNG per
    validation metric; each titled with the run (and its role: scratch twin, ensemble member) and
    ``model`` (default: what ``metrics.jsonl`` records). Returns the files."""
    from .figures import figure_title, legend_outside, metric_label, pyplot, save_figure

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
