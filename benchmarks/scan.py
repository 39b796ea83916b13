"""Selective scan speed and memory: ours (Triton) against the other scans, side by side.

GPU (default)::

    python benchmarks/scan.py [--json results.json] [--backends mamba_ssm_cuda,triton,triton_channels_last]
                              [--anchors anchors.json] [--sweep]

times forward and forward+backward (median of CUDA-event timings after warm-up,
through ``triton.testing.do_bench``, which flushes L2 between runs) and the peak
memory of one forward+backward, for (B, D, L, N) = (4, 1536, 2048, 16),
(4, 1536, 8192, 16), (1, 1536, 32768, 16), (4, 1536, 2048, 64) in bf16 with the
inputs of ``shared/anchors.json`` (u, delta, z, B, C bf16, time-varying B/C of
one group; A, D, delta_bias fp32; delta_softplus). Rows: ``mamba_ssm_cuda``
(mamba_ssm's CUDA kernel, live in the same run when it imports: the peers'
wheels), ``triton`` (ours, ``backend="triton"``), ``triton_channels_last`` (ours
on the transposed views the mixer passes: u, z sliced from one (B, L, 2D)
tensor, B, C from a (B, L, 48 + 2N) one), ``triton_short`` (triton.py's
short-chunk kernel, forced), ``reference`` (a Python loop: only at the smallest
shape), ``chunked`` (plain PyTorch, where affordable) and mambapy's ``pscan``.
Each row of ours carries its ratio to the live mamba_ssm row and to the
anchors' figures (an H100). ``--sweep`` also times triton_long.py's register caps and output layouts
and triton.py (``SWEEP``) on contiguous inputs and on the mixer's views, mamba_ssm beside each shape.

CPU::

    python benchmarks/scan.py --cpu [--cpu-ref-length 1024]

times forward+backward of ``chunked`` and ``reference`` at (2, 256, 4096, 16);
the reference may run at a shorter L and is then scaled linearly to 4096 (its
cost is linear in L), which the output says.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mambatune.kernels.selective_scan import selective_scan

# shared/anchors.json sits beside the checkout; --anchors names another copy
ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors.json"
SHAPES = [(4, 1536, 2048, 16), (4, 1536, 8192, 16), (1, 1536, 32768, 16), (4, 1536, 2048, 64)]
BIG_TENSORS_FWD = 4  # u, delta, z read; y written (B, C are small)
BIG_TENSORS_FWDBWD = 11  # forward's 4 + backward reads u, delta, z, dy, writes du, ddelta, dz


def load_anchors(path: str = "") -> dict:
    p = Path(path) if path else ANCHORS
    if not p.exists():
        print(f"no anchors at {p}: the mamba_ssm columns stay empty")
        return {}
    return json.loads(p.read_text())


def make_inputs(batch, dim, length, n_state, device, dtype=torch.bfloat16, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)

    def rnd(*shape, scale=1.0, dt=dtype):
        return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dt)

    return dict(
        u=rnd(batch, dim, length), delta=rnd(batch, dim, length, scale=0.5),
        A=-(torch.rand(dim, n_state, generator=g) + 0.5).to(device),
        B=rnd(batch, 1, n_state, length), C=rnd(batch, 1, n_state, length),
        D=rnd(dim, dt=torch.float32), z=rnd(batch, dim, length), delta_bias=rnd(dim, scale=0.3, dt=torch.float32),
    )


DT_RANK = 48  # the 130m shape's dt_rank: x_proj's output is (batch, L, 48 + 2N)


def make_channels_last_bases(batch, dim, length, n_state, device, dtype=torch.bfloat16, seed=0):
    """The tensors the mixer holds: in_proj's (batch, L, 2 * dim) output, dt (batch, L, dim) and
    x_proj's (batch, L, dt_rank + 2N) output, plus the fp32 parameters."""
    g = torch.Generator(device="cpu").manual_seed(seed)

    def rnd(*shape, scale=1.0, dt=dtype):
        return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dt)

    return dict(xz=rnd(batch, length, 2 * dim), dt=rnd(batch, length, dim, scale=0.5),
                xdbl=rnd(batch, length, DT_RANK + 2 * n_state),
                A=-(torch.rand(dim, n_state, generator=g) + 0.5).to(device), D=rnd(dim, dt=torch.float32),
                delta_bias=rnd(dim, scale=0.3, dt=torch.float32))


def channels_last_views(t):
    """The scan inputs as the mixer passes them: transposed views, no copies."""
    dim, n = t["dt"].shape[2], (t["xdbl"].shape[2] - DT_RANK) // 2
    return dict(u=t["xz"][..., :dim].transpose(1, 2), z=t["xz"][..., dim:].transpose(1, 2),
                delta=t["dt"].transpose(1, 2), B=t["xdbl"][..., DT_RANK:DT_RANK + n].transpose(1, 2),
                C=t["xdbl"][..., DT_RANK + n:].transpose(1, 2), A=t["A"], D=t["D"], delta_bias=t["delta_bias"])


def ours(backend, views=None):
    """Our selective_scan; ``views`` builds its inputs from the timed tensors (default: they are the inputs)."""
    def fn(x):
        if views is not None:
            x = views(x)
        return selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"],
                              delta_bias=x["delta_bias"], delta_softplus=True, backend=backend)
    return fn


def mambapy_scan():
    """mambapy's selective scan: discretise in bulk, then its parallel pscan over (B, L, D, N)."""
    from mambapy.pscan import pscan

    def fn(x):
        u, z = x["u"].float(), x["z"].float()
        dt = torch.nn.functional.softplus(x["delta"].float() + x["delta_bias"][None, :, None])
        dt_t, u_t = dt.transpose(1, 2), u.transpose(1, 2)  # (B, L, D)
        Bm = x["B"][:, 0].float().transpose(1, 2)  # (B, L, N)
        Cm = x["C"][:, 0].float().transpose(1, 2)
        dA = torch.exp(dt_t.unsqueeze(-1) * x["A"])  # (B, L, D, N)
        bx = (dt_t * u_t).unsqueeze(-1) * Bm.unsqueeze(2)
        hs = pscan(dA, bx)
        y = (hs @ Cm.unsqueeze(-1)).squeeze(-1) + x["D"] * u_t
        y = y.transpose(1, 2) * torch.nn.functional.silu(z)
        return y.to(x["u"].dtype)
    return fn


def mamba_ssm_scan():
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    def fn(x):
        return selective_scan_fn(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"],
                                 delta_bias=x["delta_bias"], delta_softplus=True)
    return fn


def time_one(fn, x, grad: bool, budget_s: float):
    """Median ms of fn (forward, or forward + backward) and the peak MiB of one call."""
    import triton.testing

    leaves = {k: v.detach().clone().requires_grad_(grad) for k, v in x.items()}
    with torch.no_grad():
        g_y = torch.randn_like(fn(leaves)) if grad else None  # in y's layout

    def step():
        if grad:
            y = fn(leaves)
            y.backward(g_y)
        else:
            with torch.no_grad():
                fn(leaves)

    step()  # compile / warm
    for v in leaves.values():
        v.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    step()
    torch.cuda.synchronize()
    once = time.perf_counter() - t0
    # peak = the inputs (counted once) + everything one call allocates on top of what was there before it
    extra_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    peak_mib = extra_mib + sum(v.numel() * v.element_size() for v in leaves.values()) / 2**20
    for v in leaves.values():
        v.grad = None
    if once > budget_s:
        ms = once * 1e3  # too slow to repeat: the one warm call timed above
        reps = "1 (wall clock)"
    else:
        rep_ms = max(5.0, min(1000.0, budget_s * 1e3))
        ms = triton.testing.do_bench(step, warmup=min(100.0, rep_ms / 4), rep=rep_ms,
                                     grad_to_none=list(leaves.values()), return_mode="median")
        reps = "median"
    return ms, peak_mib, extra_mib, reps


def short_kernel(x):
    """triton.py's short-chunk kernel, which backend="triton" no longer picks for time-varying B/C."""
    from mambatune.kernels.selective_scan.spec import ScanInputs
    from mambatune.kernels.selective_scan.triton import selective_scan_triton

    p = ScanInputs(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True)
    return selective_scan_triton(p)[0]


def run_gpu(args) -> list[dict]:
    anchors = load_anchors(args.anchors).get("scan", {})
    rows = []
    wanted = args.backends.split(",")
    makers = {"triton": lambda: ours("triton"), "triton_channels_last": lambda: ours("triton", channels_last_views),
              "triton_short": lambda: short_kernel, "chunked": lambda: ours("chunked"),
              "reference": lambda: ours("reference"), "mambapy_pscan": mambapy_scan, "mamba_ssm_cuda": mamba_ssm_scan}
    backends = []
    for k in wanted:
        try:
            backends.append((k, makers[k]()))
        except ImportError as err:
            print(f"{k} not importable here ({err}): its row is left out (mamba_ssm: anchors.json columns only)")
    # mamba_ssm first, so that every row of ours can carry the ratio to it from the same run
    backends.sort(key=lambda kf: kf[0] != "mamba_ssm_cuda")
    for shape in SHAPES:
        batch, dim, length, n_state = shape
        x_plain = make_inputs(*shape, device="cuda")
        x_cl = make_channels_last_bases(*shape, device="cuda") if "triton_channels_last" in wanted else None
        big = batch * dim * length * 2
        name = f"B{batch} D{dim} L{length} N{n_state}"
        anchor = anchors.get(f"scan[mamba_ssm_cuda] {name}", {})
        live = {}
        for label, fn in backends:
            if label == "reference" and shape != SHAPES[0]:
                continue  # a Python loop over L: minutes per call at these sizes
            if label == "chunked" and length * batch > 4 * 8192:
                continue
            if label == "mambapy_pscan" and batch * dim * length * n_state * 4 * 12 > 60 * 2**30:
                continue
            budget = args.budget if label.startswith("triton") or label == "mamba_ssm_cuda" else 0.5
            x = x_cl if label == "triton_channels_last" else x_plain
            try:
                f_ms, _, _, f_how = time_one(fn, x, grad=False, budget_s=budget)
                fb_ms, peak, extra, fb_how = time_one(fn, x, grad=True, budget_s=budget)
            except torch.cuda.OutOfMemoryError:
                print(f"{label} {name}: out of memory")
                torch.cuda.empty_cache()
                continue
            except Exception as err:  # one failing row must not lose the others
                print(f"{label} {name}: failed ({type(err).__name__}: {err})")
                continue
            row = dict(shape=name, backend=label, fwd_ms=f_ms, fwdbwd_ms=fb_ms, peak_MiB=peak, extra_MiB=extra,
                       fwd_GBps=BIG_TENSORS_FWD * big / f_ms / 1e6, fwdbwd_GBps=BIG_TENSORS_FWDBWD * big / fb_ms / 1e6,
                       timing=f"{f_how}/{fb_how}")
            if label == "mamba_ssm_cuda":
                live = row
            elif live:
                row.update(live_fwd_ms=live["fwd_ms"], live_fwdbwd_ms=live["fwdbwd_ms"], live_peak_MiB=live["peak_MiB"],
                           live_fwd_ratio=f_ms / live["fwd_ms"], live_fwdbwd_ratio=fb_ms / live["fwdbwd_ms"])
            if anchor:
                row.update(anchor_fwd_ms=anchor["fwd_ms"], anchor_fwdbwd_ms=anchor["fwdbwd_ms"],
                           anchor_peak_MiB=anchor["peak_MiB"], fwd_ratio=f_ms / anchor["fwd_ms"],
                           fwdbwd_ratio=fb_ms / anchor["fwdbwd_ms"])
            rows.append(row)
            print(json.dumps(row), flush=True)
            torch.cuda.empty_cache()
        del x, x_plain, x_cl
    return rows


# --sweep: triton_long.py's register caps and output layouts, and triton.py, in one run. Each entry:
# (name, _config overrides, OUTPUTS_IN_INPUT_LAYOUT or None for triton.py). Earlier sweeps of tiles (BD, BT,
# warps) settled BD = 1, BT = 1024, 4 warps (RESULTS.md, seventh session).
SWEEP = [
    ("long", {}, True),
    ("long, no register cap", dict(bwd_maxnreg=None), True),
    ("long bwd<=128 regs", dict(bwd_maxnreg=128), True),
    ("long fwd<=64 regs", dict(fwd_maxnreg=64), True),
    ("long contiguous outputs", {}, False),
    ("long contiguous outputs, bwd<=128", dict(bwd_maxnreg=128), False),
    ("short (triton.py)", None, None),
]
# the shapes of the sweep: the four above and the 130m training step's (B8 L2048, the mixer's views)
SWEEP_SHAPES = {"contiguous": SHAPES, "channels_last": [(4, 1536, 2048, 16), (8, 1536, 2048, 16), (4, 1536, 2048, 64)]}


def _as_channels_last_output(fn):
    """fn with y handed on as the mixer's out_proj wants it, (batch, L, dim) contiguous: free for a
    channels-last y, one transposing copy (and one for its gradient) for a contiguous one."""
    return lambda x: fn(x).transpose(1, 2).contiguous()


def run_sweep(args) -> list[dict]:
    """Times the SWEEP variants (triton_long.py reads them from ``_config`` and its module flags)."""
    import importlib

    scan_pkg = importlib.import_module("mambatune.kernels.selective_scan")
    from mambatune.kernels.selective_scan import triton_long

    default_cfg, default_layout, default_pick = triton_long._config, triton_long.OUTPUTS_IN_INPUT_LAYOUT, \
        scan_pkg.pick_triton_kernel
    names = args.sweep_variants.split(";") if args.sweep_variants else None
    rows = []
    for layout, shapes in SWEEP_SHAPES.items():
        for shape in shapes:
            if layout == "contiguous":
                x, fn = make_inputs(*shape, device="cuda"), ours("triton")
            else:
                x = make_channels_last_bases(*shape, device="cuda")
                fn = _as_channels_last_output(ours("triton", channels_last_views))
            live = {}
            try:
                live_fn = mamba_ssm_scan()
                xl = make_inputs(*shape, device="cuda")
                live = dict(fwd=time_one(live_fn, xl, grad=False, budget_s=0.2)[0],
                            fwdbwd=time_one(live_fn, xl, grad=True, budget_s=0.2)[0])
                del xl
            except ImportError:
                pass
            for name, over, outputs_in_input in SWEEP:
                if names and name not in names:
                    continue
                if layout == "contiguous" and (over is None or outputs_in_input is False):
                    continue  # contiguous inputs: outputs are contiguous either way; triton.py is in the main rows
                if over is None:
                    scan_pkg.pick_triton_kernel = lambda p: "short"
                else:
                    scan_pkg.pick_triton_kernel = lambda p: "long"
                    triton_long._config = lambda p, o=over: {**default_cfg(p), **o}
                    triton_long.OUTPUTS_IN_INPUT_LAYOUT = outputs_in_input
                try:
                    f_ms, _, _, _ = time_one(fn, x, grad=False, budget_s=0.2)
                    fb_ms, peak, _, _ = time_one(fn, x, grad=True, budget_s=0.2)
                    row = dict(shape=shape, layout=layout, variant=name, fwd_ms=f_ms, fwdbwd_ms=fb_ms, peak_MiB=peak,
                               live_fwd_ms=live.get("fwd"), live_fwdbwd_ms=live.get("fwdbwd"))
                    rows.append(row)
                    ratio = (f" (mamba_ssm live, contiguous inputs: {live['fwd']:.3f} / {live['fwdbwd']:.3f} ms;"
                             f" ratio {f_ms / live['fwd']:.2f}x / {fb_ms / live['fwdbwd']:.2f}x)" if live else "")
                    print(f"sweep {shape} {layout} [{name}]: fwd {f_ms:.3f} ms, fwd+bwd {fb_ms:.3f} ms, "
                          f"peak {peak:.0f} MiB{ratio}", flush=True)
                except Exception as err:  # a variant that does not compile or fit is reported, not fatal
                    print(f"sweep {shape} {layout} [{name}]: failed ({type(err).__name__}: {err})", flush=True)
                finally:
                    triton_long._config, triton_long.OUTPUTS_IN_INPUT_LAYOUT = default_cfg, default_layout
                    scan_pkg.pick_triton_kernel = default_pick
            del x
            torch.cuda.empty_cache()
    return rows


def print_table(rows: list[dict], copy_tbps: float) -> None:
    head = ("shape", "backend", "fwd ms", "fwd+bwd ms", "peak MiB", "fwd GB/s (%copy)",
            "mamba_ssm live fwd / f+b / peak", "ours / live fwd", "ours / live f+b",
            "anchors fwd / f+b", "ours / anchors f+b")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        a, lv = r.get("anchor_fwd_ms"), r.get("live_fwd_ms")
        cells = [r["shape"], r["backend"], f"{r['fwd_ms']:.3f}", f"{r['fwdbwd_ms']:.3f}", f"{r['peak_MiB']:.0f}",
                 f"{r['fwd_GBps']:.0f} ({100 * r['fwd_GBps'] / (copy_tbps * 1e3):.0f}%)",
                 f"{lv:.3f} / {r['live_fwdbwd_ms']:.3f} / {r['live_peak_MiB']:.0f}" if lv else "-",
                 f"{r['live_fwd_ratio']:.2f}x" if lv else "-", f"{r['live_fwdbwd_ratio']:.2f}x" if lv else "-",
                 f"{a:.3f} / {r['anchor_fwdbwd_ms']:.3f}" if a else "-", f"{r['fwdbwd_ratio']:.2f}x" if a else "-"]
        print("| " + " | ".join(cells) + " |")


def run_cpu(args) -> None:
    batch, dim, length, n_state = 2, 256, 4096, 16
    torch.set_num_threads(args.threads or torch.get_num_threads())

    def fwdbwd(backend, L):
        x = make_inputs(batch, dim, L, n_state, device="cpu", dtype=torch.float32)
        leaves = {k: v.requires_grad_(True) for k, v in x.items()}
        t0 = time.perf_counter()
        y = ours(backend)(leaves)
        y.backward(torch.ones_like(y))
        return time.perf_counter() - t0

    fwdbwd("chunked", 256)  # warm
    chunked_s = min(fwdbwd("chunked", length) for _ in range(3))
    ref_len = args.cpu_ref_length or length
    ref_s = fwdbwd("reference", ref_len) * length / ref_len
    note = "" if ref_len == length else f" (measured at L={ref_len}, scaled x{length / ref_len:g})"
    print(f"CPU fwd+bwd (B, D, L, N) = ({batch}, {dim}, {length}, {n_state}) fp32, {torch.get_num_threads()} threads")
    print(f"| backend | fwd+bwd s |\n|---|---|\n| chunked | {chunked_s:.2f} |\n| reference | {ref_s:.2f}{note} |")
    print(f"chunked speed-up over reference: {ref_s / chunked_s:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="CPU mode: chunked vs reference")
    ap.add_argument("--cpu-ref-length", type=int, default=0, help="run the CPU reference at this L and scale")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--sweep", action="store_true", help="also time triton_long.py's variants (SWEEP)")
    ap.add_argument("--sweep-variants", default="", help="SWEEP names to run, separated by ';' (default: all)")
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of timing per fast row and direction")
    ap.add_argument("--backends", default="mamba_ssm_cuda,triton,triton_channels_last,triton_short,chunked,reference,"
                                          "mambapy_pscan",
                    help="comma-separated rows to time (the slow peers take most of the run)")
    ap.add_argument("--json", type=str, default="", help="write the GPU rows here")
    ap.add_argument("--anchors", type=str, default="", help="path of anchors.json (default: ../shared/anchors.json)")
    args = ap.parse_args()
    if args.cpu:
        run_cpu(args)
        return
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: use --cpu")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    rows = run_gpu(args)
    if args.sweep:
        rows += run_sweep(args)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print_table([r for r in rows if "backend" in r], load_anchors(args.anchors).get("limits", {}).get("hbm_copy_TBps", 2.97))


if __name__ == "__main__":
    main()
