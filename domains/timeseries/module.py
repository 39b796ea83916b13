"""A channel-independent Mamba forecaster on the shared core.

Each series is read on its own (channel independence, as in PatchTST): its context
is scaled per instance (``revin`` by default), cut into patch tokens (or per-step
tokens with ``patch_length = stride = 1``), embedded by one linear map and read
by a causal ``MambaModel`` through ``inputs_embeds``. The hidden state of the last
token, which has seen the whole context, goes to a :class:`ForecastHead` that
emits, for every horizon step at once, either Student-t parameters (df, loc,
scale) or a set of quantiles. Outputs live in the scaled space; :meth:`sample`
and :meth:`quantiles` map them back to data units.

Shapes: ``past_target`` / ``past_observed`` (B, C); ``past_time_feat`` (B, C, F);
``future_target`` / ``future_observed`` (B, H); C = context_length,
H = prediction_length, N = number of tokens, F = time features.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from mambatune.core import MambaConfig, MambaModel, register_head
from mambatune.core.config import check_known_keys
from mambatune.core.heads import Head

from .transforms import NUM_HOLIDAY_FEATURES, RevIN, check_holidays, instance_scale, num_patches

DISTRIBUTIONS = ("student_t", "quantile")
FORECAST_SCALINGS = ("revin", "std", "mean", "none")
DEFAULT_QUANTILE_LEVELS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]


@dataclass
class ForecasterConfig:
    """What the forecaster reads and emits.

    context_length / prediction_length: steps in and out; patch_length / stride: token
    size and hop in steps (1 / 1 = one token per step); num_time_features: calendar
    features appended to each token (their mean over the patch; 0 = none);
    distribution: ``student_t`` or ``quantile``; quantile_levels: the quantile head's
    levels; scaling: instance scaling of each context (``revin`` adds a learnable
    affine map); backbone: ``MambaConfig`` fields of the backbone (``vocab_size`` is
    unused: tokens come in as embeddings); dropout: on the token embeddings;
    seasonal_skip: a period P (0 = off): the head's location (every quantile, for the
    quantile head) is added to the seasonal-naive forecast (the context's last P steps,
    repeated) times a learnable weight per horizon step that starts at 1, so the network
    starts from seasonal naive and learns the correction (H parameters in the head);
    scale_window: the instance scaling's statistics come from the context's last W steps
    (0, or a W at least the context's length, = the whole context): a long context then
    keeps the recent level in view, as a short one does, while its tokens still carry the
    whole history (no parameters).

    Covariates: num_dynamic_real: known real covariates (values given for the context and the
    horizon), standardised by dynamic_loc / dynamic_scale (one value per covariate, from the
    training data); holidays: a calendar (``us``) whose holiday covariates come from the
    timestamps (see ``transforms.holiday_features``); static_cardinalities: the number of categories
    of each static categorical feature. Known covariates enter each token (their values over the
    patch) and, with the horizon's time features, a few future tokens that follow the context; a
    learned map adds the last future token's state to the last context token's, and a linear term
    of each horizon step's covariates is added to that step's location. Static categories add a
    learned embedding to every token. These maps start at zero, so a pretrained forecaster starts
    from its own forecasts when covariates are added.
    """

    context_length: int = 512
    prediction_length: int = 24
    patch_length: int = 16
    stride: int = 8
    num_time_features: int = 0
    distribution: str = "student_t"
    quantile_levels: list[float] = field(default_factory=lambda: list(DEFAULT_QUANTILE_LEVELS))
    scaling: str = "revin"
    dropout: float = 0.0
    backbone: dict[str, Any] = field(default_factory=lambda: {"d_model": 64, "n_layer": 2, "d_state": 16})
    seasonal_skip: int = 0
    scale_window: int = 0
    num_dynamic_real: int = 0
    dynamic_loc: list[float] = field(default_factory=list)
    dynamic_scale: list[float] = field(default_factory=list)
    holidays: str = ""
    static_cardinalities: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("context_length", "prediction_length", "patch_length", "stride"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ForecasterConfig.{name} must be a positive integer, got {v!r}")
        if self.num_time_features < 0:
            raise ValueError(f"ForecasterConfig.num_time_features must be >= 0, got {self.num_time_features}")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"ForecasterConfig.distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}")
        if self.scaling not in FORECAST_SCALINGS:
            raise ValueError(f"ForecasterConfig.scaling must be one of {FORECAST_SCALINGS}, got {self.scaling!r}")
        levels = [float(q) for q in self.quantile_levels]
        if not levels or any(not 0 < q < 1 for q in levels) or levels != sorted(set(levels)):
            raise ValueError(f"ForecasterConfig.quantile_levels must be increasing values in (0, 1), got {levels}")
        if self.distribution == "quantile" and 0.5 not in levels:
            raise ValueError("the quantile head needs 0.5 among quantile_levels (the median forecast)")
        self.quantile_levels = levels
        if not 0 <= self.dropout < 1:
            raise ValueError(f"ForecasterConfig.dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.seasonal_skip, bool) or not isinstance(self.seasonal_skip, int) or self.seasonal_skip < 0:
            raise ValueError(f"ForecasterConfig.seasonal_skip must be a period >= 0 (0 = off), got {self.seasonal_skip!r}")
        if self.seasonal_skip > self.context_length:
            raise ValueError(f"seasonal_skip={self.seasonal_skip} needs a context of at least one period; "
                             f"context_length is {self.context_length}")
        if isinstance(self.scale_window, bool) or not isinstance(self.scale_window, int) or self.scale_window < 0:
            raise ValueError(f"ForecasterConfig.scale_window must be a number of steps >= 0 (0 = the whole "
                             f"context), got {self.scale_window!r}")
        if isinstance(self.num_dynamic_real, bool) or not isinstance(self.num_dynamic_real, int) \
                or self.num_dynamic_real < 0:
            raise ValueError(f"ForecasterConfig.num_dynamic_real must be >= 0, got {self.num_dynamic_real!r}")
        self.dynamic_loc = [float(v) for v in self.dynamic_loc] or [0.0] * self.num_dynamic_real
        self.dynamic_scale = [float(v) for v in self.dynamic_scale] or [1.0] * self.num_dynamic_real
        if len(self.dynamic_loc) != self.num_dynamic_real or len(self.dynamic_scale) != self.num_dynamic_real \
                or any(not v > 0 for v in self.dynamic_scale):
            raise ValueError(f"ForecasterConfig.dynamic_loc / dynamic_scale need one value per known covariate "
                             f"({self.num_dynamic_real}), scales > 0; got {self.dynamic_loc} / {self.dynamic_scale}")
        if self.holidays:
            check_holidays(self.holidays)
        self.static_cardinalities = [int(c) for c in self.static_cardinalities]
        if any(c < 1 for c in self.static_cardinalities):
            raise ValueError(f"ForecasterConfig.static_cardinalities must be >= 1, got {self.static_cardinalities}")
        self.mamba_config()  # validates the backbone fields now

    @property
    def num_tokens(self) -> int:
        return num_patches(self.context_length, self.patch_length, self.stride)

    @property
    def num_known(self) -> int:
        """Known covariates per step: the given ones, then the holiday calendar's."""
        return self.num_dynamic_real + (NUM_HOLIDAY_FEATURES if self.holidays else 0)

    def mamba_config(self) -> MambaConfig:
        d = {"vocab_size": 1, "pad_vocab_size_multiple": 1, "tie_embeddings": False, **self.backbone}
        if d.get("bidirectional") or d.get("rc_equivariant", "none") != "none":
            raise ValueError("the forecaster's backbone must be causal (no bidirectional / rc_equivariant)")
        return MambaConfig.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ForecasterConfig":
        check_known_keys(cls, d, "forecaster")
        return cls(**d)


MIN_STUDENT_T_SCALE = 1e-3  # the Student-t scale's floor, in instance-normalised units


def fp32_region(like: torch.Tensor):
    """A context with autocast disabled on ``like``'s device (a no-op where autocast is unknown)."""
    import contextlib

    try:
        return torch.autocast(device_type=like.device.type, enabled=False)
    except (RuntimeError, ValueError):  # pragma: no cover - a device type without autocast
        return contextlib.nullcontext()


class ForecastHead(Head):
    """Last-token features (B, L, F) -> distribution parameters (B, H, K) for every horizon step.

    ``student_t``: K = 3 raw values mapped to df = 2 + softplus (finite variance),
    loc, scale = softplus + 1e-3; ``quantile``: K = len(levels), made monotone by
    cumulative softplus increments from the lowest level. ``loss`` is the Student-t
    negative log-likelihood or the pinball loss over observed future steps, in the
    instance-normalised units (see ``label_scale``). Head and loss run in fp32, autocast off.
    """

    kind = "forecast"

    def __init__(self, feature_dim: int, prediction_length: int, distribution: str = "student_t",
                 quantile_levels: list[float] | None = None, seasonal_skip: bool = False):
        super().__init__()
        levels = list(quantile_levels or DEFAULT_QUANTILE_LEVELS)
        self.spec = {"kind": self.kind, "prediction_length": prediction_length, "distribution": distribution,
                     "quantile_levels": levels}
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
        self.prediction_length = prediction_length
        self.distribution = distribution
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.float32), persistent=False)
        self.num_params = 3 if distribution == "student_t" else len(levels)
        self.proj = nn.Linear(feature_dim, prediction_length * self.num_params)
        if seasonal_skip:
            self.add_skip_weight()

    def add_skip_weight(self) -> None:
        """The per-step weight (H,) of the seasonal-naive forecast added to the location, starting at 1
        (the forecast starts as seasonal naive; training may shrink a step's weight where the last
        period misleads)."""
        if not hasattr(self, "skip_weight"):
            self.skip_weight = nn.Parameter(torch.ones(self.prediction_length, device=self.proj.weight.device))

    def forward(self, hidden, mask=None):
        # fp32 end to end, autocast off (as LM heads do): under bf16 autocast the projection would
        # return bf16 parameters (an 8-bit mantissa for loc and scale)
        with fp32_region(hidden):
            raw = self.proj(hidden[:, -1].float()).float()
            raw = raw.reshape(hidden.shape[0], self.prediction_length, self.num_params)
            if self.distribution == "student_t":
                df = 2.0 + F.softplus(raw[..., 0])
                scale = F.softplus(raw[..., 2]) + MIN_STUDENT_T_SCALE
                return torch.stack([df, raw[..., 1], scale], -1)
            steps = torch.cat([raw[..., :1], F.softplus(raw[..., 1:])], -1)
            return steps.cumsum(-1)

    def loss(self, logits, labels, mask=None, label_scale=None):
        """logits (B, H, K); labels (B, H) scaled targets; mask (B, H) 1 = observed.

        ``label_scale``: how many reference units one label unit is (a tensor broadcastable to
        (B, H), e.g. ``1 / w`` when RevIN's learnable affine map ``z * w + b`` produced the labels
        from the instance-normalised targets ``z``). The loss is then measured in the reference units:
        the Student-t NLL gains the log-Jacobian ``log |label_scale|`` and the pinball loss is
        multiplied by ``|label_scale|``. Without it a learnable map could shrink every label
        towards a constant and drive the loss to -inf (the RevIN weight collapsing to 0).
        Computed in fp32 with autocast off."""
        with fp32_region(labels):
            logits, labels = logits.float(), labels.float()
            mask = torch.ones_like(labels) if mask is None else mask.to(labels.dtype)
            if self.distribution == "student_t":
                dist = torch.distributions.StudentT(logits[..., 0], logits[..., 1], logits[..., 2])
                per_step = -dist.log_prob(labels)
                if label_scale is not None:
                    per_step = per_step + torch.as_tensor(label_scale, dtype=per_step.dtype,
                                                          device=per_step.device).abs().log()
            else:
                diff = labels.unsqueeze(-1) - logits
                per_step = torch.maximum(self.levels * diff, (self.levels - 1) * diff).mean(-1)
                if label_scale is not None:
                    per_step = per_step * torch.as_tensor(label_scale, dtype=per_step.dtype,
                                                          device=per_step.device).abs()
            return (per_step * mask).sum() / mask.sum().clamp_min(1.0)


register_head(ForecastHead.kind, ForecastHead)


@dataclass
class ForecastOutput:
    """``logits``: distribution parameters (B, H, K) in scaled space; ``loc`` / ``scale`` (B, 1):
    the instance scaling; ``loss``: when future targets were given."""

    logits: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor
    loss: torch.Tensor | None = None


class MambaForecaster(nn.Module):
    """Scaling -> patch tokens -> linear embedding -> ``MambaModel(inputs_embeds=...)`` -> ForecastHead.

    ``backbone`` and ``head`` are named as in ``MambaForTask``, so ``core.peft.apply`` (LoRA,
    head-only, full, ...) works on it unchanged."""

    def __init__(self, config: ForecasterConfig):
        super().__init__()
        self.config = config
        mcfg = config.mamba_config()
        self.revin = RevIN(affine=True) if config.scaling == "revin" else None
        token_dim = 2 * config.patch_length + config.num_time_features
        self.embed = nn.Linear(token_dim, mcfg.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.backbone = MambaModel(mcfg)
        # tokens come in as embeddings (inputs_embeds): the backbone's token table would be a parameter
        # that never gets a gradient, which DDP refuses; checkpoints that have it load without it
        self.backbone.embedding = None
        self.head = ForecastHead(mcfg.d_model, config.prediction_length, config.distribution, config.quantile_levels,
                                 seasonal_skip=config.seasonal_skip > 0)
        self.add_covariate_inputs()

    def add_covariate_inputs(self) -> list[str]:
        """Creates the covariate maps ``config`` asks for that the model lacks (``known``: a patch of
        known covariates -> d_model; ``future_merge``: the last future token's state -> the head's input;
        ``known_direct``: a step's covariates -> its location; ``static``: one embedding per static
        feature), each starting at zero. Returns the names of
        the modules created (a fine-tuned pretrained model trains them whatever its PEFT method).
        A covariate layout that differs from the model's raises."""
        cfg, d = self.config, self.embed.out_features
        created = []
        if cfg.num_known:
            if hasattr(self, "known"):
                if self.known_direct.in_features != cfg.num_known:
                    raise ValueError(f"this forecaster reads {self.known_direct.in_features} known covariates, the "
                                     f"data has {cfg.num_known}")
            else:
                self.known = nn.Linear(cfg.num_known * cfg.patch_length, d)
                self.future_merge = nn.Linear(d, d, bias=False)
                self.known_direct = nn.Linear(cfg.num_known, 1, bias=False)
                created += ["known", "future_merge", "known_direct"]
        if cfg.static_cardinalities:
            if hasattr(self, "static"):
                have = [e.num_embeddings for e in self.static]
                if have != cfg.static_cardinalities:
                    raise ValueError(f"this forecaster reads static features with {have} categories, the data has "
                                     f"{cfg.static_cardinalities}")
            else:
                self.static = nn.ModuleList(nn.Embedding(c, d) for c in cfg.static_cardinalities)
                created.append("static")
        device = self.embed.weight.device
        for name in created:
            module = getattr(self, name).to(device)
            for p in module.parameters():
                nn.init.zeros_(p)
        return created

    # -- scaling ------------------------------------------------------------------------------
    def revin_weight(self) -> torch.Tensor:
        """RevIN's weight w, kept 1e-4 away from 0 (its sign kept)."""
        return self.revin.weight + torch.where(self.revin.weight >= 0, 1.0, -1.0) * 1e-4

    def label_scale(self) -> torch.Tensor | None:
        """Reference (instance-normalised) units per label unit: ``1 / w`` with RevIN, else None
        (the labels already are instance-normalised). See :meth:`ForecastHead.loss`."""
        return None if self.revin is None else 1.0 / self.revin_weight()

    def scale_context(self, past_target, past_observed):
        """(B, C) -> scaled (B, C), loc (B, 1), scale (B, 1) (an affine RevIN map folded in)."""
        method = "std" if self.config.scaling == "revin" else self.config.scaling
        w = self.config.scale_window
        if w and w < past_target.shape[-1]:
            stats = instance_scale(past_target[..., -w:], past_observed[..., -w:], method)
        else:
            stats = instance_scale(past_target, past_observed, method)
        loc, scale = stats.loc, stats.scale
        if self.revin is not None:
            # y' = y * w + b  <=>  raw = (y' - b) / w * scale + loc: one affine map with loc' and scale'
            w = self.revin_weight()
            scale = scale / w
            loc = loc - self.revin.bias * scale
        values = torch.where(past_observed > 0, (torch.nan_to_num(past_target) - loc) / scale, torch.zeros_like(loc))
        return values, loc, scale

    # -- forward ------------------------------------------------------------------------------
    def _patch_means(self, x: torch.Tensor, pad: int) -> torch.Tensor:
        """(B, L, F) per-step features -> (B, N, F) their mean over each patch (left-padded with zeros)."""
        cfg = self.config
        x = x.transpose(1, 2)
        if pad > 0:
            x = F.pad(x, (pad, 0))
        return x.unfold(-1, cfg.patch_length, cfg.stride).mean(-1).transpose(1, 2)

    def standardise_known(self, known: torch.Tensor | None, where: str) -> torch.Tensor:
        """(B, L, K) known covariates -> standardised by the config's statistics (the holiday rows as they are);
        ``where`` (past / future) names the missing input in the error."""
        cfg = self.config
        if known is None or known.shape[-1] != cfg.num_known:
            raise ValueError(f"this forecaster reads {cfg.num_known} known covariates per step: pass {where}_known "
                             f"(B, steps, {cfg.num_known})")
        extra = cfg.num_known - cfg.num_dynamic_real
        scale = torch.tensor([*cfg.dynamic_scale] + [1.0] * extra, device=known.device, dtype=known.dtype)
        loc = torch.tensor([*cfg.dynamic_loc] + [0.0] * extra, device=known.device, dtype=known.dtype)
        return (known - loc) / scale

    def static_embedding(self, static_cat: torch.Tensor | None) -> torch.Tensor:
        """(B, S) static category codes -> (B, 1, d_model), the sum of their embeddings."""
        cfg = self.config
        if static_cat is None or static_cat.shape[-1] != len(cfg.static_cardinalities):
            raise ValueError(f"this forecaster reads {len(cfg.static_cardinalities)} static categorical features: "
                             "pass static_cat (B, S)")
        codes = static_cat.long()
        cards = torch.tensor(cfg.static_cardinalities, device=codes.device)
        if bool(((codes < 0) | (codes >= cards)).any()):
            raise ValueError(f"static category codes outside [0, {cfg.static_cardinalities}), the categories seen "
                             "in training")
        return sum(table(codes[:, j]) for j, table in enumerate(self.static)).unsqueeze(1)

    def tokens(self, values, observed, time_feat=None, known=None, static=None, where: str = "past"):
        """Scaled values and mask (B, L) (+ time features (B, L, F), standardised known covariates
        (B, L, K), a static embedding (B, 1, d_model)) -> token embeddings (B, N, d_model); ``where``
        names the inputs in errors."""
        cfg = self.config
        pad = (num_patches(values.shape[-1], cfg.patch_length, cfg.stride) - 1) * cfg.stride + cfg.patch_length \
            - values.shape[-1]
        if pad > 0:
            values, observed = F.pad(values, (pad, 0)), F.pad(observed, (pad, 0))
        parts = [values.unfold(-1, cfg.patch_length, cfg.stride), observed.unfold(-1, cfg.patch_length, cfg.stride)]
        if cfg.num_time_features:
            if time_feat is None:
                raise ValueError(f"this forecaster reads {cfg.num_time_features} time features: pass {where}_time_feat")
            parts.append(self._patch_means(time_feat, pad))
        emb = self.embed(torch.cat(parts, -1))
        if known is not None:
            known = known.transpose(1, 2)  # (B, K, L)
            if pad > 0:
                known = F.pad(known, (pad, 0))
            patches = known.unfold(-1, cfg.patch_length, cfg.stride)  # (B, K, N, P)
            emb = emb + self.known(patches.permute(0, 2, 1, 3).flatten(2))
        if static is not None:
            emb = emb + static
        return self.dropout(emb)

    def forward(self, past_target, past_observed, past_time_feat=None, future_target=None,
                future_observed=None, future_time_feat=None, past_known=None, future_known=None,
                static_cat=None) -> ForecastOutput:
        cfg = self.config
        if past_target.shape[-1] != cfg.context_length:
            raise ValueError(f"past_target has {past_target.shape[-1]} steps; this forecaster reads "
                             f"context_length={cfg.context_length}")
        observed = past_observed.to(past_target.dtype) * (~torch.isnan(past_target)).to(past_target.dtype)
        values, loc, scale = self.scale_context(past_target, observed)
        static = self.static_embedding(static_cat) if cfg.static_cardinalities else None
        if cfg.num_known:
            past_known = self.standardise_known(past_known, "past")
            future_known = self.standardise_known(future_known, "future")
        embeds = self.tokens(values, observed, past_time_feat, past_known, static)
        if cfg.num_known:
            # the horizon's tokens: no values (unobserved), its calendar and known covariates
            blank = values.new_zeros(values.shape[0], cfg.prediction_length)
            future = self.tokens(blank, blank, future_time_feat, future_known, static, where="future")
            hidden = self.backbone(inputs_embeds=torch.cat([embeds, future], 1))
            n = embeds.shape[1]
            hidden = (hidden[:, n - 1] + self.future_merge(hidden[:, -1])).unsqueeze(1)
        else:
            hidden = self.backbone(inputs_embeds=embeds)
        params = self.head(hidden)
        if cfg.num_known:
            params = self.add_to_location(params, self.known_direct(future_known).squeeze(-1))
        if cfg.seasonal_skip:
            params = self.add_seasonal_naive(params, values)
        loss = None
        if future_target is not None:
            fut_obs = torch.ones_like(future_target) if future_observed is None else future_observed.to(future_target.dtype)
            fut_obs = fut_obs * (~torch.isnan(future_target)).to(fut_obs.dtype)
            labels = (torch.nan_to_num(future_target) - loc) / scale
            loss = self.head.loss(params, labels, fut_obs, label_scale=self.label_scale())
        return ForecastOutput(params, loc, scale, loss)

    def seasonal_naive(self, values: torch.Tensor) -> torch.Tensor:
        """(B, C) scaled context -> (B, H) scaled seasonal-naive forecast: step h repeats step
        C - P + (h mod P) (an unobserved step reads as the scaled mean, 0)."""
        cfg = self.config
        period = cfg.seasonal_skip
        index = values.shape[-1] - period + torch.arange(cfg.prediction_length, device=values.device) % period
        return values.float()[:, index]

    def add_seasonal_naive(self, params: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The head's parameters with the seasonal-naive forecast added to its location (Student-t loc,
        or every quantile)."""
        return self.add_to_location(params, self.seasonal_naive(values) * self.head.skip_weight.float())

    def add_to_location(self, params: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """The head's parameters (B, H, K) with ``shift`` (B, H) added to the location (Student-t loc, or
        every quantile), in fp32."""
        with fp32_region(params):
            shift = shift.float()
            if self.config.distribution == "student_t":
                return params + torch.stack([torch.zeros_like(shift), shift, torch.zeros_like(shift)], -1)
            return params + shift.unsqueeze(-1)

    # -- forecasts in data units ---------------------------------------------------------------
    @torch.no_grad()
    def sample(self, out: ForecastOutput, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample paths (B, S, H) in data units. Student-t: independent draws per step (the head
        gives marginals); quantile head: draws by inverse-CDF interpolation between its levels."""
        params = out.logits.float()
        b, h = params.shape[:2]
        u = torch.rand(b, num_samples, h, generator=generator, device=params.device).clamp(1e-4, 1 - 1e-4)
        if self.config.distribution == "student_t":
            df, loc, scale = (params[..., i].unsqueeze(1) for i in range(3))
            z = student_t_icdf(u, df.expand_as(u))
            y = loc + scale * z
        else:
            y = interpolate_quantiles(params.unsqueeze(1).expand(b, num_samples, h, -1), self.head.levels, u)
        return y * out.scale.unsqueeze(-1) + out.loc.unsqueeze(-1)

    @torch.no_grad()
    def quantiles(self, out: ForecastOutput) -> torch.Tensor:
        """The quantile head's values (B, Q, H) in data units, sorted along Q."""
        q = out.logits.float().transpose(1, 2) * out.scale.unsqueeze(-1) + out.loc.unsqueeze(-1)
        return q.sort(1).values


def student_t_icdf(u: torch.Tensor, df: torch.Tensor) -> torch.Tensor:
    """Quantile function of the standard Student-t at probabilities ``u`` (same shape as ``df``).

    Drawn by inversion (rather than ``StudentT.sample``) so one uniform stream from a seeded
    generator fixes the paths; computed via the regularised incomplete beta inverse on CPU
    float64 with scipy when available, else a Cornish-Fisher expansion."""
    try:
        from scipy.special import stdtrit
    except ImportError:  # pragma: no cover - scipy comes with gluonts
        z = math.sqrt(2) * torch.erfinv(2 * u - 1)
        g1 = (z ** 3 + z) / 4
        g2 = (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96
        return z + g1 / df + g2 / df ** 2
    out = stdtrit(df.detach().double().cpu().numpy(), u.detach().double().cpu().numpy())
    return torch.from_numpy(out).to(device=u.device, dtype=torch.float32)


def interpolate_quantiles(values: torch.Tensor, levels: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear inverse CDF through (levels, values (..., Q)) at ``u`` (...); flat beyond the ends."""
    values = values.sort(-1).values
    idx = torch.searchsorted(levels.contiguous(), u.contiguous()).clamp(1, len(levels) - 1)
    lo_l, hi_l = levels[idx - 1], levels[idx]
    lo_v = values.gather(-1, (idx - 1).unsqueeze(-1)).squeeze(-1)
    hi_v = values.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
    w = ((u - lo_l) / (hi_l - lo_l)).clamp(0, 1)
    return lo_v + w * (hi_v - lo_v)


# -- checkpoints ------------------------------------------------------------------------------
FORECASTER_CONFIG = "forecaster.json"
FORECASTER_WEIGHTS = "model.safetensors"


def save_forecaster(model: MambaForecaster, path, meta: dict | None = None):
    """Writes ``forecaster.json`` (the config) and ``model.safetensors`` into the folder ``path``
    (atomic writes, no pickle). Returns the folder."""
    from pathlib import Path

    from mambatune.core.checkpoints import atomic_save_safetensors, atomic_write_json

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / FORECASTER_CONFIG, {"forecaster": model.config.to_dict(), "meta": meta or {}})
    atomic_save_safetensors(dict(model.state_dict()), folder / FORECASTER_WEIGHTS, metadata={"format": "pt"})
    return folder


def load_forecaster(path, map_location: str = "cpu") -> MambaForecaster:
    """A forecaster saved by :func:`save_forecaster` (or a serialized predictor folder)."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    folder = Path(path)
    if not (folder / FORECASTER_CONFIG).is_file() or not (folder / FORECASTER_WEIGHTS).is_file():
        raise FileNotFoundError(f"{folder} has no {FORECASTER_CONFIG} and {FORECASTER_WEIGHTS}; write one with "
                                "save_forecaster, MambaPredictor.serialize or `mambatune run timeseries/pretrain_series`")
    config = ForecasterConfig.from_dict(json.loads((folder / FORECASTER_CONFIG).read_text())["forecaster"])
    model = MambaForecaster(config)
    state = load_file(str(folder / FORECASTER_WEIGHTS), device=map_location)
    state.pop("backbone.embedding.weight", None)  # saved before the unused token table was dropped
    model.load_state_dict(state)
    return model
