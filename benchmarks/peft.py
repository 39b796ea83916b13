"""PEFT benchmark: tokens/s and peak memory per token of each method on the 130m shape.

    python -m mambatune.benchmarks.peft [--batch 8] [--length 2048] [--json out.json]
    python -m mambatune.benchmarks.peft --long 1048576   # also one step at L = 1M with gradient checkpointing

The long-context rows use bf16 weights with a bf16 residual stream and a
mean-pooled classification head (no L x vocab logits), batch 1; "offload" keeps
the checkpointed block inputs in host memory.

All rows are measured side by side in one run on one GPU (AdamW, LM loss on
random tokens). Target (issue 4, after Halloran et al. 2024, MPFT + PEFT):
bf16 + LoRA at least 2.15x the tokens/s of full fp32 fine-tuning and at least
65.5 % lower peak memory per token.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mambatune.benchmarks.train_step import measure


def methods():
    from mambatune.core.peft import (AdditionalScanConfig, AffixConfig, LoRAConfig, PromptConfig)

    return [
        ("full fp32", "fp32", "full"),
        ("full bf16", "bf16-autocast", "full"),
        ("LoRA(in_proj,x_proj) r8 bf16", "bf16-autocast", LoRAConfig(targets=["in_proj", "x_proj"], rank=8)),
        ("LoRAp(X) r8 bf16", "bf16-autocast", LoRAConfig(targets=["in_proj"], rank=8, output_slice="x")),
        ("additional-scan +8 bf16", "bf16-autocast", AdditionalScanConfig(num_states=8)),
        ("affix 8 bf16", "bf16-autocast", AffixConfig(num_tokens=8)),
        ("prompt 16 bf16", "bf16-autocast", PromptConfig(num_tokens=16)),
        ("head-only bf16", "bf16-autocast", "head-only"),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--long", type=int, default=0, help="also run one LoRA bf16 step at this length, batch 1, checkpointed")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("the PEFT benchmark needs a CUDA GPU", file=sys.stderr)
        return 2
    rows = []
    tokens = args.batch * args.length
    for name, precision, method in methods():
        try:
            r = measure(args.batch, args.length, precision, method, "auto")
            r["bytes_per_token"] = round(r["peak_GiB"] * 2**30 / tokens)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            r = {"tok_per_s": None, "peak_GiB": "OOM", "trainable": None, "bytes_per_token": None}
        rows.append((name, r))
    if args.long:
        from mambatune.core.peft import LoRAConfig

        for name, method, ckpt in [("long LoRA bf16 ckpt", LoRAConfig(targets=["in_proj", "x_proj"], rank=8), True),
                                   ("long LoRA bf16 ckpt+offload", LoRAConfig(targets=["in_proj", "x_proj"], rank=8), "offload"),
                                   ("long full bf16 ckpt+offload", "full", "offload")]:
            try:
                r = measure(1, args.long, "bf16", method, "auto", steps=1, warmup=1, checkpointing=ckpt, classify=True)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                r = {"tok_per_s": None, "peak_GiB": "OOM", "trainable": None, "step_ms": None}
            rows.append((f"{name} B1xL{args.long}", r))
    base = rows[0][1]
    print(f"\ndevice: {torch.cuda.get_device_name()}; B{args.batch} x L{args.length}\n")
    hdr = f"{'method':34} {'tok/s':>9} {'x fp32':>7} {'peak GiB':>9} {'mem/tok vs fp32':>16} {'trainable':>11} {'step ms':>9}"
    print(hdr)
    print("-" * len(hdr))
    for name, r in rows:
        speed = f"{r['tok_per_s'] / base['tok_per_s']:.2f}" if r.get("tok_per_s") and base.get("tok_per_s") else "-"
        mem = "-"
        if r.get("bytes_per_token") and base.get("bytes_per_token"):
            mem = f"{100 * (1 - r['bytes_per_token'] / base['bytes_per_token']):+.1f}% less"
        print(f"{name:34} {r.get('tok_per_s') or '-':>9} {speed:>7} {r['peak_GiB']:>9} {mem:>16} "
              f"{r.get('trainable') or '-':>11} {r.get('step_ms') or '-':>9}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
