"""Long DNA windows: fine-tuning steps at 32,768 and 131,072 bp on real genome windows, one GPU.

    python -m mambatune.benchmarks.genomics_long --fasta 20.fa.gz [--model dna-mamba-1m]
        [--lengths 32768,131072] [--batch 8,2] [--json out.json]

Windows are random stretches of the FASTA with at most 10 % N (single-nucleotide tokens, the
DNATokenizer of the genomics recipes). Each row is one optimizer step of a binary classification
fine-tune (mean-pooled head, AdamW, bf16 autocast) of the shipped DNA model, full or LoRA
(in_proj, x_proj, out_proj, rank 8), with and without gradient checkpointing per block; median
step time of a few steps after a warm-up step, tokens/s and peak GPU memory. Issue 5 asks that
fine-tuning at these lengths runs on one GPU, with tokens/s and memory reported.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def windows(fasta: str, length: int, count: int, seed: int = 0) -> list[str]:
    from mambatune.domains.genomics import Genome

    rng = np.random.default_rng(seed)
    out = []
    with Genome(fasta) as genome:
        contigs = {c: n for c, n in genome.contigs.items() if n > length}
        if not contigs:
            raise SystemExit(f"{fasta} has no contig longer than {length} bp")
        names = list(contigs)
        for _ in range(count * 50):
            c = names[int(rng.integers(len(names)))]
            start = int(rng.integers(0, contigs[c] - length))
            seq = genome.fetch(c, start, start + length)
            if seq.upper().count("N") <= 0.1 * length:
                out.append(seq)
            if len(out) == count:
                return out
    raise SystemExit(f"found only {len(out)} windows of {length} bp with <= 10 % N")


def step_row(model_name: str, seqs: list[str], method: str, checkpointing: bool, steps: int) -> dict:
    from mambatune.core import peft
    from mambatune.core.checkpoints import load_pretrained
    from mambatune.domains.genomics import DNATokenizer
    from mambatune.pipelines.genomics import resolve_pretrained

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = load_pretrained(resolve_pretrained(model_name), head={"kind": "classification", "num_labels": 2,
                                                                   "pooling": "mean"}).cuda()
    if method == "lora":
        model = peft.apply(model, {"methods": [{"method": "lora", "targets": ["in_proj", "x_proj", "out_proj"],
                                                "rank": 8}]})
    model.backbone.gradient_checkpointing = checkpointing
    model.train()
    tok = DNATokenizer()
    ids = torch.tensor([tok.encode(s) for s in seqs], device="cuda")
    labels = torch.randint(0, 2, (len(seqs),), device="cuda")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    try:
        step()
        torch.cuda.synchronize()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    except torch.cuda.OutOfMemoryError:
        del model, opt
        torch.cuda.empty_cache()
        return {"tok_per_s": None, "peak_GiB": "OOM", "step_s": None}
    seconds = float(np.median(times))
    peak = torch.cuda.max_memory_allocated() / 2**30
    del model, opt
    return {"tok_per_s": round(ids.numel() / seconds), "peak_GiB": round(peak, 2), "step_s": round(seconds, 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fasta", required=True, help="a FASTA (plain or bgzip), e.g. vt-examples' 20.fa.gz")
    ap.add_argument("--model", default="dna-mamba-1m", help="a shipped DNA model's name or a model folder")
    ap.add_argument("--lengths", default="32768,131072")
    ap.add_argument("--batch", default="8,2", help="batch size per length, in the order of --lengths")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("the long-window benchmark needs a CUDA GPU", file=sys.stderr)
        return 2
    lengths = [int(x) for x in args.lengths.split(",")]
    batches = [int(x) for x in args.batch.split(",")]
    rows = []
    for length, batch in zip(lengths, batches):
        seqs = windows(args.fasta, length, batch)
        for method in ("full", "lora"):
            for ckpt in (False, True):
                r = step_row(args.model, seqs, method, ckpt, args.steps)
                rows.append({"length": length, "batch": batch, "method": method, "checkpointing": ckpt, **r})
                print(json.dumps(rows[-1]), flush=True)
    print(f"\ndevice: {torch.cuda.get_device_name()}; model {args.model}; bf16 autocast; AdamW\n")
    hdr = f"{'window bp':>10} {'batch':>5} {'method':6} {'ckpt':5} {'tok/s':>10} {'peak GiB':>9} {'step s':>7}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['length']:>10} {r['batch']:>5} {r['method']:6} {str(r['checkpointing']):5} "
              f"{str(r['tok_per_s']):>10} {str(r['peak_GiB']):>9} {str(r['step_s']):>7}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
