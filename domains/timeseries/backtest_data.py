"""A user's series made ready for a rolling backtest, with every change counted for the report.

- Missing values at the start or end of a series are trimmed (a series ending in missing values would
  leave the last backtest window without labels);
- an incomplete last period is handled (``partial_period``): sub-daily series whose last day is not complete
  (an hourly file ending at 13:00, or at 00:00 of a new day) would shift every backtest window off the day's
  grid; ``trim`` drops the steps of that last day, ``error`` refuses, ``keep`` leaves it (stated in the report);
- the seasonal period of the baselines and of the forecaster's seasonal skip is the longest cycle of the
  frequency that every series' history covers twice (hourly: 168, else 24), and MASE's is GluonTS' (hourly 24);
- series too short for the backtest are named; when none is long enough, the error says what would fit.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from .data import SeriesCollection, TimeSeriesDataError
from .frequency import daily_cycle, mase_period, seasonal_periods

PARTIAL_PERIOD_MODES = ("trim", "error", "keep")




def cut(entry: dict, first: int, stop: int) -> dict:
    """Steps ``first`` to ``stop`` of one entry (start moved, covariates cut alike)."""
    out = {**entry, "start": entry["start"] + first, "target": entry["target"][first:stop],
           "observed_values": entry["observed_values"][first:stop]}
    if "feat_dynamic_real" in entry:
        out["feat_dynamic_real"] = entry["feat_dynamic_real"][:, first:stop]
    return out


def trim_missing_ends(collection: SeriesCollection,
                      where: str = "the data") -> tuple[SeriesCollection, list[str], dict]:
    """Each series without its leading and trailing missing targets; series with no value at all are left
    out. Returns the collection, notes and counts (``where``: the file, for the error when no value is left)."""
    entries, lead, trail, empty = [], 0, 0, []
    for e in collection.entries:
        seen = np.flatnonzero(np.isfinite(np.asarray(e["target"], dtype=np.float64)))
        if not len(seen):
            empty.append(e["item_id"])
            continue
        first, stop = int(seen[0]), int(seen[-1]) + 1
        lead, trail = lead + first, trail + len(e["target"]) - stop
        entries.append(cut(e, first, stop) if (first, stop) != (0, len(e["target"])) else e)
    if not entries:
        raise TimeSeriesDataError(f"{where}: every series is empty: no target value is present in any of "
                                  f"{len(collection)} series (every one is missing: NA, empty, ...); is "
                                  "data.target_column the column of the values?")
    notes, counts = [], {}
    if lead or trail:
        counts["missing steps trimmed at the ends"] = lead + trail
        notes.append(f"{lead} leading and {trail} trailing missing steps trimmed (a series starts at its first "
                     "value and ends at its last)")
    if empty:
        counts["series without values"] = len(empty)
        notes.append(f"{len(empty)} series with no value left out ({', '.join(map(repr, empty[:5]))})")
    return dataclasses.replace(collection, entries=entries), notes, counts


def partial_last_period(collection: SeriesCollection, mode: str = "trim") -> tuple[SeriesCollection, list[str], dict]:
    """Sub-daily series whose last day is incomplete: ``trim`` its steps, ``error``, or ``keep`` (noted).
    Other frequencies are returned unchanged: their backtest windows do not depend on a day's grid."""
    if mode not in PARTIAL_PERIOD_MODES:
        raise ValueError(f"partial_period must be one of {', '.join(PARTIAL_PERIOD_MODES)}, got {mode!r}")
    per_day = daily_cycle(collection.freq)
    if per_day is None:
        return collection, [], {}
    partial = {}
    for i, e in enumerate(collection.entries):
        after = e["start"] + len(e["target"])  # the step after the last one
        into_day = (after.start_time - after.start_time.normalize()) // pd.Timedelta(seconds=86400 // per_day)
        if into_day:
            partial[i] = int(into_day)
    if not partial:
        return collection, [], {}
    first = next(iter(partial))
    last = collection.entries[first]["start"] + len(collection.entries[first]["target"]) - 1
    what = (f"{len(partial)} series end in an incomplete day (e.g. {collection.entries[first]['item_id']!r}: its last "
            f"step is {last}, {partial[first]} of the day's {per_day} steps)")
    if mode == "error":
        raise TimeSeriesDataError(f"{what}; the backtest windows would not start at midnight. Set "
                                  "data.partial_period=trim to drop the incomplete day, or keep to use it as is")
    if mode == "keep":
        return collection, [f"{what}: kept (data.partial_period=keep), so the backtest windows start at "
                            f"{(last + 1).start_time.time()} instead of midnight"], {}
    entries = list(collection.entries)
    for i, steps in partial.items():
        e = entries[i]
        if steps < len(e["target"]):
            entries[i] = cut(e, 0, len(e["target"]) - steps)
    trimmed = sum(partial.values())
    return dataclasses.replace(collection, entries=entries), [
        f"{what}: those {trimmed} steps trimmed (data.partial_period=trim), so every backtest window starts at "
        "midnight"], {"steps trimmed (incomplete last day)": trimmed}


def season_lengths(collection: SeriesCollection, held_out: int) -> tuple[int, int]:
    """(seasonal period, MASE period). The seasonal period (seasonal naive, Theta, ``seasonal_skip: season``)
    is the longest cycle of the frequency (:func:`.frequency.seasonal_periods`) that the shortest history
    before the backtest covers twice, else the shortest cycle; MASE's is GluonTS' for the frequency."""
    cycles = seasonal_periods(collection.freq)
    shortest = min(len(e["target"]) for e in collection.entries) - held_out
    fitting = [c for c in cycles if 2 * c <= shortest]
    return (max(fitting) if fitting else min(cycles)), mase_period(collection.freq)


def check_backtest_length(collection: SeriesCollection, prediction_length: int, windows: int,
                          where: str) -> tuple[list[str], dict]:
    """Notes naming the series too short for the backtest (they are left out by ``rolling_origin``);
    an error saying what would fit when no series is long enough."""
    held_out = prediction_length * windows
    short = [(e["item_id"], len(e["target"])) for e in collection.entries if len(e["target"]) <= held_out]
    if len(short) == len(collection.entries):
        name, longest = max(short, key=lambda s: s[1])
        fit = max((longest - 1) // prediction_length, 0)
        fix = (f"Lower data.windows (at most {fit} fit{'s' if fit == 1 else ''} at this horizon) or "
               "data.prediction_length" if fit else
               f"Lower data.prediction_length to at most {longest - 1} (with data.windows=1), or give longer series"
               if longest > 1 else "Give series of more than one step")
        raise TimeSeriesDataError(
            f"{where}: no series is long enough for the backtest: {windows} window(s) of {prediction_length} steps "
            f"need more than {held_out} steps, and the longest series ({name!r} ...) has {longest}. {fix}")
    if not short:
        return [], {}
    shown = ", ".join(f"{name!r} ({n} steps)" for name, n in short[:5])
    return [f"{len(short)} series too short for {windows} window(s) of {prediction_length} steps, left out of the "
            f"backtest: {shown}{', ...' if len(short) > 5 else ''}"], {"series too short for the backtest": len(short)}
