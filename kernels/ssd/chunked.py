"""SSD scan in plain PyTorch (the matmul form of Mamba-2), for CPUs and any device without Triton.

The sequence is cut into chunks of Q steps; with a[t] = dt[t] * A the log decay of step t and
S[t] its cumulative sum inside the chunk, four pieces give the output (Dao & Gu, 2024, sec. 6):

1. inside a chunk (quadratic in Q, all matmuls):
   y[t] = sum_{s <= t} (C[t] . B[s]) * exp(S[t] - S[s]) * dt[s] * x[s]
2. each chunk's own contribution to the state at its end:
   st[c] = sum_s exp(S[end] - S[s]) * dt[s] * x[s] (outer) B[s]
3. the state between chunks, a short loop over the chunks:
   h[c] = exp(S[end of c]) * h[c - 1] + st[c]
4. what the incoming state adds inside the next chunk:
   y[t] += exp(S[t]) * C[t] . h[c - 1]

Piece 1 needs exp(S[t] - S[s]) per head for every pair. Where the range of S inside a chunk allows
(at most EXP_RANGE), it is split as exp(S[t] - mid) * exp(mid - S[s]): the second factor is folded
into x, the first scales the output rows, and piece 1 becomes one matmul per chunk and group,
(C . B^T masked to s <= t) over all heads' channels at once, in the inputs' own step-major layout.
A wider range takes the per-head difference form (a (..., Q, Q) tensor per head, head-major copies).

Packed sequences (``seq_idx``) cut every path that crosses a document start: a pair (t, s) counts
only when both steps belong to the same document, and the incoming state only reaches steps of the
document that was running at the chunk's start. Padded steps have dt = 0, so they are identity
steps. Autograd differentiates this directly, except piece 3 (``_ChunkRecurrence``, its own
backward); memory is O(batch * L * (H * P * (1 + N / Q) + G * Q)) on the fast path.

Measured against the reference loop (fp32, chunk 64, 2026-12-02, 2 CPU cores shared with a CI run;
median of 9 forwards, 7 forward + backward (the loop's: 3); one thread: CPU time, two threads: wall):
one thread, B2 L512 H8 P32 N32: forward 4.3 ms vs 23 ms (5.4x), forward + backward 16 ms vs 0.30 s (19x);
B1 L2048 H24 P64 N128: forward 50 ms vs 0.30 s (6.0x), forward + backward 0.25 s vs 23.7 s (94x);
B2 L2048 H8 P32 N32: forward 12.6 ms vs 116 ms (9.2x), forward + backward 61 ms vs 4.8 s (80x).
Two threads, the same shapes: forward 9.8x, 7.3x, 13.9x; forward + backward 21x, 107x, 84x.
The forward does about the loop's arithmetic (P * N per head and step, twice, plus Q * P), but in
batched matmuls, which are now about two thirds of its time at N = 128.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .spec import SSDInputs

# Chunk length cap on a CPU: re-measured with the fast path below (2026-12-02, Q = 16 / 32 / 64 / 128
# at the three shapes of issue 18), 64 is the fastest or level with 128, and 128 would double the
# decay range a chunk must fit into EXP_RANGE; a larger chunk_size is capped to this.
MAX_CHUNK = 64
# The widest range of summed log decay S inside one chunk (and head) for which exp(S[t] - S[s]) is
# formed as a product of two exponentials, each then within exp(+-60) (fp32 reaches exp(+-87)); a
# wider one takes the per-head difference form, exact at any range and 1.5-2x the forward time.
EXP_RANGE = 120.0


def _pad_steps(t: torch.Tensor, pad: int) -> torch.Tensor:
    """Pads dim 1 (the steps) of t with ``pad`` zeros at the end."""
    if pad == 0:
        return t
    return torch.cat([t, t.new_zeros(t.shape[0], pad, *t.shape[2:])], dim=1)


class _ChunkRecurrence(torch.autograd.Function):
    """The state between chunks: ``h[c + 1] = through[c] * h[c] + states[c]``, written into one tensor.

    Returns ``(h_in, h_last)``: h_in (b, nc, H, P, N) holds h[0 .. nc - 1], the state entering each chunk,
    and h_last (b, H, P, N) is h[nc]. Its own backward, because autograd through a Python loop over
    slices stacks the states (a copy) and, for each chunk, zero-fills a gradient of the whole of
    ``states``; here both directions write each chunk once.
    """

    @staticmethod
    def forward(ctx, states: torch.Tensor, through: torch.Tensor, h0: torch.Tensor):
        # states (b, nc, H, P, N), through (b, nc, H), h0 (b, H, P, N)
        nc = states.shape[1]
        decay = through[..., None, None]
        h_in = torch.empty_like(states)
        h_in[:, 0] = h0
        compiling = torch.compiler.is_compiling()  # a compiled graph takes no non-contiguous out= tensor
        for c in range(nc - 1):
            if compiling:
                h_in[:, c + 1] = torch.addcmul(states[:, c], decay[:, c], h_in[:, c])
            else:
                torch.addcmul(states[:, c], decay[:, c], h_in[:, c], out=h_in[:, c + 1])
        h_last = torch.addcmul(states[:, -1], decay[:, -1], h_in[:, -1])
        ctx.save_for_backward(through, h_in)
        return h_in, h_last

    @staticmethod
    @once_differentiable
    def backward(ctx, d_h_in: torch.Tensor, d_h_last: torch.Tensor):
        through, h_in = ctx.saved_tensors
        nc = h_in.shape[1]
        decay = through[..., None, None]
        d_states = torch.empty_like(h_in)
        d_through = torch.empty_like(through)
        g = d_h_last  # gradient of h[c + 1]
        for c in reversed(range(nc)):
            d_states[:, c] = g
            d_through[:, c] = (g * h_in[:, c]).sum((-1, -2))
            g = torch.addcmul(d_h_in[:, c], decay[:, c], g)
        return d_states, d_through, g


def ssd_scan_chunked(p: SSDInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(y, final_state)`` with the semantics of ``reference.ssd_scan_reference``."""
    batch, length, heads, headdim, groups, n_state = p.shape
    h0 = p.initial_state.float() if p.initial_state is not None else None
    if length == 0:
        h = h0 if h0 is not None else p.x.new_zeros(batch, heads, headdim, n_state, dtype=torch.float32)
        return p.x.new_zeros(p.x.shape), h
    Q = min(p.chunk_size, MAX_CHUNK, length)
    n_chunks = math.ceil(length / Q)
    pad = n_chunks * Q - length
    b, nc, G, K, P, N = batch, n_chunks, groups, heads // groups, headdim, n_state

    # Step-major layout (b, nc, Q, G, K, P) as the inputs come: the state matmuls of each chunk and group
    # are then single matmuls over all K * P channels of its heads, on views without copies (G = 1).
    x_in = p.x.float()
    x = _pad_steps(x_in, pad).view(b, nc, Q, G, K, P)
    dt = _pad_steps(p.discretised_dt(), pad).view(b, nc, Q, G, K)
    B = _pad_steps(p.B.float(), pad).view(b, nc, Q, G, N).transpose(2, 3)  # (b, nc, G, Q, N)
    C = _pad_steps(p.C.float(), pad).view(b, nc, Q, G, N).transpose(2, 3)
    seg = None  # document number of each step, (b, nc, Q)
    resets = p.resets()
    if resets is not None:
        seg = torch.cumsum(resets.long(), dim=1)
        seg = torch.cat([seg, seg[:, -1:].expand(b, pad)], dim=1).view(b, nc, Q)

    cum = torch.cumsum(dt * p.A.float().view(G, K), dim=2)  # summed log decay, (b, nc, Q, G, K)

    # 1. inside each chunk. The [t, s] factor exp(S[t] - S[s]) is per head, C[t] . B[s] per group.
    keep = torch.ones(Q, Q, dtype=torch.bool, device=x.device).tril()  # [t, s]: s <= t
    if seg is not None:
        keep = keep & (seg[..., :, None] == seg[..., None, :])  # (b, nc, Q, Q)
    CB = C @ B.transpose(-1, -2)  # (b, nc, G, Q, Q)
    hi, lo = cum.amax(dim=2, keepdim=True), cum.amin(dim=2, keepdim=True)
    # the test reads a value, which a compiled graph cannot branch on: under torch.compile the exact
    # per-head form below always runs (no graph break)
    if not torch.compiler.is_compiling() and bool((hi - lo).max() <= EXP_RANGE):
        # exp(S[t] - S[s]) = exp(S[t] - mid) * exp(mid - S[s]), each within exp(+-EXP_RANGE / 2): the
        # second factor goes into x, the first onto the output rows, and the per-head [Q, Q] tensor is
        # never formed; what remains is one matmul per chunk and group over all K * P channels.
        mid = ((hi + lo) / 2).detach()  # any shift is exact; this one keeps both factors in range
        to_mid = torch.exp(cum - mid)  # (b, nc, Q, G, K)
        xs = (x * (dt * torch.exp(mid - cum))[..., None]).view(b, nc, Q, G, K * P).transpose(2, 3)
        inside = (CB.masked_fill(~keep.unsqueeze(-3), 0.0) @ xs).transpose(2, 3).unflatten(-1, (K, P))
        inside_scale = to_mid[..., None]  # (b, nc, Q, G, K, 1)
    else:
        # a decay over one chunk beyond exp(-EXP_RANGE): the differences S[t] - S[s] themselves, per
        # head, in a head-major layout; masked before exp, as exp(S[t] - S[s]) for s > t may overflow
        cum_h = cum.permute(0, 3, 4, 1, 2).contiguous()  # (b, G, K, nc, Q)
        # in place after the subtraction: masked_fill_ needs only the mask and exp_ only its own result
        # for the backward, so autograd allows it and two (..., Q, Q) allocations are saved
        keep_h = keep if seg is None else keep[:, None, None]  # (b, 1, 1, nc, Q, Q)
        decay = (cum_h[..., :, None] - cum_h[..., None, :]).masked_fill_(~keep_h, -math.inf).exp_()
        x_h = (x * dt[..., None]).permute(0, 3, 4, 1, 2, 5).contiguous()  # (b, G, K, nc, Q, P)
        inside = ((decay * CB.transpose(1, 2)[:, :, None]) @ x_h).permute(0, 3, 4, 1, 2, 5)  # (b, nc, Q, G, K, P)
        inside_scale = None

    # 2. each chunk's contribution to the state at its end, one matmul per chunk and group
    to_end = torch.exp(cum[:, :, -1:] - cum)  # (b, nc, Q, G, K)
    if seg is not None:
        to_end = to_end * (seg == seg[..., -1:])[..., None, None].to(to_end.dtype)
    xw = (x * (dt * to_end)[..., None]).view(b, nc, Q, G, K * P)  # dt joins the small factor first
    chunk_states = xw.permute(0, 1, 3, 4, 2) @ B  # (b, nc, G, K * P, N)

    # 3. the state between chunks
    through = torch.exp(cum[:, :, -1])  # (b, nc, G, K): decay of the incoming state over a whole chunk
    from_start = torch.exp(cum)  # (b, nc, Q, G, K): decay of the incoming state up to step t
    if seg is not None:
        seg_before = torch.cat([seg.new_zeros(b, 1), seg[:, :-1, -1]], dim=1)  # document running before each chunk
        through = through * (seg[:, :, -1] == seg_before)[..., None, None].to(through.dtype)
        from_start = from_start * (seg == seg_before[..., None])[..., None, None].to(from_start.dtype)
    h = h0 if h0 is not None else x.new_zeros(b, heads, P, N)
    h_in, h = _ChunkRecurrence.apply(chunk_states.view(b, nc, heads, P, N), through.view(b, nc, heads), h)
    h_in = h_in.view(b, nc, G, K * P, N)

    # 4. what the incoming state adds, one matmul per chunk and group, then the two parts together
    y_off = (C @ h_in.transpose(-1, -2)).transpose(2, 3).unflatten(-1, (K, P))  # (b, nc, Q, G, K, P)
    y = y_off * from_start[..., None]
    # in place: neither product saved y for its backward
    y = y.add_(inside) if inside_scale is None else y.addcmul_(inside, inside_scale)
    y = y.reshape(b, nc * Q, heads, headdim)[:, :length]
    if p.D is not None:
        y = y.addcmul_(x_in, p.D.float()[:, None])
    if p.z is not None:
        y = y * F.silu(p.z.float())
    if p.mask is not None:
        y = y.mul_(p.mask[:, :, None, None].to(y.dtype))
    return y.to(p.x.dtype), h
