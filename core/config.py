"""Typed configuration of a Mamba-1 or Mamba-2 model, validated on construction."""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any

BIDIRECTIONAL_STRATEGIES = ("add", "mul", "gate")
RC_MODES = ("none", "rcps", "posthoc")
BACKENDS = ("auto", "triton", "chunked", "reference")
ARCHS = ("mamba1", "mamba2")


class ConfigError(ValueError):
    """A configuration that is invalid or contradicts itself."""


def unknown_key_error(kind: str, key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
    return ConfigError(f"unknown {kind} key {key!r}{hint}")


def check_known_keys(cls, d: dict[str, Any], kind: str | None = None) -> None:
    """Raises for the first key of ``d`` that is not a field of the dataclass ``cls``, suggesting the nearest."""
    known = [f.name for f in dataclasses.fields(cls)]
    for k in d:
        if k not in known:
            raise unknown_key_error(kind or cls.__name__, k, known)


@dataclass
class MambaConfig:
    """Shape and behaviour of a Mamba-1 or Mamba-2 model.

    d_model: width of the residual stream; n_layer: number of blocks;
    d_state: SSM state size N; d_conv: causal conv width; expand: inner width
    factor (d_inner = expand * d_model); dt_rank: rank of the delta projection
    ("auto" = ceil(d_model / 16), Mamba-1 only); vocab_size: tokens, padded up to a multiple
    of pad_vocab_size_multiple for the embedding.

    arch: ``mamba1`` (selective scan, one A per channel and state) or ``mamba2`` (SSD: one
    scalar A per head). Mamba-2 only: headdim: channels per head (heads = d_ssm / headdim);
    ngroups: groups of heads sharing B and C; chunk_size: steps per chunk of the SSD kernels;
    d_ssm: channels that go through the SSM (None = d_inner; the other d_inner - d_ssm form a
    gated MLP beside it, as in mamba_ssm); norm_before_gate: the gated RMSNorm normalises y
    before multiplying by silu(z) (False: norm(y * silu(z)), what Hugging Face and mamba_ssm use);
    dt_limit: [lo, hi] clamp of dt after softplus (None = no clamp).
    """

    d_model: int = 768
    n_layer: int = 24
    vocab_size: int = 50277
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | str = "auto"
    pad_vocab_size_multiple: int = 8
    rms_norm: bool = True
    norm_epsilon: float = 1e-5
    residual_in_fp32: bool = True
    conv_bias: bool = True
    bias: bool = False
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init: str = "random"
    dt_scale: float = 1.0
    dt_init_floor: float = 1e-4
    initializer_range: float = 0.02
    rescale_prenorm_residual: bool = True
    tie_embeddings: bool = True
    pad_token_id: int | None = None
    bidirectional: bool = False
    bidirectional_strategy: str = "add"
    tie_bidirectional: bool = True
    rc_equivariant: str = "none"
    complement_map: list[int] | None = None
    backend: str = "auto"
    arch: str = "mamba1"
    headdim: int = 64
    ngroups: int = 1
    chunk_size: int = 256
    d_ssm: int | None = None
    norm_before_gate: bool = False
    dt_limit: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layer", "vocab_size", "d_state", "d_conv", "expand", "pad_vocab_size_multiple"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"MambaConfig.{name} must be a positive integer, got {v!r}")
        if self.d_state > 256:
            raise ConfigError(f"MambaConfig.d_state must be at most 256, got {self.d_state}")
        if self.d_conv > 4:
            raise ConfigError(f"MambaConfig.d_conv must be 1..4 (the conv kernels support widths up to 4), got {self.d_conv}")
        if self.dt_rank == "auto":
            self.dt_rank = math.ceil(self.d_model / 16)
        if isinstance(self.dt_rank, bool) or not isinstance(self.dt_rank, int) or self.dt_rank < 1:
            raise ConfigError(f"MambaConfig.dt_rank must be 'auto' or a positive integer, got {self.dt_rank!r}")
        if not (0 < self.dt_min <= self.dt_max):
            raise ConfigError(f"MambaConfig needs 0 < dt_min <= dt_max, got dt_min={self.dt_min}, dt_max={self.dt_max}")
        if self.dt_init not in ("random", "constant"):
            raise ConfigError(f"MambaConfig.dt_init must be 'random' or 'constant', got {self.dt_init!r}")
        if self.norm_epsilon <= 0:
            raise ConfigError(f"MambaConfig.norm_epsilon must be positive, got {self.norm_epsilon}")
        if self.bidirectional_strategy not in BIDIRECTIONAL_STRATEGIES:
            raise ConfigError(
                f"MambaConfig.bidirectional_strategy must be one of {BIDIRECTIONAL_STRATEGIES}, got {self.bidirectional_strategy!r}"
            )
        if self.rc_equivariant not in RC_MODES:
            raise ConfigError(f"MambaConfig.rc_equivariant must be one of {RC_MODES}, got {self.rc_equivariant!r}")
        if self.rc_equivariant != "none":
            if self.complement_map is None:
                raise ConfigError(
                    "MambaConfig.rc_equivariant needs complement_map (token id -> id of its complement base); "
                    "take it from the DNA tokenizer, e.g. DNATokenizer().complement_map"
                )
            if len(self.complement_map) != self.vocab_size:
                raise ConfigError(
                    f"MambaConfig.complement_map has {len(self.complement_map)} entries but vocab_size is {self.vocab_size}"
                )
            cm = self.complement_map
            if any(not 0 <= c < self.vocab_size for c in cm) or any(cm[c] != i for i, c in enumerate(cm)):
                raise ConfigError("MambaConfig.complement_map must be an involution on token ids (map[map[i]] == i)")
        if self.backend not in BACKENDS:
            raise ConfigError(f"MambaConfig.backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ConfigError(f"MambaConfig.pad_token_id {self.pad_token_id} is outside the vocabulary (size {self.vocab_size})")
        if self.arch not in ARCHS:
            raise ConfigError(f"MambaConfig.arch must be one of {ARCHS}, got {self.arch!r}")
        if self.arch == "mamba2":
            self._check_mamba2()

    def _check_mamba2(self) -> None:
        for name in ("headdim", "ngroups", "chunk_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"MambaConfig.{name} must be a positive integer, got {v!r}")
        d_ssm = self.d_ssm if self.d_ssm is not None else self.d_inner
        if isinstance(d_ssm, bool) or not isinstance(d_ssm, int) or not 1 <= d_ssm <= self.d_inner:
            raise ConfigError(f"MambaConfig.d_ssm must be None or an integer in 1..d_inner={self.d_inner}, got {self.d_ssm!r}")
        if d_ssm % self.headdim:
            raise ConfigError(f"MambaConfig: d_ssm = {d_ssm} (d_inner when unset) must be a multiple of headdim = {self.headdim}")
        if self.nheads % self.ngroups:
            raise ConfigError(f"MambaConfig: ngroups = {self.ngroups} must divide the number of heads {self.nheads} "
                              f"(d_ssm / headdim)")
        if not isinstance(self.norm_before_gate, bool):
            raise ConfigError(f"MambaConfig.norm_before_gate must be true or false, got {self.norm_before_gate!r}")
        if self.dt_limit is not None:
            lim = self.dt_limit
            if (not isinstance(lim, (list, tuple)) or len(lim) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in lim)
                    or not 0 <= lim[0] < lim[1]):
                raise ConfigError(f"MambaConfig.dt_limit must be None or [lo, hi] with 0 <= lo < hi, got {lim!r}")
            self.dt_limit = [float(v) for v in lim]

    @property
    def nheads(self) -> int:
        """Mamba-2 heads: d_ssm / headdim."""
        return (self.d_ssm if self.d_ssm is not None else self.d_inner) // self.headdim

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_size_multiple
        return ((self.vocab_size + m - 1) // m) * m

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MambaConfig":
        check_known_keys(cls, d)
        return cls(**d)
