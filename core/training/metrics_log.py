"""Run logs: metrics.jsonl (one JSON object per line), optional TensorBoard, PNG curves."""
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


class MetricsLog:
    """Appends records to ``<run>/metrics.jsonl`` and, when TensorBoard is installed, to ``<run>/tensorboard``."""

    def __init__(self, run_dir: str | os.PathLike, tensorboard: bool = True, resume_step: int | None = None):
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
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
            except (ImportError, ModuleNotFoundError):
                self.writer = None  # tensorboard is optional: metrics.jsonl has everything

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


def plot_curves(run_dir: str | os.PathLike) -> list[Path]:
    """Writes ``plots/loss.png`` (train and eval loss) and one PNG per eval metric; returns the files."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    out_dir = run_dir / "plots"
    out_dir.mkdir(exist_ok=True)
    written = []

    def series(key):
        pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and "step" in r]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("train/loss", "train"), ("eval/loss", "eval")):
        xs, ys = series(key)
        if xs:
            ax.plot(xs, ys, marker="o" if key.startswith("eval") else None, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "loss.png", dpi=100)
    plt.close(fig)
    written.append(out_dir / "loss.png")

    keys = sorted({k for r in records for k in r if k.startswith("eval/") and k != "eval/loss"})
    for key in keys:
        xs, ys = series(key)
        if not xs:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(xs, ys, marker="o")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        name = key.replace("/", "_") + ".png"
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        written.append(out_dir / name)
    return written
