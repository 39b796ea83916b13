"""An ensemble of Mamba forecasters that forecasts as one GluonTS predictor.

Deep forecasters that do well on M3/M4 are ensembles: N-BEATS' published
figures combine models trained from different seeds and lookback windows.
:class:`EnsemblePredictor` does that for :class:`MambaPredictor` members (each
trained with its own seed, and optionally its own context length):

- sample heads (Student-t): the forecast pools every member's sample paths, a
  mixture with equal weights, so its median and quantiles are the mixture's;
- quantile heads: each quantile is the mean of the members' (quantile averaging).

``serialize(folder)`` writes each member's predictor under ``member-<k>/`` and
``ensemble.json``; ``EnsemblePredictor.deserialize(folder)`` (or
:func:`load_predictor`, which takes either kind of folder) reads it back.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .estimator import MambaPredictor

ENSEMBLE_CONFIG = "ensemble.json"


def combine(per_member: list[list]) -> list:
    """One forecast per entry from each member's forecasts of the same entries (in the same order)."""
    from gluonts.model.forecast import QuantileForecast, SampleForecast

    if not per_member:
        raise ValueError("an ensemble needs at least one member")
    counts = {len(f) for f in per_member}
    if len(counts) != 1:
        raise ValueError(f"the members forecast different numbers of entries: {sorted(counts)}")
    out = []
    for forecasts in zip(*per_member):
        first = forecasts[0]
        if isinstance(first, SampleForecast):
            samples = np.concatenate([f.samples for f in forecasts], axis=0)
            out.append(SampleForecast(samples, start_date=first.start_date, item_id=first.item_id))
        elif isinstance(first, QuantileForecast):
            arrays = np.mean([f.forecast_array for f in forecasts], axis=0)
            out.append(QuantileForecast(arrays, start_date=first.start_date, forecast_keys=first.forecast_keys,
                                        item_id=first.item_id))
        else:
            raise TypeError(f"cannot combine forecasts of type {type(first).__name__}")
    return out


class EnsemblePredictor:
    """Several :class:`MambaPredictor` of the same frequency and horizon, forecasting as one."""

    def __init__(self, members: list[MambaPredictor]):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        freqs = {m.freq for m in members}
        horizons = {m.prediction_length for m in members}
        if len(freqs) != 1 or len(horizons) != 1:
            raise ValueError(f"ensemble members must share frequency and horizon; got frequencies {sorted(freqs)} "
                             f"and horizons {sorted(horizons)}")
        self.members = list(members)
        self.freq = members[0].freq
        self.prediction_length = members[0].prediction_length

    @property
    def context_length(self) -> int:
        """The longest context any member reads."""
        return max(m.model.config.context_length for m in self.members)

    def predict(self, dataset: Iterable[dict], **kwargs) -> Iterator:
        entries = list(dataset)
        yield from combine([list(m.predict(entries, **kwargs)) for m in self.members])

    def serialize(self, path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for k, member in enumerate(self.members):
            member.serialize(path / f"member-{k}")
        (path / ENSEMBLE_CONFIG).write_text(json.dumps(
            {"members": len(self.members), "freq": self.freq, "prediction_length": self.prediction_length,
             "combine": "pooled sample paths (mixture); mean of quantiles for quantile heads"}, indent=2) + "\n")

    @classmethod
    def deserialize(cls, path, device: str = "cpu") -> "EnsemblePredictor":
        path = Path(path)
        if not (path / ENSEMBLE_CONFIG).is_file():
            raise FileNotFoundError(f"{path} has no {ENSEMBLE_CONFIG}; was it written by EnsemblePredictor.serialize?")
        meta = json.loads((path / ENSEMBLE_CONFIG).read_text())
        members = [MambaPredictor.deserialize(path / f"member-{k}", device=device) for k in range(meta["members"])]
        return cls(members)


def load_predictor(path, device: str = "cpu") -> MambaPredictor | EnsemblePredictor:
    """A serialized predictor folder of either kind."""
    path = Path(path)
    if (path / ENSEMBLE_CONFIG).is_file():
        return EnsemblePredictor.deserialize(path, device=device)
    return MambaPredictor.deserialize(path, device=device)


def context_length(predictor) -> int:
    """The context a predictor reads (the longest, for an ensemble)."""
    if isinstance(predictor, EnsemblePredictor):
        return predictor.context_length
    return predictor.model.config.context_length
