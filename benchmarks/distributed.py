"""Multi-GPU scaling of a 130m-shape training step with the project's own DDP / FSDP wrapping.

    torchrun --nproc-per-node 1 -m mambatune.benchmarks.distributed --strategy ddp
    torchrun --nproc-per-node 2 -m mambatune.benchmarks.distributed --strategy ddp --json out.json

Each rank trains on its own batch (B per rank x L), bf16 autocast, AdamW; rank 0
prints global tokens/s (all ranks' tokens per optimizer step / median step time)
and the peak memory of one GPU. Scaling = tokens/s on N GPUs / tokens/s on 1.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
import torch.distributed as dist

from mambatune.core import MambaConfig, MambaForTask
from mambatune.core.training import distributed as D


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategy", default="ddp", choices=["ddp", "fsdp"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    env = D.setup(args.strategy, "cuda")
    torch.manual_seed(0)
    model = MambaForTask(MambaConfig(d_model=768, n_layer=24, vocab_size=50277)).to(env.device)
    model = D.wrap(model, env)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    g = torch.Generator(device="cpu").manual_seed(env.rank)
    ids = torch.randint(0, 50277, (args.batch, args.length), generator=g).to(env.device)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        if env.active:
            dist.barrier()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        step()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    ms = statistics.median(times)
    if env.is_main:
        res = {"strategy": args.strategy if env.active else "single", "gpus": env.world_size,
               "batch_per_gpu": args.batch, "length": args.length, "step_ms": round(ms, 1),
               "tok_per_s": round(env.world_size * args.batch * args.length / (ms / 1e3)),
               "peak_GiB_per_gpu": round(torch.cuda.max_memory_allocated() / 2**30, 2),
               "device": torch.cuda.get_device_name()}
        print(json.dumps(res))
        if args.json:
            Path(args.json).write_text(json.dumps(res))
    D.teardown(env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
