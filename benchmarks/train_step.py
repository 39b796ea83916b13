"""Full training step of the Mamba-130m shape: tokens/s and peak memory, ours vs the anchors.

    python -m mambatune.benchmarks.train_step [--shapes 8x2048,2x8192] [--json out.json]

Model: d_model 768, 24 layers, vocab 50277 (the 130m shape), LM loss on random
tokens, AdamW. Modes: fp32 full, bf16-autocast full, bf16-autocast head-only
(only the final norm trains: with a tied LM head that is the "head"). The
mamba_ssm and Hugging Face figures come from shared/anchors.json (measured on an
H100 in the same configurations) and are printed side by side with our ratio.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from mambatune.core import MambaConfig, MambaForTask

SHAPE = dict(d_model=768, n_layer=24, vocab_size=50277)


def find_anchors(path: str | None = None) -> dict:
    if path:
        return json.loads(Path(path).read_text())
    for base in [Path.cwd(), *Path(__file__).resolve().parents]:
        for cand in (base / "shared" / "anchors.json", base.parent / "shared" / "anchors.json"):
            if cand.exists():
                return json.loads(cand.read_text())
    return {}


def step_fn(model, opt, ids, precision, labels=None):
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16-autocast"):
        out = model(ids, labels=ids if labels is None else labels)
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def measure(batch: int, length: int, precision: str, method, backend: str, steps: int = 8, warmup: int = 3,
            checkpointing: bool | str = False, classify: bool = False):
    """One configuration: ``method`` is "full", "head-only" or a mambatune.core.peft config (or list of them).

    precision: "fp32", "bf16-autocast" (fp32 master weights) or "bf16" (bf16 weights and a bf16
    residual stream: the long-context setting). ``classify``: a 2-class mean-pooled head instead of
    the LM head, so no (L x vocab) logits are made."""
    from mambatune.core import SequenceClassificationHead

    torch.manual_seed(0)
    cfg = MambaConfig(**SHAPE, backend=backend, residual_in_fp32=precision != "bf16")
    head = SequenceClassificationHead(cfg.d_model, 2) if classify else None
    model = MambaForTask(cfg, head=head).cuda()
    if precision == "bf16":
        model = model.to(torch.bfloat16)
    model.backbone.gradient_checkpointing = bool(checkpointing)
    model.backbone.offload_checkpoints = checkpointing == "offload"
    if method == "head-only":
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("backbone.norm_f"))
    elif method != "full":
        from mambatune.core.peft import apply

        apply(model, method)
        model.cuda()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    ids = torch.randint(0, SHAPE["vocab_size"], (batch, length), device="cuda")
    labels = torch.zeros(batch, dtype=torch.long, device="cuda") if classify else None
    for _ in range(warmup):
        step_fn(model, opt, ids, precision, labels)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step_fn(model, opt, ids, precision, labels)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    ms = statistics.median(times)
    res = {"step_ms": round(ms, 1), "tok_per_s": round(batch * length / (ms / 1e3)),
           "peak_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2),
           "trainable": sum(p.numel() for p in params)}
    del model, opt
    torch.cuda.empty_cache()
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="8x2048,2x8192")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--json", default=None)
    ap.add_argument("--anchors", default=None, help="path of anchors.json (default: shared/anchors.json found upwards)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("train_step benchmark needs a CUDA GPU", file=sys.stderr)
        return 2
    anchors = find_anchors(args.anchors).get("train", {})
    device = torch.cuda.get_device_name()
    rows = []
    for shape in args.shapes.split(","):
        b, l = (int(v) for v in shape.split("x"))
        for precision, method in [("fp32", "full"), ("bf16-autocast", "full"), ("bf16-autocast", "head-only")]:
            try:
                ours = measure(b, l, precision, method, args.backend)
            except torch.cuda.OutOfMemoryError:
                ours = {"step_ms": None, "tok_per_s": None, "peak_GiB": "OOM", "trainable": None}
                torch.cuda.empty_cache()
            key = f"[mamba_ssm {precision} {method}] B{b} L{l}"
            ms = anchors.get("train" + key, {})
            hf = anchors.get(f"train[hf kernels {precision} {method}] B{b} L{l}", {})
            rows.append({"config": f"{precision} {method} B{b}xL{l}", "ours": ours, "mamba_ssm": ms, "hf": hf})
    print(f"\ndevice: {device}; torch {torch.__version__}\n")
    hdr = f"{'config':34} {'ours tok/s':>11} {'mamba_ssm':>10} {'ratio':>6} {'hf':>8} {'ratio':>6} {'ours GiB':>9} {'ssm GiB':>8}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        o, m, h = r["ours"], r["mamba_ssm"], r["hf"]
        rm = f"{o['tok_per_s'] / m['tok_per_s']:.2f}" if o["tok_per_s"] and m else "-"
        rh = f"{o['tok_per_s'] / h['tok_per_s']:.2f}" if o["tok_per_s"] and h else "-"
        print(f"{r['config']:34} {o['tok_per_s'] or '-':>11} {m.get('tok_per_s', '-'):>10} {rm:>6} "
              f"{h.get('tok_per_s', '-'):>8} {rh:>6} {o['peak_GiB']:>9} {m.get('peak_GiB', '-'):>8}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
