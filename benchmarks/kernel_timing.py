"""What the kernel benchmarks (ssd.py, norm.py) measure alike: an output's error against a reference, and
the GPU memory one call allocates above what is there before it."""
from __future__ import annotations

import torch


def rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative L2 error in float64; inf when ``out`` holds NaN or inf."""
    out, ref = out.double(), ref.double()
    if not torch.isfinite(out).all():
        return float("inf")
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def call_extra_mib(fn, leaves) -> float:
    """MiB of GPU memory at the peak of one ``fn()`` above what was allocated before it; the ``leaves``'
    gradients are cleared before and after, so neither counts."""
    for v in leaves:
        v.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    for v in leaves:
        v.grad = None
    return peak
