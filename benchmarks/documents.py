"""Long-document throughput: training and inference tokens/s and peak memory of a byte-level Mamba
document classifier at 16K and 64K tokens per document, next to a Transformer encoder of the same
width and depth (PyTorch SDPA, flash attention under bf16) run side by side.

    python -m mambatune.benchmarks.documents [--lengths 16384,65536] [--shapes text-m,130m] [--json out.json]

One document per step (batch 1), bf16 autocast, AdamW, mean-pooled classification head over 11
classes (the licence task). A training row that runs out of memory is retried with gradient
checkpointing per block and marked "ckpt". Issue 7's target: report both figures at 16K and 64K.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

SHAPES = {"text-m": (128, 8), "130m": (768, 24)}  # d_model, n_layer
VOCAB, CLASSES = 260, 11


class TransformerClassifier(nn.Module):
    """Pre-norm Transformer encoder + mean pooling: the quadratic-attention peer."""

    def __init__(self, d_model: int, n_layer: int, max_len: int):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, max(1, d_model // 64), 4 * d_model, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layer, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.score = nn.Linear(d_model, CLASSES)
        self.checkpointing = False

    def forward(self, input_ids):
        x = self.embed(input_ids) + self.pos(torch.arange(input_ids.shape[1], device=input_ids.device))
        for layer in self.encoder.layers:
            if self.checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
        return self.score(self.norm(x).mean(1))


def mamba(d_model: int, n_layer: int):
    from mambatune.core import MambaConfig, MambaForTask, build_head

    cfg = MambaConfig(d_model=d_model, n_layer=n_layer, vocab_size=VOCAB, d_state=16)
    return MambaForTask(cfg, build_head("classification", d_model, num_labels=CLASSES, pooling="mean"))


def logits_of(model, ids):
    out = model(input_ids=ids)
    return out["logits"] if isinstance(out, dict) else getattr(out, "logits", out)


def set_checkpointing(model, on: bool) -> None:
    if hasattr(model, "backbone"):
        model.backbone.gradient_checkpointing = on
    else:
        model.checkpointing = on


def timed(fn, steps: int) -> float:
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(steps):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2] / 1e3


def measure(make, length: int, train: bool, steps: int) -> dict:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = make().cuda()
    ids = torch.randint(0, VOCAB, (1, length), device="cuda")
    labels = torch.randint(0, CLASSES, (1,), device="cuda")
    note = ""
    if train:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(logits_of(model, ids).float(), labels)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        model.train()
        try:
            seconds = timed(step, steps)
        except torch.cuda.OutOfMemoryError:
            opt.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            set_checkpointing(model, True)
            note = "ckpt"
            try:
                seconds = timed(step, steps)
            except torch.cuda.OutOfMemoryError:
                del model, opt
                torch.cuda.empty_cache()
                return {"tok_per_s": None, "peak_GiB": "OOM", "note": "OOM with ckpt"}
    else:
        model.eval()

        @torch.no_grad()
        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits_of(model, ids)
        seconds = timed(step, steps)
    peak = torch.cuda.max_memory_allocated() / 2**30
    del model
    return {"tok_per_s": round(length / seconds), "peak_GiB": round(peak, 2), "ms": round(seconds * 1e3, 2), "note": note}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="16384,65536")
    ap.add_argument("--shapes", default="text-m,130m")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("the documents benchmark needs a CUDA GPU", file=sys.stderr)
        return 2
    rows = []
    for shape in args.shapes.split(","):
        d, n = SHAPES[shape]
        for length in [int(x) for x in args.lengths.split(",")]:
            for mode in ("train", "infer"):
                ours = measure(lambda: mamba(d, n), length, mode == "train", args.steps)
                peer = measure(lambda: TransformerClassifier(d, n, length), length, mode == "train", args.steps)
                rows.append({"shape": shape, "length": length, "mode": mode, "mamba": ours, "transformer": peer})
                print(json.dumps(rows[-1]), flush=True)
    print(f"\ndevice: {torch.cuda.get_device_name()}; batch 1, bf16 autocast, byte vocab, 11-class head\n")
    hdr = (f"{'shape':7} {'L':>6} {'mode':5} {'mamba tok/s':>12} {'GiB':>6} {'transformer tok/s':>18} {'GiB':>6} "
           f"{'mamba / transformer':>20}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        m, t = r["mamba"], r["transformer"]
        ratio = f"{m['tok_per_s'] / t['tok_per_s']:.2f}x" if m.get("tok_per_s") and t.get("tok_per_s") else "-"
        print(f"{r['shape']:7} {r['length']:>6} {r['mode']:5} {str(m['tok_per_s']) + (' ' + m['note'] if m['note'] else ''):>12} "
              f"{m['peak_GiB']:>6} {str(t['tok_per_s']) + (' ' + t['note'] if t.get('note') else ''):>18} {t['peak_GiB']:>6} {ratio:>20}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": torch.cuda.get_device_name(), "time": time.ctime(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
