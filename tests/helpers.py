"""Shared test helpers (imported by tests; not part of the package)."""
from __future__ import annotations

import re
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Max abs error relative to the max magnitude of ``expected``; inf when either holds NaN/Inf."""
    a, e = actual.detach().double(), expected.detach().double()
    if a.shape != e.shape:
        raise AssertionError(f"shape {tuple(a.shape)} != {tuple(e.shape)}")
    if not torch.isfinite(a).all() or not torch.isfinite(e).all():
        return float("inf")
    scale = e.abs().max().item() if e.numel() else 0.0
    return (a - e).abs().max().item() / max(scale, 1e-12) if a.numel() else 0.0


def assert_close(actual, expected, tol: float, what: str = "") -> None:
    err = rel_err(actual, expected)
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.1e}"


def python_blocks(doc: str | Path) -> list[str]:
    """The ```python code blocks of a markdown page, in order."""
    text = Path(doc).read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)
