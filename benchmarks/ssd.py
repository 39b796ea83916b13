"""SSD (Mamba-2's scan) speed, memory and accuracy: ours against mamba_ssm's ``mamba_chunk_scan_combined``,
live in the same run; and a 130m-shape Mamba-2 training step against mamba_ssm's ``Mamba2`` module.

GPU::

    python -m mambatune.benchmarks.ssd [--json ssd.json] [--lengths 2048,8192] [--launch] [--train-step] [--packing]

CPU (no GPU needed): ``python -m mambatune.benchmarks.ssd --cpu`` times the chunked PyTorch path against the
step-by-step reference loop (fp32, forward and forward+backward, (B, L, H, P, N) = (2, 512, 8, 32, 32)), and
the training throughput of packed against padded batches of mixed-length documents (``--packing`` does the
latter on the GPU at the 130m width, 4 layers, 256 documents of 256-4096 tokens).

Scan rows at (B, L, H, P, N, G) = (4, L, 24, 64, 128, 1) in bf16 (x, dt, B, C bf16; A, D, dt_bias fp32;
dt softplus; no z, as mamba_ssm's Mamba2 module calls it): forward and forward+backward times (median of
CUDA-event timings through ``triton.testing.do_bench``), the peak memory of one forward+backward above the
inputs, and each output's and gradient's relative L2 error against an fp32 computation of the same inputs
(ours' chunked PyTorch path in fp32). Rows: ``mamba_ssm`` (chunk 256, its Mamba2 default), ``triton``
(ours, chunk 64), ``chunked`` (ours, PyTorch, autograd). ``--launch`` also times the Triton launch
settings of ``LAUNCHES`` (each checked against the same fp32 result).

``--train-step``: d_model 768, 24 layers, headdim 64 (24 heads), N 128, one group, vocabulary 50,280,
B4 x L2048, fp32 weights under bf16 autocast, AdamW: ours (``MambaForTask``, arch mamba2) against a stack
of mamba_ssm's ``Mamba2`` modules with the same embedding, RMSNorms and tied LM head (``use_mem_eff_path``
off: its fused path needs causal_conv1d's CUDA build; its conv is then ``nn.Conv1d``). Tokens per second
(median of the timed steps) and peak memory.

mamba_ssm is not a dependency: on the GPU machine its wheel is put on PYTHONPATH (../shared/peers/README.md).
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from mambatune.kernels.ssd import ssd_scan

from .kernel_timing import call_extra_mib, rel

SHAPE = dict(batch=4, heads=24, headdim=64, n=128, groups=1)
LAUNCHES = [{"fwd_bp": 32}, {"fwd_bp": 16}, {"fwd_warps": 8, "bwd_warps": 8},
            {"fwd_bp": 32, "fwd_warps": 8, "bwd_warps": 16}, {"fwd_parallel": True, "bwd_parallel": True},
            {"fwd_parallel": True, "bwd_parallel": True, "bwd_warps": 8},
            {"fwd_parallel": True, "fwd_bp": 32, "fwd_warps": 8, "bwd_parallel": True, "bwd_warps": 8}]
GRADS = ("x", "dt", "B", "C", "A", "D", "dt_bias")


def make_inputs(length: int, batch: int, heads: int, headdim: int, n: int, groups: int, device="cuda",
                dtype=torch.bfloat16, seed: int = 0) -> dict:
    """Mamba-2's scan inputs as its mixer makes them: dt = softplus(dt + dt_bias) in [0.001, 0.1] at init."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    dt0 = torch.exp(torch.rand(heads, generator=g) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
    t = dict(x=r(batch, length, heads, headdim).to(dtype), dt=(0.1 * r(batch, length, heads)).to(dtype),
             A=-torch.exp(torch.empty(heads).uniform_(0, math.log(16), generator=g)),
             B=r(batch, length, groups, n).to(dtype), C=r(batch, length, groups, n).to(dtype),
             D=torch.ones(heads), dt_bias=dt0 + torch.log(-torch.expm1(-dt0)))
    return {k: v.to(device).requires_grad_(True) for k, v in t.items()}


def ours(backend: str):
    def f(t):
        return ssd_scan(t["x"], t["dt"], t["A"], t["B"], t["C"], D=t["D"], dt_bias=t["dt_bias"], dt_softplus=True,
                        chunk_size=64, backend=backend)
    return f


def peer():
    """mamba_ssm's chunked SSD, or None where it does not import."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except Exception as err:  # noqa: BLE001 - any import failure means the peer is absent
        print(f"mamba_ssm not importable ({type(err).__name__}: {err}): its rows stay empty")
        return None

    def f(t):
        return mamba_chunk_scan_combined(t["x"], t["dt"], t["A"], t["B"], t["C"], chunk_size=256, D=t["D"],
                                         dt_bias=t["dt_bias"], dt_softplus=True)
    return f


def grads(f, t, dy):
    for v in t.values():
        v.grad = None
    y = f(t)
    y.backward(dy)
    return y.detach(), {k: t[k].grad.detach().clone() for k in GRADS}




def bench_scan(name: str, f, t, dy, truth) -> dict:
    from triton.testing import do_bench

    def fwd():
        with torch.no_grad():
            f(t)

    def fwd_bwd():
        f(t).backward(dy)

    y, g = grads(f, t, dy)  # compiles, and the accuracy against the fp32 result
    errors = {"y": rel(y, truth[0]), **{f"d{k}": rel(g[k], truth[1][k]) for k in GRADS}}
    ms_f = do_bench(fwd, warmup=5, rep=40)
    ms_fb = do_bench(fwd_bwd, warmup=5, rep=40, grad_to_none=list(t.values()))
    peak = call_extra_mib(fwd_bwd, list(t.values()), clear_first=False)
    row = {"row": name, "fwd_ms": round(ms_f, 3), "fwd_bwd_ms": round(ms_fb, 3), "peak_mib": round(peak, 1),
           "rel_err": {k: float(f"{v:.2e}") for k, v in errors.items()}}
    print(json.dumps(row), flush=True)
    return row


def scan_rows(length: int, launch: bool, sink) -> list[dict]:
    """The rows at length L; ``sink(row)`` receives each as it is measured."""
    from mambatune.kernels.ssd import triton as ssd_triton

    t = make_inputs(length, **SHAPE)
    dy = torch.randn(t["x"].shape, device="cuda", generator=torch.Generator("cuda").manual_seed(1)).to(torch.bfloat16)
    t32 = {k: v.detach().float().requires_grad_(True) for k, v in t.items()}
    truth = grads(ours("chunked"), t32, dy.float())
    del t32
    rows = []

    def add(name, f):
        rows.append({"L": length, **bench_scan(name, f, t, dy, truth)})
        sink(rows[-1])

    add("triton", ours("triton"))
    p = peer()
    if p is not None:
        add("mamba_ssm", p)
    if launch:
        default = dict(ssd_triton.LAUNCH)
        for setting in LAUNCHES:
            ssd_triton.LAUNCH = {**default, **setting}
            add("triton " + json.dumps(setting), ours("triton"))
        ssd_triton.LAUNCH = default
    add("chunked", ours("chunked"))
    return rows


# -- training step -------------------------------------------------------------------------------

class PeerLM(nn.Module):
    """mamba_ssm's Mamba2 modules in the same residual stack as ours: embedding, pre-norm blocks, final
    RMSNorm, tied LM head, residual in fp32."""

    def __init__(self, d_model: int, n_layer: int, vocab: int, d_state: int, headdim: int):
        super().__init__()
        from mamba_ssm.modules.mamba2 import Mamba2

        self.embedding = nn.Embedding(vocab, d_model)
        self.norms = nn.ModuleList([nn.RMSNorm(d_model, eps=1e-5) for _ in range(n_layer)])
        self.mixers = nn.ModuleList([Mamba2(d_model, d_state=d_state, headdim=headdim, ngroups=1,
                                            use_mem_eff_path=False, layer_idx=i) for i in range(n_layer)])
        self.norm_f = nn.RMSNorm(d_model, eps=1e-5)

    def forward(self, ids, labels):
        h = self.embedding(ids).float()
        for norm, mixer in zip(self.norms, self.mixers):
            h = h + mixer(norm(h)).float()
        logits = F.linear(self.norm_f(h), self.embedding.weight)
        return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten())


def time_steps(model, loss_fn, ids, steps: int = 6, warmup: int = 2) -> dict:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    times = []
    torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(model, ids)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    ms = sorted(times)[len(times) // 2] * 1e3
    return {"step_ms": round(ms, 1), "tokens_per_s": round(ids.numel() / ms * 1e3),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2), "loss": round(float(loss), 3)}


def train_step_rows(batch: int = 4, length: int = 2048) -> list[dict]:
    from mambatune.core import MambaConfig
    from mambatune.core.heads import MambaForTask

    vocab = 50280
    ids = torch.randint(0, vocab, (batch, length), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    rows = []
    torch.manual_seed(0)
    cfg = MambaConfig(arch="mamba2", d_model=768, n_layer=24, vocab_size=vocab, d_state=128, headdim=64, ngroups=1,
                      chunk_size=64, expand=2)
    model = MambaForTask(cfg).cuda()
    rows.append({"row": "ours (triton)", **time_steps(model, lambda m, x: m(input_ids=x, labels=x).loss, ids)})
    print(json.dumps(rows[-1]), flush=True)
    del model
    torch.cuda.empty_cache()
    try:
        model = PeerLM(768, 24, vocab, 128, 64).cuda()
    except Exception as err:  # noqa: BLE001 - the peer is optional
        print(f"mamba_ssm's Mamba2 not available ({type(err).__name__}: {err})")
        return rows
    rows.append({"row": "mamba_ssm Mamba2", **time_steps(model, lambda m, x: m(x, x), ids)})
    print(json.dumps(rows[-1]), flush=True)
    return rows


# -- CPU: the chunked path against the loop, packed against padded -------------------------------

CPU_SHAPE = dict(batch=2, heads=8, headdim=32, n=32, groups=1)


def _wall(fn, repeats: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def cpu_scan_rows(length: int = 512, repeats: int = 3) -> list[dict]:
    """Forward+backward seconds of ours' ``reference`` (the step-by-step loop) and ``chunked`` (the matmul
    form) in fp32 on this CPU, with the chunked path's error against the loop."""
    t = make_inputs(length, **CPU_SHAPE, device="cpu", dtype=torch.float32)
    dy = torch.randn(t["x"].shape, generator=torch.Generator().manual_seed(1))
    truth = grads(ours("reference"), t, dy)
    rows = []
    for name in ("reference", "chunked"):
        f = ours(name)
        y, g = grads(f, t, dy)
        errors = {"y": rel(y, truth[0]), **{f"d{k}": rel(g[k], truth[1][k]) for k in GRADS}}

        def fwd_bwd():
            for v in t.values():
                v.grad = None
            f(t).backward(dy)

        with torch.no_grad():
            s_f = _wall(lambda: f(t), repeats)
        s_fb = _wall(fwd_bwd, repeats)
        rows.append({"row": name, "L": length, "fwd_s": round(s_f, 4), "fwd_bwd_s": round(s_fb, 4),
                     "rel_err_vs_reference": {k: float(f"{v:.2e}") for k, v in errors.items()}})
        print(json.dumps(rows[-1]), flush=True)
    ref, chunked = rows
    print(f"chunked / reference speed-up: forward {ref['fwd_s'] / chunked['fwd_s']:.1f}x, "
          f"forward+backward {ref['fwd_bwd_s'] / chunked['fwd_bwd_s']:.1f}x", flush=True)
    return rows


def mixed_lengths(count: int, lo: int, hi: int, seed: int = 0) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi + 1, (count,), generator=g).tolist()


def pack_rows(lengths: list[int], row_length: int) -> list[list[int]]:
    """First-fit decreasing: document indices per row, each row's lengths summing to at most row_length."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(row_length - lengths[i])
    return rows


def padded_and_packed(docs: list[torch.Tensor], batch: int, row_length: int, device="cpu"):
    """The same documents as padded batches (``batch`` documents each, padded to the longest, with an
    ``attention_mask``) and as packed batches (rows of ``row_length`` tokens, first-fit decreasing, ``seq_idx``
    resets, no target across a document boundary; as many rows a batch as the padded batches have tokens on
    average). Each batch is a dict of model inputs with LM ``labels`` (-100 where nothing is predicted)."""
    count, lengths = len(docs), [len(d) for d in docs]
    hi = row_length

    padded = []
    for b in range(0, count, batch):
        group = docs[b:b + batch]
        width = max(len(d) for d in group)
        ids = torch.zeros(len(group), width, dtype=torch.long)
        mask = torch.zeros(len(group), width, dtype=torch.long)
        for r, d in enumerate(group):
            ids[r, :len(d)], mask[r, :len(d)] = d, 1
        padded.append({"input_ids": ids.to(device), "attention_mask": mask.to(device),
                       "labels": ids.masked_fill(mask == 0, -100).to(device)})

    rows_of_docs = pack_rows(lengths, hi)
    per_batch = max(1, round(len(rows_of_docs) / len(padded)))
    packed = []
    for b in range(0, len(rows_of_docs), per_batch):
        ids = torch.zeros(len(rows_of_docs[b:b + per_batch]), hi, dtype=torch.long)
        seq = torch.zeros_like(ids)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for r, members in enumerate(rows_of_docs[b:b + per_batch]):
            at = 0
            for k, i in enumerate(members):
                ids[r, at:at + lengths[i]], seq[r, at:at + lengths[i]], mask[r, at:at + lengths[i]] = docs[i], k, 1
                labels[r, at + 1:at + lengths[i]] = docs[i][1:]  # no target across a document boundary
                at += lengths[i]
            seq[r, at:] = len(members)  # the row's tail: its own segment, masked out
        packed.append({"input_ids": ids.to(device), "seq_idx": seq.to(device), "attention_mask": mask.to(device),
                       "labels": labels.to(device)})
    return padded, packed


def packed_vs_padded_rows(device: str = "cpu", count: int = 48, lo: int = 32, hi: int = 512, batch: int = 8,
                          repeats: int = 3, **shape) -> list[dict]:
    """Training-step throughput in real tokens/s of a small Mamba-2 LM over ``count`` documents of mixed
    lengths: padded (batches of ``batch`` documents, each padded to its longest, ``attention_mask``) against
    packed (documents laid end to end in rows of ``hi`` tokens, ``seq_idx`` resets; as many rows a batch as
    the padded batches have tokens on average)."""
    from mambatune.core import MambaConfig
    from mambatune.core.heads import MambaForTask

    cfg = dict(arch="mamba2", d_model=128, n_layer=2, vocab_size=64, d_state=32, headdim=32, ngroups=1,
               chunk_size=64, expand=2)
    cfg.update(shape)
    torch.manual_seed(0)
    model = MambaForTask(MambaConfig(**cfg)).to(device)
    lengths = mixed_lengths(count, lo, hi)
    g = torch.Generator().manual_seed(2)
    docs = [torch.randint(1, cfg["vocab_size"], (n,), generator=g) for n in lengths]
    real = sum(lengths)
    padded, packed = padded_and_packed(docs, batch, hi, device)

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def epoch(batches):
        def run():
            for inputs in batches:
                model(**inputs).loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            sync()
        return run

    rows = []
    for name, batches in (("padded", padded), ("packed", packed)):
        seconds = _wall(epoch(batches), repeats)
        slots = sum(b["input_ids"].numel() for b in batches)
        rows.append({"row": name, "device": device, "documents": count, "lengths": f"{lo}-{hi}",
                     "batches": len(batches), "token_slots": slots, "real_tokens": real,
                     "real_share": round(real / slots, 3), "seconds": round(seconds, 3),
                     "real_tokens_per_s": round(real / seconds)})
        print(json.dumps(rows[-1]), flush=True)
    print(f"packed / padded throughput: {rows[1]['real_tokens_per_s'] / rows[0]['real_tokens_per_s']:.2f}x",
          flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default="", help="write every row to this file")
    ap.add_argument("--lengths", default="2048,8192")
    ap.add_argument("--launch", action="store_true", help="also time the Triton launch settings of LAUNCHES")
    ap.add_argument("--train-step", action="store_true", help="also the 130m-shape training step")
    ap.add_argument("--cpu", action="store_true",
                    help="on this CPU: the chunked path against the reference loop, and packed against padded")
    ap.add_argument("--packing", action="store_true", help="also packed against padded on the GPU")
    args = ap.parse_args(argv)
    if args.cpu:
        out = {"device": "cpu", "threads": torch.get_num_threads(), "torch": torch.__version__,
               "scan": cpu_scan_rows(), "packing": packed_vs_padded_rows("cpu")}
        if args.json:
            open(args.json, "w").write(json.dumps(out, indent=1))
        return 0
    if not torch.cuda.is_available():
        print("benchmarks/ssd.py needs a CUDA GPU")
        return 2
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "shape": SHAPE, "scan": []}

    def sink(row):
        out["scan"].append(row)
        if args.json:
            open(args.json, "w").write(json.dumps(out, indent=1))

    for length in (int(v) for v in args.lengths.split(",")):
        scan_rows(length, args.launch, sink)
    if args.train_step:
        out["train_step"] = train_step_rows()
    if args.packing:
        out["packing"] = packed_vs_padded_rows("cuda", count=256, lo=256, hi=4096, batch=8, d_model=768,
                                               n_layer=4, d_state=128, headdim=64, vocab_size=50280)
    if args.json:
        open(args.json, "w").write(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
