"""``plots/comparison.png``: our model beside the same run's baselines on the test metrics.

Drawn from the run's results (the ``test`` section of results.json, either layout the pipelines write:
``{model: {metric: value}}`` with ours first, or our metrics with the baselines under ``baselines``).
One panel per main metric, one bar per model, ours in its own colour; a metric with a 95 % interval
(``<metric>_ci: [lo, hi]``, or ``<metric>_lo`` / ``<metric>_hi``) gets it as an error bar.
"""
from __future__ import annotations

import math
from pathlib import Path

from mambatune.core.training.figures import LOWER_IS_BETTER, figure_title, metric_label, pyplot, save_figure

NOT_COMPARED = ("seconds", "n", "examples", "positives", "threshold", "loss", "steps")


def interval(values: dict, metric: str) -> tuple[float, float] | None:
    """(lo, hi) of ``metric`` when the results hold one."""
    ci = values.get(f"{metric}_ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci):
        return float(ci[0]), float(ci[1])
    lo, hi = values.get(f"{metric}_lo"), values.get(f"{metric}_hi")
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
        return float(lo), float(hi)
    return None


def compared_models(results: dict) -> dict[str, dict]:
    """{model: its test entry (intervals included)}, ours first."""
    test = results.get("test") or {}
    if test and all(isinstance(v, dict) for v in test.values()):
        return dict(test)
    return {"mamba": test, **(results.get("baselines") or {})}


def plot_comparison(run_dir: str | Path, results: dict, name: str = "", limit: int = 4) -> Path | None:
    """Writes ``<run_dir>/plots/comparison.png`` (see the module's docstring) and returns it; None when the
    results hold fewer than two models or no metric they share."""
    from .cross_validation import key_metrics, test_metrics

    points = test_metrics(results)
    entries = compared_models(results)
    if len(points) < 2:
        return None
    metrics = [m for m in key_metrics(points, limit=limit + len(NOT_COMPARED)) if m not in NOT_COMPARED
               and not m.endswith("_ci") and not m.startswith("n_") and sum(m in v and math.isfinite(v[m]) for v in points.values()) >= 2][:limit]
    if not metrics:
        return None
    plt = pyplot()
    models = list(points)
    ours = models[0]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics) + 1.5, 0.45 * len(models) + 1.8),
                             sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        ys = list(range(len(models)))[::-1]
        values = [points[m].get(metric, math.nan) for m in models]
        colours = ["tab:blue" if m == ours else "tab:gray" for m in models]
        ax.barh(ys, [0 if math.isnan(v) else v for v in values], color=colours, height=0.6)
        for y, model, v in zip(ys, models, values):
            ci = interval(entries.get(model) or {}, metric)
            if ci is not None:
                ax.errorbar(v, y, xerr=[[v - ci[0]], [ci[1] - v]], fmt="none", ecolor="black", capsize=3, lw=1)
            ax.text(0, y, "  n/a" if math.isnan(v) else f" {v:.3g}", va="center", ha="left", fontsize=7)
        ax.set_yticks(ys, models, fontsize=8)
        better = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
        ax.set_xlabel(f"{metric_label(metric)} ({better})", fontsize=8)
        ax.set_title(metric_label(metric), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    has_ci = any(interval(entries.get(m) or {}, metric) for m in models for metric in metrics)
    what = "test metrics, our model (blue) and the same run's baselines" + (" (bars: 95 % intervals)" if has_ci else "")
    fig.suptitle(figure_title(run_dir, None, what, name=name), fontsize=10)
    return save_figure(fig, Path(run_dir) / "plots" / "comparison.png")
