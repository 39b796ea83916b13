"""Selective scan in plain PyTorch, for CPUs (and any device without Triton).

The sequence is cut into chunks of T steps. Inside a chunk everything but the
recurrence itself is computed in bulk (discretisation, input terms, outputs and
all gradient terms, vectorised over batch x dim x N x T); the recurrence
h[t] = a[t] * h[t-1] + b[t] is an in-place loop over T steps on time-major
buffers, which on a CPU beats a log-depth parallel scan (that would move
log2(T) times the data for the same result).

A hand-written backward recomputes each chunk from the state saved at its
start, so memory is O(B*D*L + B*D*N*L/T), never O(B*D*N*L).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .spec import ScanInputs

# Elements of one (T, batch, dim, N) chunk buffer; sets T. About 16 MB in fp32.
_CHUNK_ELEMENTS = 1 << 22


def _chunk_len(batch: int, dim: int, n_state: int, length: int) -> int:
    t = max(16, _CHUNK_ELEMENTS // max(1, batch * dim * n_state))
    return max(1, min(length, t))


def _group_sum(g: torch.Tensor, groups: int) -> torch.Tensor:
    """(batch, dim, N, T) -> (batch, groups, N, T) by summing each group's channels."""
    batch, dim, n, t = g.shape
    return g.view(batch, groups, dim // groups, n, t).sum(2)


class _Chunk:
    """Per-chunk quantities, time-major: (T, batch, dim, N)."""

    def __init__(self, dt, u, A, Bc, Cc, keep):
        # dt, u: (batch, dim, T) fp32; Bc, Cc: (batch, dim, N, T) or (dim, N); keep: (batch, T) or None
        self.dtA = dt.permute(2, 0, 1)[..., None] * A  # (T, b, d, N)
        self.a = torch.exp(self.dtA)
        if keep is not None:
            self.a_keep = self.a * keep.t()[:, :, None, None]
        else:
            self.a_keep = self.a
        dtu = (dt * u).permute(2, 0, 1)[..., None]  # (T, b, d, 1)
        self.B_t = Bc.permute(3, 0, 1, 2) if Bc.dim() == 4 else Bc[None, None]
        self.C_t = Cc.permute(3, 0, 1, 2) if Cc.dim() == 4 else Cc[None, None]
        self.dtu = dtu
        self.bx = dtu * self.B_t  # (T, b, d, N)


def _run_states(ch: _Chunk, h0: torch.Tensor) -> torch.Tensor:
    """All states of the chunk, (T, b, d, N), starting from h0 (b, d, N)."""
    hs = torch.empty_like(ch.bx)
    h = h0
    for t in range(hs.shape[0]):
        h = torch.addcmul(ch.bx[t], ch.a_keep[t], h, out=hs[t])
    return hs


def _prepare(p: ScanInputs):
    u = p.u.float()
    dt_pre = p.delta.float()
    if p.delta_bias is not None:
        dt_pre = dt_pre + p.delta_bias.float()[None, :, None]
    dt = F.softplus(dt_pre) if p.delta_softplus else dt_pre
    if p.mask is not None:
        dt = dt * p.mask[:, None, :].to(dt.dtype)
    keep = None
    if p.seq_idx is not None:
        keep = torch.ones(p.seq_idx.shape, dtype=torch.float32, device=u.device)
        keep[:, 1:] = (p.seq_idx[:, 1:] == p.seq_idx[:, :-1]).float()
    return u, dt_pre, dt, keep


def _slice_bc(t: torch.Tensor, dim: int, s: int, e: int) -> torch.Tensor:
    if t.dim() == 2:
        return t.float()
    return t[..., s:e].float().repeat_interleave(dim // t.shape[1], dim=1)


class _ChunkedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p: ScanInputs, u_, delta_, A_, B_, C_, D_, z_, bias_, h0_):
        u, dt_pre, dt, keep = _prepare(p)
        batch, dim, length = u.shape
        n_state = p.A.shape[1]
        A = p.A.float()
        T = _chunk_len(batch, dim, n_state, length)
        h = p.initial_state.float().clone() if p.initial_state is not None else u.new_zeros(batch, dim, n_state)
        y = u.new_empty(batch, dim, length)
        starts = []
        for s in range(0, length, T):
            e = min(length, s + T)
            starts.append(h)
            ch = _Chunk(dt[:, :, s:e], u[:, :, s:e], A, _slice_bc(p.B, dim, s, e), _slice_bc(p.C, dim, s, e),
                        keep[:, s:e] if keep is not None else None)
            hs = _run_states(ch, h)
            y[:, :, s:e] = (hs * ch.C_t).sum(-1).permute(1, 2, 0)
            h = hs[-1].clone()
        if p.D is not None:
            y += u * p.D.float()[None, :, None]
        y_pre = y
        out = y
        if p.z is not None:
            out = y * F.silu(p.z.float())
        if p.mask is not None:
            out = out * p.mask[:, None, :].to(out.dtype)
        ctx.p = p
        ctx.T = T
        ctx.save_for_backward(*([torch.stack(starts)] if starts else [h[None]]), y_pre if p.z is not None else None)
        return out.to(p.u.dtype), h

    @staticmethod
    def backward(ctx, g_out, g_final):
        p: ScanInputs = ctx.p
        starts, y_pre = ctx.saved_tensors
        u, dt_pre, dt, keep = _prepare(p)
        batch, dim, length = u.shape
        n_state = p.A.shape[1]
        A = p.A.float()
        T = ctx.T
        g_out = g_out.float() if g_out is not None else u.new_zeros(batch, dim, length)
        if p.mask is not None:
            g_out = g_out * p.mask[:, None, :].to(g_out.dtype)
        g_z = None
        if p.z is not None:
            z = p.z.float()
            sig = torch.sigmoid(z)
            g_z = g_out * y_pre * sig * (1 + z * (1 - sig))
            g_y = g_out * z * sig
        else:
            g_y = g_out
        g_D = (g_y * u).sum((0, 2)) if p.D is not None else None
        g_u = g_y * p.D.float()[None, :, None] if p.D is not None else torch.zeros_like(u)
        g_dt = torch.zeros_like(u)
        g_A = torch.zeros_like(A)
        tv_B, tv_C = p.B.dim() == 4, p.C.dim() == 4
        g_B = torch.zeros(p.B.shape, dtype=torch.float32, device=u.device)
        g_C = torch.zeros(p.C.shape, dtype=torch.float32, device=u.device)
        # gradient w.r.t. the state after the current chunk's last step, flowing backwards
        g_h = g_final.float().clone() if g_final is not None else u.new_zeros(batch, dim, n_state)
        chunk_starts = list(range(0, length, T))
        for ci in reversed(range(len(chunk_starts))):
            s = chunk_starts[ci]
            e = min(length, s + T)
            kc = keep[:, s:e] if keep is not None else None
            ch = _Chunk(dt[:, :, s:e], u[:, :, s:e], A, _slice_bc(p.B, dim, s, e), _slice_bc(p.C, dim, s, e), kc)
            h0 = starts[ci]
            hs = _run_states(ch, h0)
            gy_t = g_y[:, :, s:e].permute(2, 0, 1)[..., None]  # (T, b, d, 1)
            gyC = gy_t * ch.C_t  # (T, b, d, N)
            gs = torch.empty_like(hs)
            # g[t] = gyC[t] + a_keep[t+1] * g[t+1]; the incoming g_h belongs to the state after step e-1
            g = g_h
            first = True
            for t in range(e - s - 1, -1, -1):
                if first:
                    g = torch.add(gyC[t], g, out=gs[t])
                    first = False
                else:
                    g = torch.addcmul(gyC[t], ch.a_keep[t + 1], g, out=gs[t])
            g_h = ch.a_keep[0] * gs[0]  # into the state before this chunk
            h_prev = torch.cat([h0[None], hs[:-1]], 0)  # (T, b, d, N)
            ga = gs * h_prev  # d loss / d a_keep
            if kc is not None:
                ga = ga * kc.t()[:, :, None, None]
            ga_a = ga * ch.a  # d loss / d (dt*A)
            g_dt_c = (ga_a * A).sum(-1) + (gs * ch.B_t * u[:, :, s:e].permute(2, 0, 1)[..., None]).sum(-1)
            g_dt[:, :, s:e] = g_dt_c.permute(1, 2, 0)
            g_A += (ga_a * dt[:, :, s:e].permute(2, 0, 1)[..., None]).sum((0, 1))
            g_u[:, :, s:e] += (gs * ch.B_t).sum(-1).permute(1, 2, 0) * dt[:, :, s:e]
            gB_c = gs * ch.dtu  # (T, b, d, N)
            gC_c = gy_t * hs
            if tv_B:
                g_B[..., s:e] += _group_sum(gB_c.permute(1, 2, 3, 0), p.B.shape[1])
            else:
                g_B += gB_c.sum((0, 1))
            if tv_C:
                g_C[..., s:e] += _group_sum(gC_c.permute(1, 2, 3, 0), p.C.shape[1])
            else:
                g_C += gC_c.sum((0, 1))
        g_h0 = g_h if p.initial_state is not None else None
        if p.mask is not None:
            g_dt = g_dt * p.mask[:, None, :].to(g_dt.dtype)
        g_pre = g_dt * torch.sigmoid(dt_pre) if p.delta_softplus else g_dt
        g_bias = g_pre.sum((0, 2)) if p.delta_bias is not None else None

        def cast(g, ref):
            return None if g is None or ref is None or not ref.requires_grad else g.to(ref.dtype)

        return (
            None,
            cast(g_u, p.u),
            cast(g_pre, p.delta),
            cast(g_A, p.A),
            cast(g_B, p.B),
            cast(g_C, p.C),
            cast(g_D, p.D),
            cast(g_z, p.z),
            cast(g_bias, p.delta_bias),
            cast(g_h0, p.initial_state),
        )


def selective_scan_chunked(p: ScanInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(y, final_state)`` with the semantics of ``reference.selective_scan_reference``."""
    return _ChunkedScan.apply(p, p.u, p.delta, p.A, p.B, p.C, p.D, p.z, p.delta_bias, p.initial_state)
