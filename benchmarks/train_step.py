"""Full training step of the Mamba-130m shape: tokens/s and peak memory, ours vs the anchors.

    python -m mambatune.benchmarks.train_step [--shapes 8x2048,2x8192] [--json out.json]
    python -m mambatune.benchmarks.train_step --short --compile   # B256 x L512, d_model 128, 4 layers

Model: d_model 768, 24 layers, vocab 50277 (the 130m shape), LM loss on random
tokens, AdamW. ``--short``: the forecasting users' shape instead (short sequences, small
width, where kernel launches rather than arithmetic set the step time): d_model 128,
4 layers, a 256-token vocabulary, B256 x L512 unless ``--shapes`` says otherwise; the
130m anchors do not apply to it. ``--compile``: each configuration of ours is measured
again under ``torch.compile(fullgraph=True)`` (``--compile-mode``; ``reduce-overhead``
replays CUDA graphs), as extra rows; the kernels enter the graph as custom ops.
Modes: fp32 full, bf16-autocast full, bf16-autocast head-only (only the final norm
trains: with a tied LM head that is the "head"). fp32 runs its matrix products in TF32
unless ``--no-tf32`` (the trainer's default, ``TrainConfig.tf32``). Where mamba_ssm imports (the peers' wheels), its
MambaLMHeadModel of the same shape is measured in the same run ("live" columns);
the anchors' mamba_ssm and Hugging Face figures (an H100) stay beside them.
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
SHORT_SHAPE = dict(d_model=128, n_layer=4, vocab_size=256)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def find_anchors(path: str | None = None) -> dict:
    if path:
        return json.loads(Path(path).read_text())
    for base in [Path.cwd(), *Path(__file__).resolve().parents]:
        for cand in (base / "shared" / "anchors.json", base.parent / "shared" / "anchors.json"):
            if cand.exists():
                return json.loads(cand.read_text())
    return {}


def apply_scan_variant(spec: str) -> None:
    """Sets the Mamba-1 scan dispatch for the runs that follow: ``auto`` (the shipped defaults), or
    ``long`` / ``short`` (force triton_long.py / triton.py) followed by ``:contig`` (triton_long writes y and
    the input gradients contiguous, not in the mixer's views' layout), ``:tc`` (the mixer hands the scan
    time-contiguous copies: ``mambatune.core.mixer.SCAN_LAYOUT``), ``:fused`` (each block's residual add and
    norm in one kernels/norm kernel: ``mambatune.core.model.FUSED_ADD_NORM``) and ``:bwdNNN`` / ``:fwdNN``
    (register caps; ``:bwd0`` none), e.g. ``auto:tc:fused`` or ``long:contig:bwd128``."""
    import importlib

    scan_pkg = importlib.import_module("mambatune.kernels.selective_scan")
    from mambatune.core import mixer, model as core_model
    from mambatune.kernels.selective_scan import triton_long

    if not hasattr(apply_scan_variant, "defaults"):
        apply_scan_variant.defaults = (scan_pkg.pick_triton_kernel, triton_long.OUTPUTS_IN_INPUT_LAYOUT,
                                       triton_long.BWD_MAXNREG, triton_long.FWD_MAXNREG, mixer.SCAN_LAYOUT,
                                       core_model.FUSED_ADD_NORM)
    pick, layout, bwd, fwd, scan_layout, fused = apply_scan_variant.defaults
    parts = spec.split(":")
    if parts[0] not in ("auto", "long", "short"):
        raise SystemExit(f"--scan-variants: {spec!r} must start with auto, long or short")
    if parts[0] != "auto":
        pick = (lambda kernel: (lambda p: kernel))(parts[0])
    for part in parts[1:]:
        if part == "contig":
            layout = False
        elif part == "tc":
            scan_layout = "time_contiguous"
        elif part == "fused":
            fused = True
        elif part.startswith("bwd") and part[3:].isdigit():
            bwd = int(part[3:]) or None
        elif part.startswith("fwd") and part[3:].isdigit():
            fwd = int(part[3:]) or None
        else:
            raise SystemExit(f"--scan-variants: unknown part {part!r} in {spec!r} (contig, tc, fused, bwdNNN, fwdNN)")
    scan_pkg.pick_triton_kernel = pick
    triton_long.OUTPUTS_IN_INPUT_LAYOUT, triton_long.BWD_MAXNREG, triton_long.FWD_MAXNREG = layout, bwd, fwd
    mixer.SCAN_LAYOUT = scan_layout
    core_model.FUSED_ADD_NORM = fused


def step_fn(model, opt, ids, precision, labels=None):
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16-autocast"):
        out = model(ids, labels=ids if labels is None else labels)
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def measure(batch: int, length: int, precision: str, method, backend: str, steps: int = 8, warmup: int = 3,
            checkpointing: bool | str = False, classify: bool = False, shape: dict | None = None,
            compile_mode: str | None = None):
    """One configuration: ``method`` is "full", "head-only" or a mambatune.core.peft config (or list of them).

    precision: "fp32", "bf16-autocast" (fp32 master weights) or "bf16" (bf16 weights and a bf16
    residual stream: the long-context setting). ``classify``: a 2-class mean-pooled head instead of
    the LM head, so no (L x vocab) logits are made. ``shape``: d_model, n_layer, vocab_size (default
    the 130m shape). ``compile_mode``: the model's forward and backward under torch.compile in that
    mode (the warmup steps compile; the optimizer step stays eager)."""
    from mambatune.core import SequenceClassificationHead

    shape = shape or SHAPE
    torch.manual_seed(0)
    cfg = MambaConfig(**shape, backend=backend, residual_in_fp32=precision != "bf16")
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
    ids = torch.randint(0, shape["vocab_size"], (batch, length), device="cuda")
    labels = torch.zeros(batch, dtype=torch.long, device="cuda") if classify else None
    run = model
    if compile_mode is not None:
        torch._dynamo.reset()  # a fresh cache per model: the earlier models' graphs would count to the recompile limit
        run = torch.compile(model, fullgraph=True, mode=None if compile_mode == "default" else compile_mode)
    return _time_steps(lambda: step_fn(run, opt, ids, precision, labels), batch, length, params, steps, warmup,
                       model, opt)


def measure_mamba_ssm(batch: int, length: int, precision: str, method: str, steps: int = 8, warmup: int = 3,
                      shape: dict | None = None):
    """mamba_ssm's own LM of ``shape`` (default the 130m one; Mamba1 layers, RMSNorm, fused add+norm, fp32
    residual), same loop."""
    import torch.nn.functional as F
    from mamba_ssm.models.config_mamba import MambaConfig as SsmConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

    shape = shape or SHAPE
    torch.manual_seed(0)
    cfg = SsmConfig(d_model=shape["d_model"], n_layer=shape["n_layer"], vocab_size=shape["vocab_size"],
                    ssm_cfg={"layer": "Mamba1"}, rms_norm=True, residual_in_fp32=True, fused_add_norm=True,
                    pad_vocab_size_multiple=8)
    model = MambaLMHeadModel(cfg, device="cuda")
    if method == "head-only":
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("backbone.norm_f"))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    ids = torch.randint(0, shape["vocab_size"], (batch, length), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16-autocast"):
            logits = model(ids).logits
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return _time_steps(step, batch, length, params, steps, warmup, model, opt)


def _time_steps(step, batch, length, params, steps, warmup, *owned):
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    ms = statistics.median(times)
    res = {"step_ms": round(ms, 1), "tok_per_s": round(batch * length / (ms / 1e3)),
           "peak_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2),
           "trainable": sum(p.numel() for p in params)}
    del owned
    torch.cuda.empty_cache()
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default=None, help="BxL,... (default 8x2048,2x8192; with --short 256x512)")
    ap.add_argument("--short", action="store_true",
                    help="the short-sequence shape: d_model 128, 4 layers, vocab 256 (forecasting users' widths)")
    ap.add_argument("--compile", action="store_true",
                    help="also measure each configuration of ours under torch.compile(fullgraph=True), as extra rows")
    ap.add_argument("--compile-mode", default="default", choices=COMPILE_MODES,
                    help="torch.compile mode of --compile (reduce-overhead: CUDA graphs)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--json", default=None)
    ap.add_argument("--anchors", default=None, help="path of anchors.json (default: shared/anchors.json found upwards)")
    ap.add_argument("--no-tf32", action="store_true", help="fp32 matrix products in full fp32 (default: TF32)")
    ap.add_argument("--configs", default="fp32:full,bf16-autocast:full,bf16-autocast:head-only")
    ap.add_argument("--scan-variants", default="auto",
                    help="comma-separated Mamba-1 scan dispatches to measure ours with (apply_scan_variant)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("train_step benchmark needs a CUDA GPU", file=sys.stderr)
        return 2
    from mambatune.core.training.precision import set_tf32

    set_tf32(not args.no_tf32)
    try:
        import mamba_ssm  # noqa: F401

        live = True
    except ImportError as err:
        print(f"mamba_ssm not importable ({err}): anchors.json columns only")
        live = False
    model_shape = SHORT_SHAPE if args.short else SHAPE
    shapes = args.shapes or ("256x512" if args.short else "8x2048,2x8192")
    anchors = {} if args.short else find_anchors(args.anchors).get("train", {})  # measured at the 130m shape
    device = torch.cuda.get_device_name()
    rows = []

    def guarded(fn, *a, **kw):
        try:
            return fn(*a, **kw)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            return {"step_ms": None, "tok_per_s": None, "peak_GiB": "OOM", "trainable": None}

    for spec in shapes.split(","):
        b, l = (int(v) for v in spec.split("x"))
        for precision, method in (c.split(":") for c in args.configs.split(",")):
            peer = guarded(measure_mamba_ssm, b, l, precision, method, shape=model_shape) if live else {}
            key = f"[mamba_ssm {precision} {method}] B{b} L{l}"
            ms = anchors.get("train" + key, {})
            hf = anchors.get(f"train[hf kernels {precision} {method}] B{b} L{l}", {})
            for variant in args.scan_variants.split(","):
                apply_scan_variant(variant)
                label = "" if variant == "auto" else f" [scan {variant}]"
                for mode in [None] + ([args.compile_mode] if args.compile else []):
                    ours = guarded(measure, b, l, precision, method, args.backend, shape=model_shape,
                                   compile_mode=mode)
                    tag = "" if mode is None else f" [compiled {mode}]"
                    rows.append({"config": f"{precision} {method} B{b}xL{l}{label}{tag}", "ours": ours,
                                 "mamba_ssm_live": peer, "mamba_ssm": ms, "hf": hf})
                    print(json.dumps(rows[-1]), flush=True)
            apply_scan_variant("auto")
    print(f"\ndevice: {device}; torch {torch.__version__}; fp32 matmuls in {'fp32' if args.no_tf32 else 'TF32'}; "
          f"model {model_shape}\n")
    print("| config | ours tok/s | mamba_ssm live tok/s | ratio | ours GiB | live GiB | anchors tok/s | ratio "
          "| HF anchors | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")

    def ratio(o, m):
        return f"{o['tok_per_s'] / m['tok_per_s']:.2f}" if o.get("tok_per_s") and m.get("tok_per_s") else "-"

    for r in rows:
        o, p, m, h = r["ours"], r["mamba_ssm_live"], r["mamba_ssm"], r["hf"]
        print(f"| {r['config']} | {o['tok_per_s'] or '-'} | {p.get('tok_per_s', '-')} | {ratio(o, p)} | "
              f"{o['peak_GiB']} | {p.get('peak_GiB', '-')} | {m.get('tok_per_s', '-')} | {ratio(o, m)} | "
              f"{h.get('tok_per_s', '-')} | {ratio(o, h)} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "tf32": not args.no_tf32, "shape": model_shape,
                                               "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
