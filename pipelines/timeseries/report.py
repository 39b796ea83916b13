"""The time-series pipeline's outputs: fan charts, the per-series and ensemble-member tables and
report.md of a run (``pipeline.run``; competition runs write theirs in ``competition``)."""
from __future__ import annotations

from pathlib import Path

from mambatune.core.atomic import atomic_write_text
from mambatune.domains.timeseries.evaluation import fan_charts

from ..comparison_figure import plot_comparison


def plot_fans(forecasts: list, problem, out_dir: Path, count: int, title: str) -> list[Path]:
    """Fan charts of the first ``count`` windows, or with several hourly series the last window of
    each of the first ``count`` series."""
    if not count:
        return []
    pairs = list(problem.backtest.test_data)
    if problem.freq == "h":
        last: dict[str, int] = {}
        for i, (inp, _) in enumerate(pairs):
            last[str(inp.get("item_id", i))] = i
        if len(last) > 1:
            keep = list(last.values())[:count]
            return fan_charts([forecasts[i] for i in keep], [pairs[i] for i in keep], out_dir, max_series=count,
                              title=title)
    return fan_charts(forecasts, pairs, out_dir, max_series=count, title=title)


def per_series_table(per_series: dict) -> str:
    """Markdown: one row per series (and their mean), MASE and wQL of every model."""
    models = list(per_series)
    head = "| series | " + " | ".join(f"{m}: MASE | wQL" for m in models) + " |"
    rule = "|---|" + "---|---|" * len(models)
    rows = [f"| {item} | " + " | ".join(f"{per_series[m][item]['MASE']:.3f} | {per_series[m][item]['wQL']:.4f}"
                                        for m in models) + " |"
            for item in per_series[models[0]]]
    return "\n".join([head, rule, *rows])


def members_table(members: list[dict], ensemble: dict, title: str = "## Ensemble members") -> str:
    """The members of an ensemble with their own test scores, and the ensemble's on the same windows."""
    rows = "\n".join(f"| {k} | {m['seed']} | {m['context_length']} | {m['steps']} | {m['MASE']:.4g} | "
                      f"{m['sMAPE']:.4g} | {m['wQL']:.4g} |" for k, m in enumerate(members))
    mean = {c: sum(m[c] for m in members) / len(members) for c in ("MASE", "sMAPE", "wQL")}
    return (f"{title}\n\nEach member alone on the same windows; the ensemble pools their sample paths.\n\n"
            "| member | seed | context | steps | MASE | sMAPE | wQL |\n|---|---|---|---|---|---|---|\n" + rows +
            f"\n| mean of members | | | | {mean['MASE']:.4g} | {mean['sMAPE']:.4g} | {mean['wQL']:.4g} |"
            f"\n| **ensemble** | | | | {ensemble['MASE']:.4g} | {ensemble['sMAPE']:.4g} | {ensemble['wQL']:.4g} |\n")


def scale_text(cfg) -> str:
    return f"the last {cfg.scale_window} steps" if cfg.scale_window else "the whole context"


def holiday_text(cfg) -> str:
    if not cfg.holidays:
        return ""
    return (f", holiday covariates from the `{cfg.holidays}` calendar (read by the Mamba forecaster only, not by "
            "the baselines)")


def write_report(run_dir: Path, recipe, results: dict, name: str) -> None:
    cols = ["MASE", "sMAPE", "wQL", "MSIS", "ND", "NRMSE", "seconds"]
    rows = "\n".join(f"| {n}{' (this recipe)' if n == name else ''} | "
                     + " | ".join(f"{m[c]:.4g}" for c in cols) + " |" for n, m in results["test"].items())
    train = results["training"]
    charts = "\n".join(f"![{Path(p).stem}]({p})" for p in results["fan_charts"])
    comparison = plot_comparison(run_dir, results, recipe.name)  # our forecaster beside the same run's baselines
    compared = f"\n![comparison](plots/{comparison.name})\n" if comparison is not None else ""
    cfg = recipe.data
    per_series = ""
    if results.get("context_comparison"):
        lengths = "\n".join(f"| {c} | {m['MASE']:.4g} | {m['wQL']:.4g} | {m['sMAPE']:.4g} | {m['steps']} | "
                            f"{m['seconds']:.0f} |" for c, m in results["context_comparison"].items())
        per_series += ("\n## Context length\n\nThe same model, budget, seed and training cut points at each "
                       "context length (only what is read before each cut differs).\n\n"
                       "| context | MASE | wQL | sMAPE | steps | seconds |\n|---|---|---|---|---|---|\n" + lengths + "\n")
    if train.get("members"):
        per_series += "\n" + members_table(train["members"], results["test"][name]) + "\n"
    if results.get("model_notes"):
        per_series += "\n## Model\n\n" + "\n".join(f"- {n}" for n in results["model_notes"]) + "\n"
    if results.get("data"):
        notes = "\n".join(f"- {n}" for n in results["data"]["notes"]) or "- nothing changed or missing"
        per_series += f"\n## Data\n\nWhat reading `{cfg.path}` changed or counted:\n\n{notes}\n"
    if results.get("forecasts"):
        per_series += (f"\nEvery model's backtest forecasts (quantiles, mean, actual per series, window and step): "
                       f"`{results['forecasts']}`.\n")
    if results.get("per_series"):
        per_series += ("\n## Per series\n\nEach series' own windows (\"mean\": every series weighted equally).\n\n"
                      + per_series_table(results["per_series"]) + "\n")
    text = f"""# {recipe.name}

Recipe: `{recipe.source}` · task `{cfg.task}` · base model: `{results['pretrained'] or 'none (from scratch)'}`

Backtest: {results['problem']}. Context {cfg.context_length} steps, patches of {cfg.patch_length}
(stride {cfg.stride}), scaling `{cfg.scaling}`, time features {cfg.time_features}, {cfg.num_samples} sample
paths, seasonal skip {cfg.seasonal_skip or 'off'}, scaling statistics from {scale_text(cfg)}{holiday_text(cfg)}. MASE uses a seasonal period of {results['mase_seasonality']} for every model.

| model | {' | '.join(cols)} |
|{'---|' * (len(cols) + 1)}
{rows}

sMAPE in percent; wQL is the mean weighted quantile loss over 0.1…0.9; lower is better everywhere.
{per_series}
Training: {train['steps']} optimizer steps (best step {train['best_step']}), {train['train_seconds']:.0f} s;
total {results['total_seconds']:.0f} s.
{compared}
## Fan charts

{charts or '(none)'}
"""
    atomic_write_text(run_dir / "report.md", text)
