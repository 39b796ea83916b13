"""Mamba-2 checkpoints: Hugging Face ``Mamba2ForCausalLM`` and original mamba_ssm Mamba-2 folders.

Only the configs differ from Mamba-1's layouts: the weight names (``backbone.layers.i.mixer.in_proj``,
``conv1d``, ``dt_bias``, ``A_log``, ``D``, ``norm``, ``out_proj``) are our own, so ``checkpoints.to_ours``
renames them as it does Mamba-1's. ``checkpoints.py`` calls in here for the Mamba-2 formats.
"""
from __future__ import annotations

import math
import re

from .config import MambaConfig

HF_FORMAT = "hf_mamba2"
# the parameters a Hugging Face Mamba2ForCausalLM holds, in our names
HF_KEYS = re.compile(
    r"(backbone\.(embedding|norm_f|layers\.\d+\.(norm|mixer\.(in_proj|out_proj|conv1d|norm)))\.(weight|bias)"
    r"|backbone\.layers\.\d+\.mixer\.(A_log|D|dt_bias)|head\.weight)$"
)


class Mamba2CheckpointError(ValueError):
    """A Mamba-2 config or model that cannot be converted; ``core.checkpoints`` re-raises it as its
    CheckpointError (this module imports nothing from there, so the two have no import cycle)."""


def _error(message: str) -> Exception:
    return Mamba2CheckpointError(message)


def _dt_limit(limit) -> list[float] | None:
    """HF's time_step_limit / mamba_ssm's dt_limit; (0, inf) means no clamp (None). transformers 5
    writes infinity as ``{"__float__": "Infinity"}``, older versions as a bare ``Infinity``."""
    if limit is None:
        return None
    lo, hi = (float(v["__float__"]) if isinstance(v, dict) else float(v) for v in limit)
    return None if lo == 0.0 and math.isinf(hi) else [lo, hi]


def config_from_hf_mamba2(c: dict) -> MambaConfig:
    """A Hugging Face ``Mamba2Config`` dict as our MambaConfig (arch mamba2); a key left out takes
    transformers' default."""
    missing = [k for k in ("hidden_size", "num_hidden_layers", "vocab_size") if k not in c]
    if missing:
        raise _error(f"this Hugging Face Mamba-2 config.json lacks {', '.join(missing)}")
    if c.get("hidden_act", "silu") != "silu":
        raise _error(f"hidden_act {c['hidden_act']!r} is not supported (Mamba-2 uses silu)")
    d_model, expand, headdim = c["hidden_size"], c.get("expand", 2), c.get("head_dim", 64)
    if c.get("num_heads") is not None and c["num_heads"] * headdim != expand * d_model:
        raise _error(f"num_heads * head_dim = {c['num_heads'] * headdim} differs from expand * hidden_size = "
                     f"{expand * d_model}; Hugging Face Mamba-2 needs them equal")
    return MambaConfig(
        arch="mamba2", d_model=d_model, n_layer=c["num_hidden_layers"], vocab_size=c["vocab_size"],
        d_state=c.get("state_size", 128), d_conv=c.get("conv_kernel", 4), expand=expand, headdim=headdim,
        ngroups=c.get("n_groups", 8), chunk_size=c.get("chunk_size", 256), pad_vocab_size_multiple=1, rms_norm=True,
        norm_epsilon=c.get("layer_norm_epsilon", 1e-5), residual_in_fp32=c.get("residual_in_fp32", True),
        conv_bias=c.get("use_conv_bias", True), bias=c.get("use_bias", False),
        dt_min=c.get("time_step_min", 0.001), dt_max=c.get("time_step_max", 0.1),
        dt_init_floor=c.get("time_step_floor", 1e-4), dt_limit=_dt_limit(c.get("time_step_limit")),
        initializer_range=c.get("initializer_range", 0.1),
        rescale_prenorm_residual=c.get("rescale_prenorm_residual", False),
        tie_embeddings=c.get("tie_word_embeddings", False), pad_token_id=c.get("pad_token_id"),
    )


def config_to_hf_mamba2(cfg: MambaConfig) -> dict:
    """Our Mamba-2 config as a Hugging Face ``Mamba2Config`` dict; raises what HF cannot hold."""
    why = ("bidirectional" if cfg.bidirectional else "RC-equivariant" if cfg.rc_equivariant != "none"
           else "LayerNorm" if not cfg.rms_norm else "d_ssm < d_inner (an MLP beside the SSM)"
           if cfg.d_ssm not in (None, cfg.d_inner) else "norm_before_gate" if cfg.norm_before_gate else None)
    if why:
        raise _error(f"Hugging Face Mamba2ForCausalLM cannot hold this model: {why}")
    out = {
        "architectures": ["Mamba2ForCausalLM"], "model_type": "mamba2",
        "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layer, "vocab_size": cfg.padded_vocab_size,
        "state_size": cfg.d_state, "conv_kernel": cfg.d_conv, "expand": cfg.expand, "head_dim": cfg.headdim,
        "num_heads": cfg.nheads, "n_groups": cfg.ngroups, "chunk_size": cfg.chunk_size,
        "layer_norm_epsilon": cfg.norm_epsilon, "residual_in_fp32": cfg.residual_in_fp32, "use_bias": cfg.bias,
        "use_conv_bias": cfg.conv_bias, "hidden_act": "silu", "time_step_min": cfg.dt_min,
        "time_step_max": cfg.dt_max, "time_step_floor": cfg.dt_init_floor,
        "initializer_range": cfg.initializer_range, "rescale_prenorm_residual": cfg.rescale_prenorm_residual,
        "tie_word_embeddings": cfg.tie_embeddings, "pad_token_id": cfg.pad_token_id, "use_cache": True,
    }
    if cfg.dt_limit is not None:  # left out, HF's default (0, inf): plain JSON has no infinity
        out["time_step_limit"] = list(cfg.dt_limit)
    return out


MAMBA_SSM2_KEYS = {"d_state", "d_conv", "expand", "headdim", "d_ssm", "ngroups", "chunk_size", "norm_before_gate",
                   "dt_min", "dt_max", "dt_init_floor", "dt_limit", "bias", "conv_bias"}
MAMBA_SSM2_IGNORED = {"layer", "use_mem_eff_path", "A_init_range"}  # no effect on a loaded model's outputs


def config_from_mamba_ssm2(c: dict) -> MambaConfig:
    """An original mamba_ssm config.json whose ssm_cfg.layer is ``Mamba2`` (pure Mamba-2 stacks only)."""
    ssm = dict(c.get("ssm_cfg") or {})
    if c.get("d_intermediate", 0) or c.get("attn_layer_idx"):
        raise _error("this mamba_ssm checkpoint has MLP or attention layers; only pure Mamba-2 stacks are supported")
    if ssm.get("D_has_hdim", False) or not ssm.get("rmsnorm", True):
        raise _error("ssm_cfg D_has_hdim=true or rmsnorm=false: mambatune's Mamba-2 has one D per head and the gated RMSNorm")
    ssm.pop("D_has_hdim", None)
    ssm.pop("rmsnorm", None)
    unknown = set(ssm) - MAMBA_SSM2_KEYS - MAMBA_SSM2_IGNORED
    if unknown:
        raise _error(f"ssm_cfg has options mambatune does not implement: {sorted(unknown)}")
    kw = {k: v for k, v in ssm.items() if k in MAMBA_SSM2_KEYS}
    kw["dt_limit"] = _dt_limit(kw.get("dt_limit"))
    kw.setdefault("d_state", 128)
    return MambaConfig(
        arch="mamba2", d_model=c["d_model"], n_layer=c["n_layer"], vocab_size=c["vocab_size"],
        pad_vocab_size_multiple=c.get("pad_vocab_size_multiple", 8), rms_norm=c.get("rms_norm", True),
        residual_in_fp32=c.get("residual_in_fp32", True), tie_embeddings=c.get("tie_embeddings", True),
        norm_epsilon=c.get("norm_epsilon", 1e-5), **kw,
    )


def hf_mamba2_parts(model) -> tuple[dict, dict]:
    """(the Hugging Face Mamba2Config dict, the model's state dict in our names) of an LM model; parameters
    Hugging Face Mamba-2 has no place for are an error. ``core.checkpoints.export_hf`` writes the folder."""
    hf_cfg = config_to_hf_mamba2(model.config)
    sd = model.state_dict()
    extra = [k for k in sd if not HF_KEYS.match(k)]
    if extra:
        raise _error(f"the model holds parameters Hugging Face Mamba-2 has no place for (merge adapters first): {extra[:5]}")
    return hf_cfg, sd