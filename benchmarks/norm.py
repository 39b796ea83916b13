"""Fused residual add + RMSNorm (``kernels/norm``) against the model's unfused code and mamba_ssm's kernel.

GPU only::

    python -m mambatune.benchmarks.norm [--shapes 16384x768,16384x1536,131072x768] [--rows fused,unfused,mamba_ssm]
                                        [--json norm.json]

One Mamba block's pre-norm at (rows = B·L, d): x, the mixer's output, in bf16; the residual stream in fp32
(``residual_in_fp32``); the norm's weight in fp32; eps 1e-5. Every row computes the pair the next mixer
and the next block need, ``normed`` (bf16) and ``residual_out = x + residual`` (fp32), and its
forward+backward sends a gradient into both (the residual stream also carries the next block's gradient):

- ``fused``: ours, ``add_rms_norm(x, w, residual, residual_in_fp32=True, backend="triton")``.
- ``unfused``: the model's current code (core/model.py): ``hidden = residual + x`` in fp32, then
  ``RMSNorm(hidden)`` (fp32 in, fp32 out), then the cast to bf16 that autocast applies before the next
  in_proj -- each a separate PyTorch op, autograd backward.
- ``mamba_ssm``: ``rms_norm_fn(x, w, None, residual=residual, prenorm=True, residual_in_fp32=True)`` from
  ``mamba_ssm.ops.triton.layer_norm`` (``layernorm`` in older releases), when it imports; its row is
  skipped with the reason printed otherwise. mamba_ssm is not a dependency: on the GPU machine its wheel
  is put on PYTHONPATH (../shared/peers/README.md).

Times are medians of CUDA-event timings through ``triton.testing.do_bench`` (which flushes L2 between
runs): the forward with autograd recording (as in training), and forward+backward. GB/s is the op's
minimal traffic divided by the time, the same byte count for every row: forward reads x (2 B) and the
residual (4 B) and writes normed (2 B) and residual_out (4 B), 12 B per element; the backward reads
residual_out (4 B), d normed (2 B) and d residual_out (4 B) and writes dx (2 B) and d residual (4 B),
16 B per element (the weight and per-row statistics are negligible). ``peak_mib`` is the memory one
forward+backward allocates above the inputs. ``rel_err`` is each output's and gradient's relative L2
error against ``backend="reference"`` run on fp32 copies of the same inputs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mambatune.kernels.norm import add_rms_norm

from .kernel_timing import call_extra_mib, rel

SHAPES = ((16384, 768), (16384, 1536), (131072, 768))
ROWS = ("fused", "unfused", "mamba_ssm")
EPS = 1e-5
FWD_BYTES, BWD_BYTES = 12, 16  # minimal bytes per element, see the module docstring
OUTPUTS = ("normed", "residual_out", "dx", "dresidual", "dweight")


def make_inputs(rows: int, d: int, device="cuda", seed: int = 0) -> dict:
    g = torch.Generator(device="cpu").manual_seed(seed)
    t = dict(x=torch.randn(rows, d, generator=g).to(torch.bfloat16),
             residual=4 * torch.randn(rows, d, generator=g),
             weight=1 + 0.1 * torch.randn(d, generator=g))
    grads = dict(normed=torch.randn(rows, d, generator=g).to(torch.bfloat16),
                 residual_out=torch.randn(rows, d, generator=g))
    return ({k: v.to(device).requires_grad_(True) for k, v in t.items()}, {k: v.to(device) for k, v in grads.items()})


def fused(t):
    return add_rms_norm(t["x"], t["weight"], t["residual"], eps=EPS, residual_in_fp32=True, backend="triton")


def unfused(t):
    """The model's MambaBlock today: the fp32 stream plus the mixer output, then its RMSNorm module's math."""
    hidden = t["residual"] + t["x"]  # fp32 + bf16 -> fp32
    hf = hidden.float()
    normed = t["weight"] * (hf * torch.rsqrt(hf.pow(2).mean(-1, keepdim=True) + EPS)).to(hidden.dtype)
    return normed.to(torch.bfloat16), hidden


def peer():
    """mamba_ssm's fused prenorm add + RMSNorm, or None (with the reason printed) where it does not import."""
    try:
        try:
            from mamba_ssm.ops.triton.layer_norm import rms_norm_fn
        except ImportError:
            from mamba_ssm.ops.triton.layernorm import rms_norm_fn
    except Exception as err:  # noqa: BLE001 - any import failure means the peer is absent
        print(f"mamba_ssm not importable ({type(err).__name__}: {err}): its row is skipped")
        return None

    def f(t):
        return rms_norm_fn(t["x"], t["weight"], None, residual=t["residual"], eps=EPS, prenorm=True,
                           residual_in_fp32=True)
    return f


def run_once(f, t, g) -> list[torch.Tensor]:
    """Outputs and gradients of one forward+backward, in OUTPUTS' order."""
    for v in t.values():
        v.grad = None
    normed, residual_out = f(t)
    torch.autograd.backward([normed, residual_out], [g["normed"], g["residual_out"]])
    return [normed.detach(), residual_out.detach(), t["x"].grad, t["residual"].grad, t["weight"].grad]




def bench_row(name: str, f, t, g, truth, rows: int, d: int) -> dict:
    from triton.testing import do_bench

    got = run_once(f, t, g)  # compiles, and the accuracy against the fp32 reference
    errors = {k: float(f"{rel(a, b):.2e}") for k, a, b in zip(OUTPUTS, got, truth)}
    del got
    leaves = list(t.values())

    def fwd():
        f(t)

    def fwd_bwd():
        normed, residual_out = f(t)
        torch.autograd.backward([normed, residual_out], [g["normed"], g["residual_out"]])

    ms_f = do_bench(fwd, warmup=10, rep=100)
    ms_fb = do_bench(fwd_bwd, warmup=10, rep=100, grad_to_none=leaves)
    peak = call_extra_mib(fwd_bwd, leaves)
    n = rows * d
    row = {"shape": f"{rows}x{d}", "row": name, "fwd_ms": round(ms_f, 4), "fwd_bwd_ms": round(ms_fb, 4),
           "fwd_GBps": round(FWD_BYTES * n / ms_f / 1e6, 1),
           "fwd_bwd_GBps": round((FWD_BYTES + BWD_BYTES) * n / ms_fb / 1e6, 1),
           "peak_mib": round(peak, 1), "rel_err": errors}
    print(json.dumps(row), flush=True)
    return row


def shape_rows(rows: int, d: int, names: list[str]) -> list[dict]:
    t, g = make_inputs(rows, d)
    t32 = {k: v.detach().float().requires_grad_(True) for k, v in t.items()}
    g32 = {k: v.float() for k, v in g.items()}
    truth = run_once(lambda s: add_rms_norm(s["x"], s["weight"], s["residual"], eps=EPS, residual_in_fp32=True,
                                            backend="reference"), t32, g32)
    del t32, g32
    fns = {"fused": fused, "unfused": unfused}
    out = []
    for name in names:
        f = peer() if name == "mamba_ssm" else fns[name]
        if f is not None:
            out.append(bench_row(name, f, t, g, truth, rows, d))
    return out


def print_table(rows: list[dict]) -> None:
    print("| (B·L, d) | row | fwd ms | fwd+bwd ms | fwd GB/s | fwd+bwd GB/s | peak MiB | max rel err | fused speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    fused_ms = {r["shape"]: r["fwd_bwd_ms"] for r in rows if r["row"] == "fused"}
    for r in rows:
        ratio = fused_ms.get(r["shape"])
        speed = f"{r['fwd_bwd_ms'] / ratio:.2f}x" if ratio else ""
        print(f"| {r['shape']} | {r['row']} | {r['fwd_ms']:.3f} | {r['fwd_bwd_ms']:.3f} | {r['fwd_GBps']:.0f} | "
              f"{r['fwd_bwd_GBps']:.0f} | {r['peak_mib']:.0f} | {max(r['rel_err'].values()):.1e} | {speed} |")


def parse_shapes(text: str) -> list[tuple[int, int]]:
    try:
        shapes = [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",") if s.strip()]
    except ValueError:
        shapes = []
    if not shapes or any(len(s) != 2 or min(s) < 1 for s in shapes):
        raise argparse.ArgumentTypeError(f"--shapes wants ROWSxD[,ROWSxD...], e.g. 16384x768; got {text!r}")
    return shapes


def parse_rows(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in ROWS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"--rows takes some of {', '.join(ROWS)}; got {text!r}")
    return names


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", type=parse_shapes, default=list(SHAPES), help="ROWSxD,... (rows = B·L)")
    ap.add_argument("--rows", type=parse_rows, default=list(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    ap.add_argument("--json", type=str, default="", help="write the rows here")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/norm.py times CUDA kernels and needs a CUDA GPU; none is visible here "
                         "(tests/kernels/test_norm.py checks the kernels on a CPU through Triton's interpreter)")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    rows = []
    for n_rows, d in args.shapes:
        rows += shape_rows(n_rows, d, args.rows)
        torch.cuda.empty_cache()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print_table(rows)


if __name__ == "__main__":
    main()
