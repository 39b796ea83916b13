"""Where a training step's GPU time goes: torch.profiler over a few 130m-shape steps, top kernels by CUDA time.

    python -m mambatune.benchmarks.profile_step [--batch 8] [--length 2048] [--precision bf16-autocast]
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from mambatune.benchmarks.train_step import SHAPE, step_fn
from mambatune.core import MambaConfig, MambaForTask
from mambatune.core.training.precision import set_tf32


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--precision", default="bf16-autocast")
    ap.add_argument("--rows", type=int, default=30)
    ap.add_argument("--no-tf32", action="store_true",
                    help="fp32 matrix products in full fp32 (default: TF32, as the trainer)")
    args = ap.parse_args(argv)
    set_tf32(not args.no_tf32)
    torch.manual_seed(0)
    model = MambaForTask(MambaConfig(**SHAPE)).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, SHAPE["vocab_size"], (args.batch, args.length), device="cuda")
    for _ in range(3):
        step_fn(model, opt, ids, args.precision)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(2):
            step_fn(model, opt, ids, args.precision)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.rows, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
