"""Evaluation under torchrun: every rank reading the whole eval set against each rank reading its share.

    torchrun --nproc-per-node 2 -m mambatune.benchmarks.eval_split --strategy ddp --json out.json

A 130m-shape sequence classifier (bf16 autocast) evaluates N random sequences of L tokens through
``Trainer.evaluate``, with ``split_across_ranks`` off and on (median of ``--repeats`` timings after one
warm-up each). Rank 0 prints both times, their ratio, and the largest difference between the two
evaluations' metrics (they must agree).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mambatune.core import MambaConfig, MambaForTask, build_head
from mambatune.core.training import Trainer, TrainConfig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategy", default="ddp", choices=["ddp", "fsdp", "none"])
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model = MambaForTask(MambaConfig(d_model=768, n_layer=24, vocab_size=50277),
                         build_head("classification", 768, num_labels=4))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 50277, (args.samples, args.length), generator=g)
    labels = torch.randint(0, 4, (args.samples,), generator=g)
    data = [{"input_ids": ids[i], "labels": labels[i]} for i in range(args.samples)]

    def collate(batch):
        return {"input_ids": torch.stack([b["input_ids"] for b in batch]),
                "labels": torch.stack([b["labels"] for b in batch])}

    def metrics(logits, y):
        return {"accuracy": (logits.argmax(-1) == y).float().mean().item()}

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(output_dir=tmp, distributed=args.strategy, device="auto", precision="bf16", batch_size=1,
                          eval_batch_size=args.batch, progress=False, tensorboard=False, plots=False)
        trainer = Trainer(model, cfg, data, data, collate, metrics)
        times, results = {}, {}
        for split in (False, True):
            trainer.evaluate(split_across_ranks=split)  # warm-up
            runs = []
            for _ in range(args.repeats):
                sync()
                start = time.perf_counter()
                results[split] = trainer.evaluate(split_across_ranks=split)
                sync()
                runs.append(time.perf_counter() - start)
            times[split] = statistics.median(runs)
        env = trainer.env
        gap = max(abs(results[True][k] - results[False][k]) for k in results[True])
        row = {"strategy": args.strategy, "ranks": env.world_size, "samples": args.samples, "length": args.length,
               "whole_set_s": round(times[False], 3), "share_s": round(times[True], 3),
               "speedup": round(times[False] / times[True], 2), "metric_gap": gap,
               "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
        if env.is_main:
            print(json.dumps(row))
            if args.json:
                Path(args.json).write_text(json.dumps(row) + "\n")
        trainer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
