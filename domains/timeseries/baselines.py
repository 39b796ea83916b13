"""Baselines scored in the same run as the Mamba forecaster.

- ``seasonal_naive``: GluonTS' ``SeasonalNaivePredictor``
- ``theta``: statsmodels' ``ThetaModel`` (classical Theta: SES with drift, theta = 2,
  multiplicative deseasonalising when the 90 % seasonality test passes) wrapped as a
  GluonTS predictor that returns quantile forecasts
- ``deepar``, ``patchtst``: GluonTS' torch estimators, trained with the same context,
  horizon and :class:`TrainingBudget` as the model under test (need ``lightning``)

Reproduce the M3 table of ``data/README.md``::

    python -m mambatune.domains.timeseries.baselines m3
    python -m mambatune.domains.timeseries.baselines electricity --context 512 --horizon 24  # needs lightning
"""
from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from gluonts.model.forecast import QuantileForecast
from gluonts.model.predictor import RepresentablePredictor
from gluonts.dataset.util import forecast_start
from scipy import stats

from .frequency import offset_alias
from .evaluation import DEFAULT_QUANTILES, Backtest, Evaluation, evaluate
from .lightning_compat import require_lightning

BASELINES = ("seasonal_naive", "theta", "deepar", "patchtst")
INTERVAL_QUANTILES = (0.025, 0.05, 0.25, 0.75, 0.95, 0.975)  # MSIS and fan charts


@dataclass
class TrainingBudget:
    """What every trained model in a comparison gets: epochs × batches × batch size."""

    max_epochs: int = 10
    num_batches_per_epoch: int = 50
    batch_size: int = 32
    learning_rate: float = 1e-3
    work_dir: str | None = None  # where Lightning may write; a temporary folder when None

    def trainer_kwargs(self) -> dict:
        import tempfile

        # GluonTS keeps the best model in memory; without a root dir Lightning would write
        # checkpoint files into the current directory
        root = self.work_dir or tempfile.mkdtemp(prefix="mambatune-lightning-")
        return {"max_epochs": self.max_epochs, "accelerator": "auto", "enable_progress_bar": False,
                "enable_model_summary": False, "logger": False, "default_root_dir": root}


def _impute(y: np.ndarray) -> np.ndarray:
    """Linear interpolation inside, nearest value at the edges; all-NaN → zeros."""
    y = np.asarray(y, dtype=float)
    nan = np.isnan(y)
    if not nan.any():
        return y
    if nan.all():
        return np.zeros_like(y)
    idx = np.arange(len(y))
    return np.interp(idx, idx[~nan], y[~nan])


class ThetaPredictor(RepresentablePredictor):
    """statsmodels' ``ThetaModel`` per series, as GluonTS ``QuantileForecast`` objects.

    Point forecast (the median): ``ThetaModelResults.forecast(h, theta=2)``.
    Quantiles: normal intervals with the Theta model's variance
    ``σ²(1 + (h − 1)(1 + (α − 1)²))`` (statsmodels' formula), where σ² is the variance of
    the fitted SES one-step errors on the deseasonalised series (statsmodels would fit an
    ARIMA(0,1,1) by maximum likelihood for σ², about 5 s a series).

    NaN targets are interpolated; constant series get a flat forecast with zero-width
    intervals; series shorter than two seasons are not deseasonalised.
    """

    def __init__(self, prediction_length: int, season_length: int = 1,
                 quantiles: Sequence[float] = DEFAULT_QUANTILES, theta: float = 2.0):
        super().__init__(prediction_length=prediction_length)
        self.season_length = season_length
        self.quantiles = tuple(sorted(set(quantiles) | set(INTERVAL_QUANTILES) | {0.5}))
        self.theta = theta

    def predict(self, dataset, **kwargs):
        from threadpoolctl import threadpool_limits

        # statsmodels' many tiny L-BFGS fits run ~3x slower on multi-threaded BLAS
        with threadpool_limits(limits=1, user_api="blas"):
            yield from super().predict(dataset, **kwargs)

    def predict_item(self, item) -> QuantileForecast:
        from statsmodels.tsa.forecasting.theta import ThetaModel

        y = _impute(item["target"])
        h = self.prediction_length
        if len(y) < 3 or np.ptp(y) == 0:
            point, sigma_h = np.full(h, y[-1] if len(y) else 0.0), np.zeros(h)
        else:
            seasonal = self.season_length > 1 and len(y) >= 2 * self.season_length
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = ThetaModel(y, period=self.season_length if seasonal else 1, deseasonalize=seasonal,
                                   method="auto" if (y > 0).all() else "additive")
                fit = model.fit()
                point = np.asarray(fit.forecast(h, theta=self.theta), dtype=float)
                alpha = float(fit.params.iloc[1])
                adjusted = model._deseasonalize_data()[0] if seasonal else y
            sigma_h = np.sqrt((1 + np.arange(h) * (1 + (alpha - 1) ** 2)) * _ses_error_variance(adjusted, alpha))
        arrays = [point + stats.norm.ppf(q) * sigma_h for q in self.quantiles]
        return QuantileForecast(np.stack(arrays).astype(np.float32), start_date=forecast_start(item),
                                forecast_keys=[str(q) for q in self.quantiles], item_id=item.get("item_id"))


def _ses_error_variance(y: np.ndarray, alpha: float) -> float:
    level, sq = y[0], 0.0
    for value in y[1:]:
        sq += (value - level) ** 2
        level = alpha * value + (1 - alpha) * level
    return sq / max(len(y) - 1, 1)


def seasonal_naive(prediction_length: int, season_length: int):
    from gluonts.model.seasonal_naive import SeasonalNaivePredictor

    return SeasonalNaivePredictor(prediction_length=prediction_length, season_length=season_length)


def deepar_estimator(freq: str, prediction_length: int, context_length: int, budget: TrainingBudget,
                     **kwargs):
    """GluonTS' torch DeepAR with the shared context, horizon and budget."""
    require_lightning()
    from gluonts.torch.model.deepar import DeepAREstimator

    # GluonTS reads freq with to_offset (calendar features, lags): the offset alias, valid under pandas 2 and 3
    return DeepAREstimator(freq=offset_alias(freq), prediction_length=prediction_length, context_length=context_length,
                           lr=budget.learning_rate, batch_size=budget.batch_size,
                           num_batches_per_epoch=budget.num_batches_per_epoch,
                           trainer_kwargs=budget.trainer_kwargs(), **kwargs)


def patchtst_estimator(prediction_length: int, context_length: int, budget: TrainingBudget,
                       patch_length: int = 16, stride: int = 8, **kwargs):
    """GluonTS' torch PatchTST with the shared context, horizon and budget."""
    require_lightning()
    from gluonts.torch.model.patch_tst import PatchTSTEstimator

    patch_length = min(patch_length, context_length)
    return PatchTSTEstimator(prediction_length=prediction_length, patch_len=patch_length,
                             stride=min(stride, patch_length), context_length=context_length,
                             lr=budget.learning_rate, batch_size=budget.batch_size,
                             num_batches_per_epoch=budget.num_batches_per_epoch,
                             trainer_kwargs=budget.trainer_kwargs(), **kwargs)


@dataclass
class BaselineResult:
    name: str
    evaluation: Evaluation
    forecasts: list
    seconds: float


def run_baselines(backtest: Backtest, season_length: int, names: Sequence[str] = ("seasonal_naive", "theta"),
                  context_length: int | None = None, budget: TrainingBudget | None = None,
                  quantiles: Sequence[float] = DEFAULT_QUANTILES, seed: int = 0) -> dict[str, BaselineResult]:
    """Fit (where needed) and score each baseline on ``backtest``.

    ``season_length`` is used by seasonal naive, Theta and MASE. The trained baselines
    learn from ``backtest.train`` with ``context_length`` (default 4 × horizon) and
    ``budget``; their forecasts are sample paths scored like every other forecast. Python's,
    NumPy's and torch's generators are seeded with ``seed`` before each trained baseline is fit
    and forecasts, so a run repeats its DeepAR / PatchTST figures (on the same hardware).
    """
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; choose from {BASELINES}")
    h = backtest.prediction_length
    context_length = context_length or 4 * h
    budget = budget or TrainingBudget()
    results = {}
    for name in names:
        started = time.perf_counter()
        if name in ("deepar", "patchtst"):
            seed_everything(seed)
        if name == "seasonal_naive":
            predictor = seasonal_naive(h, season_length)
        elif name == "theta":
            predictor = ThetaPredictor(h, season_length, quantiles)
        elif name == "deepar":
            predictor = deepar_estimator(backtest.freq, h, context_length, budget).train(backtest.train)
        else:
            predictor = patchtst_estimator(h, context_length, budget).train(backtest.train)
        forecasts = list(predictor.predict(backtest.test_data.input))
        evaluation = evaluate(forecasts, backtest.test_data, seasonality=season_length, quantiles=quantiles)
        results[name] = BaselineResult(name, evaluation, forecasts, time.perf_counter() - started)
    return results


def seed_everything(seed: int) -> None:
    """Seeds the generators GluonTS' torch estimators draw from (instance sampling, init, dropout, sample paths)."""
    import random

    import torch
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def competition_table(name: str = "m3", names: Sequence[str] = ("seasonal_naive", "theta"),
                      max_series: int | None = None) -> str:
    """Markdown table of sMAPE (%) and MASE per frequency group and overall, on the
    official split with the official horizons. "series-weighted": the mean of per-series
    scores; "step-weighted": the mean over every forecast step (a monthly series, with
    horizon 18, counts three times a yearly one, with horizon 6)."""
    import pandas as pd

    from .demo_data import competition_groups, load_competition
    from .evaluation import official_split

    rows, per_item, horizons = [], {n: [] for n in names}, []
    for group in competition_groups(name):
        split = load_competition(name, group, max_series=max_series)
        horizons.append(split.horizon)
        backtest = official_split(split.train, split.test, split.horizon)
        results = run_baselines(backtest, split.seasonality, names)
        for n, res in results.items():
            per_item[n].append(res.evaluation.per_item[["sMAPE", "MASE"]])
            rows.append((n, group, len(split.test), *res.evaluation.series_mean().values(), res.seconds))
    for n in names:
        every = pd.concat(per_item[n])
        rows.append((n, "all (series-weighted)", len(every), every["MASE"].mean(), every["sMAPE"].mean(), 0.0))
        steps = np.concatenate([np.full(len(f), h) for f, h in zip(per_item[n], horizons)])
        rows.append((n, "all (step-weighted)", len(every), np.average(every["MASE"], weights=steps),
                     np.average(every["sMAPE"], weights=steps), 0.0))
    lines = ["| baseline | group | series | sMAPE (%) | MASE |", "|---|---|---|---|---|"]
    for n, group, count, mase, smape, _ in rows:
        lines.append(f"| {n} | {group} | {count} | {smape:.2f} | {mase:.3f} |")
    return "\n".join(lines)


def hourly_table(series: str = "electricity", names: Sequence[str] = BASELINES, prediction_length: int = 24,
                 windows: int = 7, context_length: int = 512, budget: TrainingBudget | None = None,
                 season_length: int = 168) -> str:
    """Markdown table: every baseline on the last ``windows`` days of an hourly demo series,
    trained models sharing ``context_length`` and ``budget``."""
    from .demo_data import load_hourly
    from .evaluation import rolling_origin

    backtest = rolling_origin(load_hourly(series), prediction_length, windows=windows)
    results = run_baselines(backtest, season_length, names, context_length, budget)
    lines = ["| baseline | MASE | wQL | sMAPE (%) | MSIS | ND | NRMSE | seconds |", "|---|---|---|---|---|---|---|---|"]
    for n, res in results.items():
        o = res.evaluation.overall
        lines.append(f"| {n} | {o['MASE']:.3f} | {o['wQL']:.4f} | {o['sMAPE']:.2f} | {o['MSIS']:.2f} | "
                     f"{o['ND']:.4f} | {o['NRMSE']:.4f} | {res.seconds:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Score the baselines on the demo data.")
    from .demo_data import HOURLY

    parser.add_argument("dataset", choices=["m3", "m1", *HOURLY])
    parser.add_argument("--baselines", nargs="+", default=None, choices=BASELINES)
    parser.add_argument("--max-series", type=int, default=None, help="competitions: first N series per group")
    parser.add_argument("--horizon", type=int, default=24, help="hourly: prediction length")
    parser.add_argument("--windows", type=int, default=7, help="hourly: rolling-origin windows")
    parser.add_argument("--context", type=int, default=512, help="hourly: context length of trained models")
    parser.add_argument("--epochs", type=int, default=10, help="hourly: epochs of 50 batches of 32")
    args = parser.parse_args(argv)
    if args.dataset in ("m3", "m1"):
        print(competition_table(args.dataset, args.baselines or ["seasonal_naive", "theta"], args.max_series))
    else:
        budget = TrainingBudget(max_epochs=args.epochs)
        print(hourly_table(args.dataset, args.baselines or BASELINES, args.horizon, args.windows, args.context,
                           budget))


if __name__ == "__main__":
    main()
