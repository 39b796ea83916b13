"""Selective scan speed and memory: ours (Triton) against the other scans, side by side.

GPU (default)::

    python benchmarks/scan.py [--json results.json] [--backends triton,triton_channels_last]

times forward and forward+backward (median of CUDA-event timings after warm-up,
through ``triton.testing.do_bench``, which flushes L2 between runs) and the peak
memory of one forward+backward, for (B, D, L, N) = (4, 1536, 2048, 16),
(4, 1536, 8192, 16), (1, 1536, 32768, 16), (4, 1536, 2048, 64) in bf16 with the
inputs of ``shared/anchors.json`` (u, delta, z, B, C bf16, time-varying B/C of
one group; A, D, delta_bias fp32; delta_softplus). Rows: ``triton`` (ours),
``triton_channels_last`` (ours on the transposed views the mixer passes: u, z
sliced from one (B, L, 2D) tensor, B, C from a (B, L, 48 + 2N) one, no copies),
``reference`` (a Python loop: only at the smallest shape, few repeats),
``chunked`` (plain PyTorch, where affordable), mambapy's ``pscan`` (PyPI
``mambapy``) and mamba_ssm's CUDA kernel when importable; the anchors' mamba_ssm
figures are fixed columns with our ratio to them.

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


def run_gpu(args) -> list[dict]:
    anchors = load_anchors(args.anchors).get("scan", {})
    rows = []
    wanted = set(args.backends.split(","))
    backends = [(k, f) for k, f in (("triton", ours("triton")), ("triton_channels_last", ours("triton", channels_last_views)),
                                    ("chunked", ours("chunked")), ("reference", ours("reference"))) if k in wanted]
    if "mambapy_pscan" in wanted:
        try:
            backends.append(("mambapy_pscan", mambapy_scan()))
        except ImportError as err:
            print(f"mambapy not importable ({err}); pip install mambapy")
    if "mamba_ssm_cuda" in wanted:
        try:
            backends.append(("mamba_ssm_cuda", mamba_ssm_scan()))
        except ImportError as err:
            print(f"mamba_ssm not importable here ({err}); its anchors.json figures are shown instead")
    for shape in SHAPES:
        batch, dim, length, n_state = shape
        x_plain = make_inputs(*shape, device="cuda")
        x_cl = make_channels_last_bases(*shape, device="cuda") if "triton_channels_last" in wanted else None
        big = batch * dim * length * 2
        name = f"B{batch} D{dim} L{length} N{n_state}"
        anchor = anchors.get(f"scan[mamba_ssm_cuda] {name}", {})
        for label, fn in backends:
            if label == "reference" and shape != SHAPES[0]:
                continue  # a Python loop over L: minutes per call at these sizes
            if label == "chunked" and length * batch > 4 * 8192:
                continue
            if label == "mambapy_pscan" and batch * dim * length * n_state * 4 * 12 > 60 * 2**30:
                continue
            budget = 2.0 if label.startswith("triton") or label == "mamba_ssm_cuda" else 0.5
            x = x_cl if label == "triton_channels_last" else x_plain
            try:
                f_ms, _, _, f_how = time_one(fn, x, grad=False, budget_s=budget)
                fb_ms, peak, extra, fb_how = time_one(fn, x, grad=True, budget_s=budget)
            except torch.cuda.OutOfMemoryError:
                print(f"{label} {name}: out of memory")
                torch.cuda.empty_cache()
                continue
            row = dict(shape=name, backend=label, fwd_ms=f_ms, fwdbwd_ms=fb_ms, peak_MiB=peak, extra_MiB=extra,
                       fwd_GBps=BIG_TENSORS_FWD * big / f_ms / 1e6, fwdbwd_GBps=BIG_TENSORS_FWDBWD * big / fb_ms / 1e6,
                       timing=f"{f_how}/{fb_how}")
            if anchor:
                row.update(anchor_fwd_ms=anchor["fwd_ms"], anchor_fwdbwd_ms=anchor["fwdbwd_ms"],
                           anchor_peak_MiB=anchor["peak_MiB"], fwd_ratio=f_ms / anchor["fwd_ms"],
                           fwdbwd_ratio=fb_ms / anchor["fwdbwd_ms"])
            rows.append(row)
            print(json.dumps(row), flush=True)
            torch.cuda.empty_cache()
        del x, x_plain, x_cl
    return rows


SWEEP = {  # (BD forward, BD backward, BT, num_warps) tiles tried by --sweep, per padded d_state
    16: [(4, 2, 16, 1), (2, 2, 16, 1), (1, 1, 16, 1), (4, 4, 16, 1), (2, 2, 32, 1), (4, 2, 32, 2)],
    64: [(2, 2, 32, 4), (2, 2, 32, 2), (1, 1, 32, 2), (2, 1, 32, 2), (4, 2, 32, 4)],
}


def run_sweep(args) -> None:
    """Times the Triton scan with other tile shapes (the kernels read them from ``_config``)."""
    from mambatune.kernels.selective_scan import triton as scan_triton

    default = scan_triton._config
    for shape in SHAPES:
        x = make_inputs(*shape, device="cuda")
        for BDf, BDb, BT, warps in SWEEP.get(shape[3], []):
            scan_triton._config = lambda batch, dim, n, backward, BDf=BDf, BDb=BDb, BT=BT, w=warps: dict(
                BD=BDb if backward else BDf, BN=max(2, 1 << (n - 1).bit_length()), BT=BT, num_warps=w)
            try:
                f_ms, _, _, _ = time_one(ours("triton"), x, grad=False, budget_s=0.3)
                fb_ms, peak, _, _ = time_one(ours("triton"), x, grad=True, budget_s=0.3)
                print(f"sweep {shape} BD={BDf}/{BDb} BT={BT} warps={warps}: fwd {f_ms:.3f} ms, fwd+bwd {fb_ms:.3f} ms, "
                      f"peak {peak:.0f} MiB", flush=True)
            except Exception as err:  # a tile that does not compile or fit is reported, not fatal
                print(f"sweep {shape} BD={BDf}/{BDb} BT={BT} warps={warps}: failed ({type(err).__name__}: {err})")
        scan_triton._config = default
        del x


def print_table(rows: list[dict], copy_tbps: float) -> None:
    head = ("shape", "backend", "fwd ms", "fwd+bwd ms", "peak MiB", "fwd GB/s", "%copy", "mamba_ssm fwd", "fwd+bwd",
            "peak", "ratio fwd", "ratio f+b")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        a = r.get("anchor_fwd_ms")
        cells = [r["shape"], r["backend"], f"{r['fwd_ms']:.3f}", f"{r['fwdbwd_ms']:.3f}", f"{r['peak_MiB']:.0f}",
                 f"{r['fwd_GBps']:.0f}", f"{100 * r['fwd_GBps'] / (copy_tbps * 1e3):.0f}%",
                 f"{a:.3f}" if a else "-", f"{r['anchor_fwdbwd_ms']:.3f}" if a else "-",
                 f"{r['anchor_peak_MiB']}" if a else "-",
                 f"{r['fwd_ratio']:.2f}x" if a else "-", f"{r['fwdbwd_ratio']:.2f}x" if a else "-"]
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
    ap.add_argument("--sweep", action="store_true", help="also time other Triton tile shapes")
    ap.add_argument("--backends", default="triton,triton_channels_last,chunked,reference,mambapy_pscan,mamba_ssm_cuda",
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
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print_table(rows, load_anchors(args.anchors).get("limits", {}).get("hbm_copy_TBps", 2.97))
    if args.sweep:
        run_sweep(args)


if __name__ == "__main__":
    main()
