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
