"""Competition scores (M3 / M1): per frequency group and overall, in the M3 convention.

The M3 convention (Makridakis & Hibon 2000) ranks methods by the symmetric MAPE of
each series (percent, the mean over its official horizon) averaged over series.
Frequency groups have different horizons (yearly 6, quarterly 8, monthly 18, other 8),
so two overall means exist: **series-weighted** (every series counts once: the
convention) and **step-weighted** (every forecast step counts once, so a monthly series
counts three times a yearly one). Both are reported; MASE likewise.

Each model's input is one :class:`~.evaluation.Evaluation` per group (one window per
series, from :func:`~.evaluation.official_split`), whose ``per_item`` holds the
per-series scores.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .evaluation import Evaluation

# Theta's sMAPE (%) in the M3 competition, Makridakis & Hibon (2000), Table 6 (all horizons)
PUBLISHED_THETA = {"m3": {"yearly": 16.90, "quarterly": 8.96, "monthly": 13.85, "other": 4.41, "all": 13.01}}


@dataclass
class GroupScore:
    """One model on one group (or ``all``): ``series`` scored, sMAPE (%) and MASE as the mean over
    series (series-weighted) and over forecast steps (step-weighted)."""

    series: int
    sMAPE: float
    MASE: float
    sMAPE_steps: float
    MASE_steps: float

    def to_dict(self) -> dict[str, float]:
        return {"series": self.series, "sMAPE": self.sMAPE, "MASE": self.MASE, "sMAPE_step_weighted": self.sMAPE_steps,
                "MASE_step_weighted": self.MASE_steps}


def group_scores(evaluations: dict[str, Evaluation], horizons: dict[str, int]) -> dict[str, GroupScore]:
    """``{group: Evaluation}`` of one model -> ``{group: GroupScore, ..., "all": GroupScore}``.
    Within a group the two weightings agree (one horizon); ``all`` pools every series."""
    frames, weights, scores = [], [], {}
    for group, ev in evaluations.items():
        frame = ev.per_item[["sMAPE", "MASE"]]
        frames.append(frame)
        weights.append(np.full(len(frame), horizons[group], dtype=float))
        scores[group] = _score(frame, weights[-1])
    scores["all"] = _score(pd.concat(frames), np.concatenate(weights))
    return scores


def _score(frame: pd.DataFrame, steps: np.ndarray) -> GroupScore:
    smape, mase = frame["sMAPE"].to_numpy(float), frame["MASE"].to_numpy(float)
    return GroupScore(len(frame), float(np.mean(smape)), float(np.mean(mase)), float(np.average(smape, weights=steps)),
                      float(np.average(mase, weights=steps)))


def competition_report(scores: dict[str, dict[str, GroupScore]], name: str = "m3", complete: bool = True) -> str:
    """Markdown: one row per model, sMAPE and MASE per group and overall (series-weighted), the
    overall step-weighted sMAPE, and for M3 the published Theta sMAPE as the last row
    (``complete``: every series of each group was scored; otherwise the published row is marked
    as not comparable)."""
    groups = list(next(iter(scores.values())))
    head = ("| model | " + " | ".join(f"{g} sMAPE | {g} MASE" for g in groups)
            + " | all sMAPE (step-weighted) |")
    rule = "|---|" + "---|---|" * len(groups) + "---|"
    lines = [head, rule]
    for model, by_group in scores.items():
        cells = " | ".join(f"{by_group[g].sMAPE:.2f} | {by_group[g].MASE:.3f}" for g in groups)
        lines.append(f"| {model} | {cells} | {by_group['all'].sMAPE_steps:.2f} |")
    published = PUBLISHED_THETA.get(name)
    if published:
        label = "Theta, published (M3 competition)" + ("" if complete else ": all series, not comparable")
        cells = " | ".join(f"{published[g]:.2f} | –" if g in published else "– | –" for g in groups)
        lines.append(f"| {label} | {cells} | – |")
    counts = ", ".join(f"{g} {s.series}" for g, s in next(iter(scores.values())).items())
    return "\n".join(lines) + f"\n\nSeries scored: {counts}."
