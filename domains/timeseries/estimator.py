"""GluonTS interface of the Mamba forecaster: ``MambaEstimator`` trains, ``MambaPredictor`` forecasts.

::

    estimator = MambaEstimator(freq="h", prediction_length=24, context_length=512)
    predictor = estimator.train(backtest.train, validation_data=val)
    forecasts = list(predictor.predict(backtest.test_data.input))   # SampleForecast / QuantileForecast
    predictor.serialize(Path("predictor"))                            # json + safetensors, no pickle
    predictor = MambaPredictor.deserialize(Path("predictor"))

Training runs through ``core.training.finetune`` (the one fine-tune path of every
domain, over ``core.training.Trainer``) on a fixed, seeded sample of (context, horizon)
windows (``ForecastWindows``), so a run is reproducible and resumable like every other
mambatune run. With ``pretrained=`` the estimator starts
from a saved forecaster (``save_forecaster``, a serialized predictor, or the
``pretrain_series`` recipe's ``model/``) and fine-tunes it with ``peft=`` (LoRA,
head-only, ...; None = full). The architecture then comes from the checkpoint; a
new ``prediction_length`` or ``distribution`` gets a freshly initialised head.
"""
from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from .data import SeriesCollection, TimeSeriesDataError, from_gluonts, same_frequency
from .module import (
    ForecasterConfig,
    ForecastHead,
    MambaForecaster,
    load_forecaster,
    save_forecaster,
)
from .transforms import ForecastWindows, known_covariates, num_time_features, time_features

PREDICTOR_CONFIG = "predictor.json"
WINDOW_SAMPLINGS = ("proportional", "balanced")
BATCH_KEYS = ("past_target", "past_observed", "past_time_feat", "future_target", "future_observed",
              "future_time_feat", "past_known", "future_known")
ESTIMATOR_TRAIN_DEFAULTS = {"epochs": 1, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.01, "warmup_ratio": 0.05,
                            "progress": False, "tensorboard": False, "plots": False, "monitor_every": 0,
                            "log_every": 10, "device": "auto"}


def collate_windows(items: list[dict]) -> dict[str, torch.Tensor]:
    """ForecastWindows items -> the forecaster's keyword arguments (float tensors; ``static_cat``: int64)."""
    batch = {k: torch.from_numpy(np.stack([it[k] for it in items])).float() for k in BATCH_KEYS if k in items[0]}
    if len(items[0].get("feat_static_cat", ())):
        batch["static_cat"] = torch.from_numpy(np.stack([it["feat_static_cat"] for it in items])).long()
    return batch


def covariate_layout(collection: SeriesCollection, where: str = "the training data") -> dict[str, Any]:
    """The covariates every series of ``collection`` carries, as ``ForecasterConfig`` fields:
    num_dynamic_real with each covariate's mean and standard deviation over all series
    (dynamic_loc / dynamic_scale; a constant covariate gets scale 1), and static_cardinalities
    (the collection's, or the largest code + 1). Series that disagree raise TimeSeriesDataError."""
    entries = collection.entries
    dims = {np.shape(e["feat_dynamic_real"])[0] if "feat_dynamic_real" in e else 0 for e in entries}
    statics = {len(e.get("feat_static_cat", ())) for e in entries}
    if len(dims) > 1 or len(statics) > 1:
        raise TimeSeriesDataError(f"the series of {where} disagree on their covariates (known covariates per series: "
                                  f"{sorted(dims)}, static features: {sorted(statics)}); give every series the same "
                                  "columns")
    d, k = (dims.pop() if dims else 0), (statics.pop() if statics else 0)
    loc, scale = [], []
    if d:
        values = np.concatenate([np.asarray(e["feat_dynamic_real"], dtype=np.float64) for e in entries], axis=1)
        with np.errstate(all="ignore"):
            loc = np.nan_to_num(np.nanmean(values, axis=1)).tolist()
            std = np.nan_to_num(np.nanstd(values, axis=1))
        scale = np.where(std > 1e-8, std, 1.0).tolist()
    cards = list(collection.static_cardinalities)
    if k and len(cards) != k:
        codes = np.stack([np.asarray(e["feat_static_cat"], dtype=np.int64) for e in entries])
        if codes.min() < 0:
            raise TimeSeriesDataError(f"{where} has negative feat_static_cat codes; codes must be 0, 1, 2, ...")
        cards = (codes.max(0) + 1).tolist()
    return {"num_dynamic_real": d, "dynamic_loc": loc, "dynamic_scale": scale, "static_cardinalities": cards}


def as_collection(data, freq: str) -> SeriesCollection:
    """A SeriesCollection from GluonTS data at ``freq``; a mismatch raises TimeSeriesDataError."""
    if isinstance(data, SeriesCollection):
        if not same_frequency(data.freq, freq):
            raise TimeSeriesDataError(f"frequency mismatch: the data is at {data.freq!r}, the estimator at {freq!r}")
        return data
    return from_gluonts(data, freq)


class MambaEstimator:
    """Trains a :class:`MambaForecaster` on GluonTS data.

    freq / prediction_length / context_length: as in GluonTS. patch_length, stride,
    distribution (``student_t`` | ``quantile``), quantile_levels, scaling, time_features
    (GluonTS calendar features for ``freq``), dropout, backbone (MambaConfig fields):
    the architecture (ignored with ``pretrained``). pretrained: a forecaster folder to
    start from; peft: a ``core.peft`` config (method config, list or PeftConfig; None =
    train everything). train: ``TrainConfig`` fields (``output_dir`` defaults to a
    temporary folder); max_train_windows: windows drawn (seeded) from all cut points of
    the training series; window_sampling: how those windows are shared among series when there
    are more cut points than ``max_train_windows`` (``proportional``: uniformly over all cut
    points, so a series contributes in proportion to its length; ``balanced``: an equal share per
    series, a short series' unused share going to the others); min_past: observed steps a
    training window needs before its horizon (default 1: left-padded, masked contexts);
    num_samples: sample paths per forecast; seasonal_skip: a period P whose seasonal-naive
    forecast the model corrects (see ``ForecasterConfig``; None keeps a pretrained model's, 0 = off;
    it may be switched on when fine-tuning: the head gets its per-step weights, starting at 1);
    scale_window: scaling statistics from the context's last W steps (see ``ForecasterConfig``; None
    keeps a pretrained model's, 0 = the whole context); holidays: a holiday calendar (``us``) whose
    covariates the model reads (None keeps a pretrained model's, "" = none); backend: the kernels'
    backend of a pretrained forecaster (``core.MambaConfig.backend``; None keeps its own; a new model takes
    ``backbone["backend"]``).

    Covariates come from the data: every series' ``feat_dynamic_real`` rows are known covariates
    (for prediction they must run ``prediction_length`` steps past the target, as in GluonTS) and
    its ``feat_static_cat`` codes static features; ``train`` sets the model's covariate fields
    from the training data (see ``ForecasterConfig``).

    A pretrained forecaster may be trained and used at another ``context_length`` than it was
    pretrained at (its patch embedding and Mamba backbone do not depend on the length), but
    its ``patch_length`` and ``stride`` must be the ones given here: a mismatch raises.
    """

    def __init__(self, freq: str, prediction_length: int, context_length: int, patch_length: int = 16,
                 stride: int = 8, distribution: str = "student_t", quantile_levels: list[float] | None = None,
                 scaling: str = "revin", time_features: bool = True, dropout: float = 0.0,
                 backbone: dict[str, Any] | None = None, pretrained: str | Path | None = None, peft=None,
                 train: dict[str, Any] | None = None, max_train_windows: int = 4096, min_past: int | None = None,
                 num_samples: int = 100, seed: int = 0, window_sampling: str = "proportional",
                 seasonal_skip: int | None = None, scale_window: int | None = None, holidays: str | None = None,
                 backend: str | None = None):
        if window_sampling not in WINDOW_SAMPLINGS:
            raise ValueError(f"window_sampling must be one of {WINDOW_SAMPLINGS}, got {window_sampling!r}")
        self.freq = freq
        self.pretrained = pretrained
        self.peft = peft
        self.train_config = {**ESTIMATOR_TRAIN_DEFAULTS, **(train or {})}
        self.max_train_windows = max_train_windows
        self.window_sampling = window_sampling
        self.patching = (patch_length, stride)  # as asked, before clamping to the context
        self.min_past = min_past or 1
        self.num_samples = num_samples
        self.seed = seed
        extra = {"quantile_levels": quantile_levels} if quantile_levels is not None else {}
        self.seasonal_skip = seasonal_skip  # None: the pretrained model's (0 from scratch)
        self.scale_window = scale_window  # likewise
        self.holidays = holidays  # likewise
        self.backend = backend  # the kernels a pretrained forecaster runs on (None: its own setting)
        self.config = ForecasterConfig(
            context_length=context_length, prediction_length=prediction_length,
            patch_length=min(patch_length, context_length), stride=min(stride, patch_length, context_length),
            num_time_features=num_time_features(freq) if time_features else 0, distribution=distribution,
            scaling=scaling, dropout=dropout, backbone=backbone or {"d_model": 64, "n_layer": 2, "d_state": 16},
            seasonal_skip=seasonal_skip or 0, scale_window=scale_window or 0, holidays=holidays or "", **extra)
        self.last_result = None  # the Trainer's TrainResult of the last train() call
        self.last_summary = ""  # its trainable-parameter table

    # -- model --------------------------------------------------------------------------------
    def create_model(self) -> MambaForecaster:
        """A new forecaster, or the pretrained one adapted to this estimator's horizon."""
        torch.manual_seed(self.seed)
        self.new_parameters: list[str] = []
        if self.pretrained is None:
            return MambaForecaster(self.config)
        model = load_forecaster(self.pretrained)
        if self.backend is not None and model.config.backbone.get("backend", "auto") != self.backend:
            # how the backbone computes, not what it is: the same weights in a model built for that backend
            weights = model.state_dict()
            model = MambaForecaster(ForecasterConfig.from_dict(
                {**model.config.to_dict(), "backbone": {**model.config.backbone, "backend": self.backend}}))
            model.load_state_dict(weights)
        base, want = model.config, self.config
        check_patching(base, *self.patching, where=str(self.pretrained))
        if base.num_time_features not in (0, num_time_features(self.freq)):
            raise ValueError(f"the pretrained forecaster reads {base.num_time_features} time features, but freq "
                             f"{self.freq!r} has {num_time_features(self.freq)}; pretrain at the same frequency or "
                             "without time features")
        skip = base.seasonal_skip if self.seasonal_skip is None else self.seasonal_skip
        covariates = {k: getattr(want, k) for k in ("num_dynamic_real", "dynamic_loc", "dynamic_scale",
                                                    "static_cardinalities")}
        if base.num_dynamic_real == want.num_dynamic_real:  # keep the standardisation the model learned with
            covariates.update(dynamic_loc=base.dynamic_loc, dynamic_scale=base.dynamic_scale)
        cfg = ForecasterConfig.from_dict({**base.to_dict(), **covariates,
                                          "holidays": base.holidays if self.holidays is None else self.holidays,
                                          "context_length": want.context_length,
                                          "prediction_length": want.prediction_length,
                                          "distribution": want.distribution, "quantile_levels": want.quantile_levels,
                                          "seasonal_skip": skip,
                                          "scale_window": base.scale_window if self.scale_window is None
                                          else self.scale_window})
        model.config = cfg
        if (base.prediction_length, base.distribution, base.quantile_levels) != \
                (cfg.prediction_length, cfg.distribution, cfg.quantile_levels):
            model.head = ForecastHead(cfg.mamba_config().d_model, cfg.prediction_length, cfg.distribution,
                                      cfg.quantile_levels, seasonal_skip=cfg.seasonal_skip > 0)
        elif cfg.seasonal_skip:
            model.head.add_skip_weight()  # switched on when fine-tuning: starts at 1
        if (base.num_known, base.static_cardinalities) not in ((0, []), (cfg.num_known, cfg.static_cardinalities)):
            raise ValueError(f"{self.pretrained} was trained with {base.num_known} known covariates and static "
                             f"features {base.static_cardinalities}, the data has {cfg.num_known} and "
                             f"{cfg.static_cardinalities}: give it the same covariates, or start from a forecaster "
                             "trained without covariates")
        self.new_parameters = model.add_covariate_inputs()
        self.config = cfg
        return model

    def windows(self, data: SeriesCollection, validation: bool = False):
        c, h = self.config.context_length, self.config.prediction_length
        time_feat, holidays = self.config.num_time_features > 0, self.config.holidays
        if validation:  # the last horizon of every series, as GluonTS validation data is laid out
            return ForecastWindows(data, c, h, stride=h, min_past=1, max_windows_per_series=1,
                                   time_feat=time_feat, holidays=holidays)
        windows = ForecastWindows(data, c, h, min_past=self.min_past, time_feat=time_feat, holidays=holidays)
        if len(windows) == 0:
            raise TimeSeriesDataError(f"no training window: every series is shorter than min_past ({self.min_past}) + "
                                      f"prediction_length ({h}) steps (skipped: {windows.skipped})")
        if len(windows) > self.max_train_windows:
            rng = np.random.default_rng(self.seed)
            if self.window_sampling == "balanced" and len(np.unique(windows.index[:, 0])) > 1:
                pick = balanced_pick(windows.index[:, 0], self.max_train_windows, rng)
            else:
                pick = rng.choice(len(windows), self.max_train_windows, replace=False)
            return torch.utils.data.Subset(windows, np.sort(pick).tolist())
        return windows

    def train(self, training_data, validation_data=None, **kwargs) -> "MambaPredictor | None":
        """Trains on ``training_data`` (GluonTS dataset / entries / SeriesCollection at ``freq``) and
        returns a predictor; ``validation_data``: series whose last ``prediction_length`` steps are
        scored for early stopping and the best checkpoint.

        Training goes through ``core.training.finetune``, the one fine-tune path of every domain (PEFT,
        the Trainer, the FSDP gather); the run identity of its checkpoints holds a fingerprint of the
        training series, so resuming ``train["output_dir"]`` with other series is refused. Under torchrun
        every rank calls this; under FSDP the ranks other than the main one get ``None`` (only the main rank
        holds the gathered model). ``last_result`` and ``last_summary``: the TrainResult and the
        trainable-parameter table."""
        from mambatune.core.training import TrainConfig
        from mambatune.core.training.finetune import finetune, fingerprint_of

        training = as_collection(training_data, self.freq)
        layout = covariate_layout(training)
        validation = None
        if validation_data is not None:
            validation = as_collection(validation_data, self.freq)
            other = covariate_layout(validation, "the validation data")
            if (other["num_dynamic_real"], len(other["static_cardinalities"])) != \
                    (layout["num_dynamic_real"], len(layout["static_cardinalities"])):
                raise TimeSeriesDataError(f"the validation series carry {other['num_dynamic_real']} known covariates "
                                          f"and {len(other['static_cardinalities'])} static features, the training "
                                          f"series {layout['num_dynamic_real']} and "
                                          f"{len(layout['static_cardinalities'])}; give both the same columns")
        self.config = ForecasterConfig.from_dict({**self.config.to_dict(), **layout})
        model = self.create_model()  # settles the config (a pretrained model's holidays, ...) the windows need
        train_set = self.windows(training)
        val_set = self.windows(validation, validation=True) if validation is not None else None
        cfg = dict(self.train_config)
        tmp = None
        if not cfg.get("output_dir"):
            tmp = tempfile.TemporaryDirectory(prefix="mambatune-forecaster-")
            cfg["output_dir"] = tmp.name
        cfg["seed"] = cfg.get("seed", self.seed)
        cfg["batch_size"] = min(cfg["batch_size"], len(train_set))
        # the series and how windows are drawn from them: cheaper than hashing every window, and as exact
        fingerprint = fingerprint_of({"series": training.entries, "max_train_windows": self.max_train_windows,
                                      "window_sampling": self.window_sampling, "min_past": self.min_past})
        try:
            # covariate maps the pretrained model lacked train whatever the PEFT method freezes
            trained, self.last_result, self.last_summary = finetune(
                model, TrainConfig(**cfg), train_set, val_set, collate_windows, methods=self.peft,
                train_anyway=[f"{name}." for name in self.new_parameters], data_fingerprint=fingerprint,
                announce=False)
        finally:
            if tmp is not None:
                tmp.cleanup()
        if trained is None:  # an FSDP rank other than the main one
            return None
        return MambaPredictor(plain_forecaster(trained), self.freq, self.num_samples, seed=self.seed)


def check_patching(config: ForecasterConfig, patch_length: int, stride: int, where: str = "the pretrained forecaster",
                   names: tuple[str, str] = ("patch_length", "stride")) -> None:
    """Raise ValueError when a pretrained forecaster's patching differs from the one asked for
    (``names``: what the two settings are called where the caller reads them). The estimator clamps
    the patch to a shorter context, so the asked-for values clamped at the pretraining context also match."""
    have = (config.patch_length, config.stride)
    clamped = (min(patch_length, config.context_length), min(stride, patch_length, config.context_length))
    if have not in ((patch_length, stride), clamped):
        raise ValueError(
            f"{where} was pretrained with patch_length={have[0]}, stride={have[1]} but {names[0]}={patch_length}, "
            f"{names[1]}={stride} were asked for: set {names[0]}={have[0]} and {names[1]}={have[1]} to fine-tune it "
            "(the context length may differ from the pretraining one), or pretrain a forecaster with the "
            "patching you want")


def balanced_pick(series_of_window: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``min(n, W)`` windows (without replacement) with an equal share per series: a series
    with fewer windows than its share gives all of them and the rest is shared among the others.
    ``series_of_window``: (W,) the series index of each window."""
    series, counts = np.unique(series_of_window, return_counts=True)
    take = np.zeros(len(series), dtype=np.int64)
    left = n
    for rank, k in enumerate(np.argsort(counts, kind="stable")):  # smallest first: the shares fill up
        take[k] = min(counts[k], left // (len(series) - rank))
        left -= take[k]
    picks = [rng.choice(np.flatnonzero(series_of_window == s), t, replace=False) for s, t in zip(series, take)]
    return np.concatenate(picks)


def plain_forecaster(model: MambaForecaster) -> MambaForecaster:
    """A copy on CPU without PEFT wrappers: LoRA is merged into the base weights; methods that add
    modules a plain forecaster does not have (prompt, affix, additional scan, ...) raise."""
    from mambatune.core import peft as peft_lib
    from mambatune.core.peft.lora import lora_layers

    model = copy.deepcopy(model).cpu().eval()
    if lora_layers(model):
        peft_lib.merge(model, unload=True)
    fresh = MambaForecaster(model.config).state_dict().keys()
    extra = sorted(set(model.state_dict()) - set(fresh))
    if extra:
        raise ValueError(f"the trained forecaster has adapter weights that cannot be folded into a predictor "
                         f"({extra[:3]}...); use full, lora, head_only, partial or top_layers")
    plain = MambaForecaster(model.config)
    plain.load_state_dict(model.state_dict())
    return plain.eval()


def _context(entry: dict, cfg: ForecasterConfig, freq: str) -> tuple[dict[str, np.ndarray], object]:
    """The forecaster's inputs for one GluonTS entry (the last ``context_length`` steps, left-padded, NaN =
    unobserved; time features; known covariates over the context and the horizon; static codes) and
    the forecast start."""
    import pandas as pd

    start = entry["start"]
    if not isinstance(start, pd.Period):
        start = pd.Period(start, freq=freq)
    if not same_frequency(start.freqstr, freq):
        raise TimeSeriesDataError(f"frequency mismatch: series {entry.get('item_id')!r} is at {start.freqstr!r}, "
                                  f"the predictor at {freq!r}")
    target = np.asarray(entry["target"], dtype=np.float32)
    if target.ndim != 1:
        raise TimeSeriesDataError(f"series {entry.get('item_id')!r}: the forecaster is univariate (one series per "
                                  f"entry), got a target of shape {target.shape}")
    c, h, n_feat = cfg.context_length, cfg.prediction_length, cfg.num_time_features
    n = len(target)
    k = min(n, c)
    past = np.zeros(c, dtype=np.float32)
    observed = np.zeros(c, dtype=np.float32)
    tail = target[n - k:]
    past[c - k:] = np.nan_to_num(tail)
    observed[c - k:] = ~np.isnan(tail)
    if "observed_values" in entry:
        observed[c - k:] *= np.asarray(entry["observed_values"], dtype=np.float32)[n - k:]
    inputs = {"past_target": past, "past_observed": observed}
    if n_feat:
        feats = np.zeros((c + h, n_feat), dtype=np.float32)
        if k:
            feats[c - k:] = time_features(start + (n - k), k + h, freq).T
        inputs["past_time_feat"], inputs["future_time_feat"] = feats[:c], feats[c:]
    if cfg.num_known:
        have = np.shape(entry["feat_dynamic_real"])[0] if "feat_dynamic_real" in entry else 0
        if have != cfg.num_dynamic_real:
            raise TimeSeriesDataError(f"series {entry.get('item_id')!r} carries {have} known covariates "
                                      f"(feat_dynamic_real rows); this forecaster reads {cfg.num_dynamic_real}")
        known = known_covariates({**entry, "start": start}, n + h, freq, cfg.holidays, first=n - k)
        window = np.zeros((c + h, cfg.num_known), dtype=np.float32)
        window[c - k:] = known.T
        inputs["past_known"], inputs["future_known"] = window[:c], window[c:]
    if cfg.static_cardinalities:
        codes = np.asarray(entry.get("feat_static_cat", ()), dtype=np.int64).reshape(-1)
        if len(codes) != len(cfg.static_cardinalities):
            raise TimeSeriesDataError(f"series {entry.get('item_id')!r} has {len(codes)} feat_static_cat codes; "
                                      f"this forecaster reads {len(cfg.static_cardinalities)}")
        inputs["static_cat"] = codes
    return inputs, start + n


try:
    from gluonts.model.predictor import Predictor as _GluonTSPredictor
except ImportError:  # pragma: no cover - gluonts is a dependency of the timeseries domain
    _GluonTSPredictor = object


class MambaPredictor(_GluonTSPredictor):
    """Forecasts with a trained :class:`MambaForecaster`. ``predict(dataset)`` yields one GluonTS
    forecast per entry, starting right after its last step: ``SampleForecast`` (``num_samples``
    paths) for the Student-t head, ``QuantileForecast`` for the quantile head. Sampling uses a
    generator seeded with ``seed`` at every call, so forecasts are reproducible."""

    def __init__(self, model: MambaForecaster, freq: str, num_samples: int = 100, batch_size: int = 64,
                 seed: int = 0, device: str = "cpu"):
        super().__init__(prediction_length=model.config.prediction_length)
        self.model = model.eval().to(device)
        self.freq = freq
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.device = device

    def predict(self, dataset: Iterable[dict], num_samples: int | None = None, **kwargs) -> Iterator:
        from gluonts.model.forecast import QuantileForecast, SampleForecast

        cfg = self.model.config
        num_samples = num_samples or self.num_samples
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        batch: list = []

        def flush():
            inputs, starts, items = (list(x) for x in zip(*batch))
            tensors = {key: torch.from_numpy(np.stack([x[key] for x in inputs])).to(self.device) for key in inputs[0]}
            with torch.no_grad():
                out = self.model(**tensors)
            if cfg.distribution == "quantile":
                values = self.model.quantiles(out).cpu().numpy()
                keys = [str(q) for q in cfg.quantile_levels]
                return [QuantileForecast(v, start_date=s, forecast_keys=keys, item_id=i)
                        for v, s, i in zip(values, starts, items)]
            samples = self.model.sample(out, num_samples, generator).cpu().numpy()
            return [SampleForecast(v, start_date=s, item_id=i) for v, s, i in zip(samples, starts, items)]

        for entry in dataset:
            inputs, start = _context(entry, cfg, self.freq)
            batch.append((inputs, start, entry.get("item_id")))
            if len(batch) == self.batch_size:
                yield from flush()
                batch = []
        if batch:
            yield from flush()

    def serialize(self, path) -> None:
        """Writes ``forecaster.json`` + ``model.safetensors`` (the model), ``predictor.json`` and
        GluonTS' ``gluonts-config.json`` into the folder ``path``: json and safetensors only."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if _GluonTSPredictor is not object:
            super().serialize(path)
        save_forecaster(self.model, path)
        (path / PREDICTOR_CONFIG).write_text(json.dumps(
            {"freq": self.freq, "num_samples": self.num_samples, "batch_size": self.batch_size, "seed": self.seed},
            indent=2) + "\n")

    @classmethod
    def deserialize(cls, path, device: str = "cpu", **kwargs) -> "MambaPredictor":
        path = Path(path)
        if not (path / PREDICTOR_CONFIG).is_file():
            raise FileNotFoundError(f"{path} has no {PREDICTOR_CONFIG}; was it written by MambaPredictor.serialize?")
        meta = json.loads((path / PREDICTOR_CONFIG).read_text())
        return cls(load_forecaster(path), device=device, **meta)
