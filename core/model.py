"""Mamba blocks, the backbone, and the recurrent state cache.

Backbone: token embedding -> n_layer x (norm -> mixer -> residual add) -> final norm.
Variants: causal (default), bidirectional (BiMamba mixers), and reverse-complement
equivariant for DNA (``rc_equivariant``: ``rcps`` runs the shared backbone on the
sequence and on its reverse complement and stacks both feature sets, Caduceus-PS
style; ``posthoc`` averages task outputs over both strands at evaluation).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.utils.checkpoint

from .config import MambaConfig
from .mixer import LayerState, MambaMixer
from .mixer2 import Mamba2Mixer, make_mixer


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.weight._no_weight_decay = True
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(dtype)


def make_norm(config: MambaConfig) -> nn.Module:
    if config.rms_norm:
        return RMSNorm(config.d_model, config.norm_epsilon)
    norm = nn.LayerNorm(config.d_model, eps=config.norm_epsilon)
    norm.weight._no_weight_decay = True
    norm.bias._no_weight_decay = True
    return norm


# The pre-norm residual stream through one fused kernel per block (kernels/norm: the previous block's
# residual add, the fp32 cast and this block's norm in one pass, forward and backward), in the pair form
# (mixer output, residual) that mamba_ssm uses. Off until measured on a GPU (benchmarks/train_step.py
# ``:fused``); exact against the unfused blocks (tests/core/test_fused_add_norm.py). Not used with
# gradient checkpointing, which checkpoints whole blocks.
FUSED_ADD_NORM = False


def add_norm(x: torch.Tensor, norm: nn.Module, residual: torch.Tensor | None, residual_in_fp32: bool,
             backend: str, out_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(norm(x + residual), x + residual)`` through kernels/norm, for an RMSNorm or LayerNorm module."""
    from mambatune.kernels.norm import add_layer_norm, add_rms_norm

    if isinstance(norm, RMSNorm):
        return add_rms_norm(x, norm.weight, residual, eps=norm.eps, residual_in_fp32=residual_in_fp32,
                            out_dtype=out_dtype, backend=backend)
    return add_layer_norm(x, norm.weight, norm.bias, residual, eps=norm.eps, residual_in_fp32=residual_in_fp32,
                          out_dtype=out_dtype, backend=backend)


class MambaBlock(nn.Module):
    """x -> x + mixer(norm(x)); the residual is kept in fp32 when ``residual_in_fp32``."""

    def __init__(self, config: MambaConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.norm = make_norm(config)
        self.mixer = make_mixer(config, layer_idx)
        self.parallel_adapter: nn.Module | None = None  # optional hook, see peft/parallel_adapter.py

    def forward(self, hidden, mask=None, seq_idx=None, state: LayerState | None = None):
        residual = hidden.float() if self.config.residual_in_fp32 else hidden
        normed = self.norm(hidden.to(self.norm.weight.dtype))
        out = self.mixer(normed, mask=mask, seq_idx=seq_idx, state=state)
        if self.parallel_adapter is not None:
            out = out + self.parallel_adapter(hidden, normed)
        return residual + out


class _HostCheckpoint(torch.autograd.Function):
    """Gradient checkpointing of one block whose saved input lives in host memory.

    Forward runs the block without keeping activations and copies its input to the
    CPU; backward copies it back, recomputes the block (under the forward's autocast
    state) and differentiates it. GPU memory then holds one layer's activations
    instead of every block's input: what very long sequences need (at L = 1M the
    24 block inputs of the 130m shape alone are 36 GiB in bf16)."""

    @staticmethod
    def forward(ctx, hidden, layer, mask, seq_idx, *params):
        ctx.layer, ctx.mask, ctx.seq_idx, ctx.device = layer, mask, seq_idx, hidden.device
        ctx.autocast = (torch.is_autocast_enabled(hidden.device.type),
                        torch.get_autocast_dtype(hidden.device.type))
        pin = hidden.device.type == "cuda"
        ctx.saved_input = hidden.detach().to("cpu", non_blocking=pin)
        if pin:
            ctx.saved_input = ctx.saved_input.pin_memory() if not ctx.saved_input.is_pinned() else ctx.saved_input
        ctx.input_requires_grad = hidden.requires_grad
        with torch.no_grad():
            return layer(hidden, mask=mask, seq_idx=seq_idx)

    @staticmethod
    def backward(ctx, grad_out):
        x = ctx.saved_input.to(ctx.device, non_blocking=True).requires_grad_(ctx.input_requires_grad)
        params = [p for p in ctx.layer.parameters() if p.requires_grad]
        enabled, dtype = ctx.autocast
        with torch.enable_grad(), torch.autocast(ctx.device.type, dtype=dtype, enabled=enabled):
            out = ctx.layer(x, mask=ctx.mask, seq_idx=ctx.seq_idx)
        inputs = ([x] if ctx.input_requires_grad else []) + params
        grads = list(torch.autograd.grad(out, inputs, grad_out, allow_unused=True))
        g_x = grads.pop(0) if ctx.input_requires_grad else None
        return (g_x, None, None, None, *grads)


def host_checkpoint(layer: nn.Module, hidden, mask=None, seq_idx=None):
    """Runs ``layer`` with its input checkpointed in host memory (see _HostCheckpoint)."""
    params = [p for p in layer.parameters() if p.requires_grad]
    return _HostCheckpoint.apply(hidden, layer, mask, seq_idx, *params)


class MambaCache:
    """Recurrent state of every layer for step-by-step inference."""

    def __init__(self, states: list[LayerState]):
        self.states = states
        self.seen = 0


def check_inputs(config: MambaConfig, input_ids=None, inputs_embeds=None, mask=None, seq_idx=None) -> None:
    """Raises a clear error for malformed model inputs.

    Under torch.compile only the checks of types and shapes run: those that read tensor values (token
    range, NaN / Inf) would each break the graph and sync the device, so they are left to eager runs."""
    values = not torch.compiler.is_compiling()
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids (batch, L) or inputs_embeds (batch, L, d_model)")
    if input_ids is not None:
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}")
        if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
            raise TypeError(f"input_ids must be an integer tensor (token ids), got {input_ids.dtype}")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, L), got shape {tuple(input_ids.shape)}")
        batch, length = input_ids.shape
        if values and input_ids.numel():
            lo, hi = (int(v) for v in torch.aminmax(input_ids))
            if lo < 0 or hi >= config.vocab_size:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"token id {bad} is out of range for vocab_size {config.vocab_size}; "
                    "check that the tokenizer matches the model"
                )
    else:
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != config.d_model:
            raise ValueError(f"inputs_embeds must be (batch, L, d_model={config.d_model}), got {tuple(inputs_embeds.shape)}")
        if not inputs_embeds.is_floating_point():
            raise TypeError(f"inputs_embeds must be a float tensor, got {inputs_embeds.dtype}")
        if values and not torch.isfinite(inputs_embeds).all():
            raise ValueError("inputs_embeds contains NaN or Inf values")
        batch, length = inputs_embeds.shape[:2]
    if batch == 0:
        raise ValueError("empty batch: the input has 0 sequences")
    if length == 0:
        raise ValueError("empty sequences: the input has length 0")
    if mask is not None:
        if tuple(mask.shape) != (batch, length):
            raise ValueError(f"attention mask must be (batch={batch}, L={length}), got {tuple(mask.shape)}")
        if values and mask.is_floating_point() and not torch.isfinite(mask).all():
            raise ValueError("attention mask contains NaN or Inf values")
    if seq_idx is not None and tuple(seq_idx.shape) != (batch, length):
        raise ValueError(f"seq_idx must be (batch={batch}, L={length}), got {tuple(seq_idx.shape)}")


class MambaModel(nn.Module):
    """The backbone. ``forward`` returns hidden states (batch, L, feature_dim)."""

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.padded_vocab_size, config.d_model)
        self.layers = nn.ModuleList([MambaBlock(config, i) for i in range(config.n_layer)])
        self.norm_f = make_norm(config)
        self.prompt: nn.Module | None = None  # optional hook: learned prompt embeddings, see peft/prompt.py
        self.gradient_checkpointing = False
        self.offload_checkpoints = False  # with gradient_checkpointing: keep block inputs in host memory
        self.apply(self._init_weights)
        if config.rc_equivariant != "none":
            self.register_buffer("complement", torch.tensor(config.complement_map, dtype=torch.long), persistent=False)

    @property
    def feature_dim(self) -> int:
        return self.config.d_model * (2 if self.config.rc_equivariant == "rcps" else 1)

    def _init_weights(self, module: nn.Module) -> None:
        c = self.config
        if isinstance(module, nn.Linear):
            if module.bias is not None and not getattr(module.bias, "_no_reinit", False):
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=c.initializer_range)
        if c.rescale_prenorm_residual and isinstance(module, (MambaMixer, Mamba2Mixer)) and hasattr(module, "out_proj"):
            # GPT-2 style: scale residual-writing projections by 1/sqrt(n_layer)
            nn.init.kaiming_uniform_(module.out_proj.weight, a=math.sqrt(5))
            with torch.no_grad():
                module.out_proj.weight /= math.sqrt(c.n_layer)

    def new_cache(self, batch: int, device=None) -> MambaCache:
        if self.config.bidirectional:
            raise ValueError("a bidirectional model cannot run step by step; use a causal model for generation")
        if self.config.rc_equivariant == "rcps":
            raise ValueError("an rcps model reads both strands whole and cannot run step by step")
        device = device or self.embedding.weight.device
        return MambaCache([layer.mixer.new_state(batch, device) for layer in self.layers])

    def embed(self, input_ids):
        return self.embedding(input_ids)

    def run_layers(self, hidden, mask=None, seq_idx=None, cache: MambaCache | None = None):
        n_prompt = 0
        if self.prompt is not None and (cache is None or cache.seen == 0):
            hidden, mask, seq_idx = self.prompt.prepend(hidden, mask, seq_idx)
            n_prompt = self.prompt.num_tokens
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        if FUSED_ADD_NORM and not checkpointing:
            out = self._fused_layers(hidden, mask, seq_idx, cache)
            return out[:, n_prompt:] if n_prompt else out
        for i, layer in enumerate(self.layers):
            state = cache.states[i] if cache is not None else None
            if self.gradient_checkpointing and self.training and state is None and torch.is_grad_enabled():
                if self.offload_checkpoints:
                    hidden = host_checkpoint(layer, hidden, mask, seq_idx)
                else:
                    hidden = torch.utils.checkpoint.checkpoint(layer, hidden, mask, seq_idx, None, use_reentrant=False)
            else:
                hidden = layer(hidden, mask=mask, seq_idx=seq_idx, state=state)
        out = self.norm_f(hidden.to(self.norm_f.weight.dtype))
        return out[:, n_prompt:] if n_prompt else out

    def _fused_layers(self, hidden, mask, seq_idx, cache: MambaCache | None):
        """run_layers' blocks and final norm with FUSED_ADD_NORM: the same sums, each block's norm fused with
        the residual add before it."""
        fp32 = self.config.residual_in_fp32
        backend = "reference" if self.config.backend in ("chunked", "reference") else "auto"
        out, residual = hidden, None
        for i, layer in enumerate(self.layers):
            state = cache.states[i] if cache is not None else None
            normed, residual = add_norm(out.to(layer.norm.weight.dtype) if residual is None else out, layer.norm,
                                        residual, fp32, backend)
            out = layer.mixer(normed, mask=mask, seq_idx=seq_idx, state=state)
            if layer.parallel_adapter is not None:
                out = out + layer.parallel_adapter(residual, normed)
        normed, _ = add_norm(out, self.norm_f, residual, fp32, backend, out_dtype=self.norm_f.weight.dtype)
        return normed

    def forward(self, input_ids=None, attention_mask=None, seq_idx=None, inputs_embeds=None, cache: MambaCache | None = None,
                validate: bool = True):
        """input_ids: (batch, L) int; attention_mask: (batch, L), 1 = real token, 0 = padding;
        seq_idx: (batch, L) document index for packed sequences. Returns (batch, L, feature_dim).
        ``validate=False`` skips the input checks (each costs a device sync) for inputs the
        caller made itself, such as generated tokens."""
        if validate:
            check_inputs(self.config, input_ids, inputs_embeds, attention_mask, seq_idx)
        mask = attention_mask.bool() if attention_mask is not None else None
        if mask is not None and not torch.compiler.is_compiling() and bool(mask.all()):
            mask = None  # nothing is padded: skip the masking work (a compiled graph keeps it: no sync)
        hidden = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        out = self.run_layers(hidden, mask, seq_idx, cache)
        if cache is not None:
            cache.seen += hidden.shape[1]
        if self.config.rc_equivariant == "rcps":
            if input_ids is None:
                raise ValueError("rc_equivariant='rcps' needs input_ids (it builds the reverse complement from them)")
            rc_ids = self.reverse_complement(input_ids, mask)
            rc_mask = mask.flip(1) if mask is not None else None
            rc_seq = seq_idx.flip(1) if seq_idx is not None else None
            out_rc = self.run_layers(self.embed(rc_ids), rc_mask, rc_seq)
            out = torch.cat([out, out_rc.flip(1)], dim=-1)
        return out

    def reverse_complement(self, input_ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Reverse complement of token ids (batch, L): complemented and flipped along L.

        Right padding ends up on the left; masked steps are identity steps, so that is harmless."""
        if self.config.rc_equivariant == "none":
            raise ValueError("reverse_complement needs a config with rc_equivariant and complement_map")
        return self.complement[input_ids].flip(1)
