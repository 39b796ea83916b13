"""Time-series inputs → one GluonTS-compatible representation.

Every reader returns a :class:`SeriesCollection`: a list of GluonTS data entries,
each a dict with

- ``start``: ``pd.Period`` of the first step, at the collection's frequency
- ``target``: ``np.float32`` array of shape ``(T,)``; missing steps are NaN
- ``observed_values``: ``np.float32`` array ``(T,)``, 1 where ``target`` is observed
- ``item_id``: ``str``
- ``feat_dynamic_real``: ``np.float32`` array ``(num_dynamic, T)`` (only when given)
- ``feat_static_cat``: ``np.int64`` array ``(num_static,)`` (only when given)

so a collection can be passed to anything in GluonTS that takes a ``Dataset``
(``split``, estimators, predictors, evaluation).

Accepted inputs: GluonTS datasets (``ListDataset``, ``PandasDataset``,
``FileDataset`` over JSON lines or parquet, or any iterable of entries) and
polars long-format frames (one row per item and timestamp).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from .frequency import FrequencyError, normalise_freq, step_seconds

RESAMPLE_METHODS = ("mean", "sum", "last", "first", "max", "min")


class TimeSeriesDataError(ValueError):
    """Input series that cannot be used as given; the message says how to fix them."""


@dataclass
class SeriesCollection:
    """A list of GluonTS data entries sharing one frequency (see module docstring).

    ``skipped`` counts series left out while building it, by reason.
    ``static_cardinalities`` gives the number of categories of each ``feat_static_cat``
    column and ``static_categories`` the original values behind each code.
    """

    entries: list[dict]
    freq: str
    skipped: dict[str, int] = field(default_factory=dict)
    static_cardinalities: list[int] = field(default_factory=list)
    static_categories: list[list] = field(default_factory=list)
    dynamic_names: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        return self.entries[index]

    def lengths(self) -> np.ndarray:
        return np.array([len(e["target"]) for e in self.entries], dtype=np.int64)

    def summary(self) -> str:
        lengths = self.lengths()
        missing = sum(int((e["observed_values"] == 0).sum()) for e in self.entries)
        text = (f"{len(self)} series at frequency {self.freq!r}, length "
                f"{lengths.min() if len(lengths) else 0}–{lengths.max() if len(lengths) else 0} "
                f"(total {int(lengths.sum())} steps, {missing} missing)")
        if self.skipped:
            text += "; skipped: " + ", ".join(f"{n} {why}" for why, n in self.skipped.items())
        return text


def same_frequency(a: str, b: str) -> bool:
    """True when two pandas frequency strings name the same step ('h' == '1h', 'ME' == 'M')."""
    return _canonical_freq(a) == _canonical_freq(b)


def check_same_frequency(train: SeriesCollection, test: SeriesCollection) -> None:
    """Raise :class:`TimeSeriesDataError` when ``train`` and ``test`` differ in frequency."""
    if not same_frequency(train.freq, test.freq):
        raise TimeSeriesDataError(
            f"frequency mismatch: the training series are at {train.freq!r} but the test series at "
            f"{test.freq!r}; read both with the same freq=, or resample one of them "
            f"(from_polars(..., freq={train.freq!r}, resample='mean'))")


def _canonical_freq(freq: str) -> str:
    """The pandas *period* alias for ``freq`` ('ME' → 'M', 'QS-JAN' → 'Q-DEC', '1h' → 'h'), the same under
    pandas 2 and 3 (see :mod:`.frequency`)."""
    try:
        return normalise_freq(freq)
    except FrequencyError as err:
        raise TimeSeriesDataError(str(err)) from None


def _entry(start: pd.Period, target: np.ndarray, item_id: str, dynamic: np.ndarray | None,
           static: np.ndarray | None) -> dict:
    target = np.asarray(target, dtype=np.float32)
    if target.ndim != 1:
        raise TimeSeriesDataError(f"series {item_id!r}: target has shape {target.shape}; only univariate "
                                  f"targets (T,) are supported — give each channel its own item_id")
    entry = {"start": start, "target": target, "item_id": item_id,
             "observed_values": (~np.isnan(target)).astype(np.float32)}
    if dynamic is not None:
        dynamic = np.asarray(dynamic, dtype=np.float32)
        if dynamic.ndim == 1:
            dynamic = dynamic[None]
        if dynamic.shape[1] != len(target):
            raise TimeSeriesDataError(
                f"series {item_id!r}: feat_dynamic_real covers {dynamic.shape[1]} steps but the target "
                f"{len(target)}; covariates must have one value per target step")
        entry["feat_dynamic_real"] = dynamic
    if static is not None:
        entry["feat_static_cat"] = np.asarray(static, dtype=np.int64).reshape(-1)
    return entry


def from_gluonts(dataset: Iterable[dict], freq: str | None = None, min_length: int = 1) -> SeriesCollection:
    """Read a GluonTS dataset (or any iterable of entries with ``start`` and ``target``).

    ``freq``: the expected frequency; when given, entries at another frequency raise.
    When omitted it is taken from the first entry's ``start``. Series shorter than
    ``min_length`` are skipped and counted in ``skipped``.
    """
    entries, skipped = [], {}
    expected = _canonical_freq(freq) if freq is not None else None
    for i, raw in enumerate(dataset):
        if "target" not in raw or "start" not in raw:
            raise TimeSeriesDataError(f"entry {i} has fields {sorted(raw)}; a GluonTS entry needs "
                                      f"'start' and 'target'")
        start = raw["start"]
        if not isinstance(start, pd.Period):
            if freq is None:
                raise TimeSeriesDataError(f"entry {i}: start {start!r} carries no frequency; pass freq=")
            start = pd.Period(start, freq=expected)
        if expected is None:
            expected = start.freqstr
        elif not same_frequency(start.freqstr, expected):
            raise TimeSeriesDataError(
                f"frequency mismatch: entry {i} ({raw.get('item_id', i)!r}) is at {start.freqstr!r} "
                f"but {expected!r} was expected; read each frequency as its own collection")
        item_id = str(raw.get("item_id", i))
        target = np.asarray(raw["target"], dtype=np.float32)
        if target.ndim == 1 and len(target) < min_length:
            skipped["shorter than min_length"] = skipped.get("shorter than min_length", 0) + 1
            continue
        static = raw.get("feat_static_cat")
        entries.append(_entry(start, target, item_id, raw.get("feat_dynamic_real"),
                              None if static is None else np.asarray(static)))
    if expected is None:
        raise TimeSeriesDataError("the dataset is empty: no entries to read")
    return SeriesCollection(entries, expected, skipped)


def read_file(path: str | Path, freq: str, min_length: int = 1) -> SeriesCollection:
    """Read JSON lines (``.json``/``.jsonl``, optionally ``.gz``) or parquet files through
    GluonTS' ``FileDataset``: one entry per line/row with ``start`` and ``target``.
    ``path`` may be a file or a folder of such files."""
    from gluonts.dataset.common import FileDataset

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    return from_gluonts(FileDataset(path, freq=freq), freq=freq, min_length=min_length)


def from_polars(frame, freq: str | None = None, *, item_id: str = "item_id", timestamp: str = "timestamp",
                target: str = "target", dynamic_real: Sequence[str] = (), static_cat: Sequence[str] = (),
                resample: str | None = None, min_length: int = 1,
                static_categories: Sequence[Sequence] | None = None) -> SeriesCollection:
    """Read a polars long-format frame: one row per (``item_id``, ``timestamp``).

    - ``freq``: pandas alias ('h', 'D', 'M', ...); inferred from the timestamps when omitted.
    - Timestamps must be sorted within each item and unique, and fall on the
      frequency's grid. Gaps on the grid become NaN targets (observed = 0).
    - ``resample``: one of ``RESAMPLE_METHODS``; instead of raising on unsorted,
      duplicate or off-grid timestamps, bucket every row into its period and
      aggregate the bucket (NaN-aware) with that method.
    - ``dynamic_real``: numeric covariate columns (missing values stay NaN);
      ``static_cat``: columns constant per item, encoded as integer codes (in order of first
      appearance, or by position in ``static_categories``, one list per column, e.g. a training
      collection's: a value not in its list raises).
    - Series shorter than ``min_length`` are skipped and counted.
    """
    import polars as pl

    if resample is not None and resample not in RESAMPLE_METHODS:
        raise TimeSeriesDataError(f"resample={resample!r}; choose one of {RESAMPLE_METHODS} or None")
    needed = [item_id, timestamp, target, *dynamic_real, *static_cat]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise TimeSeriesDataError(f"columns {missing} not in the frame (it has {frame.columns}); name them "
                                  f"with item_id=, timestamp=, target=, dynamic_real=, static_cat=")
    if frame.height == 0:
        raise TimeSeriesDataError("the frame is empty: no rows to read")
    if not (frame[timestamp].dtype == pl.Date or isinstance(frame[timestamp].dtype, pl.Datetime)):
        raise TimeSeriesDataError(f"column {timestamp!r} has type {frame[timestamp].dtype}; parse it first, "
                                  f"e.g. frame.with_columns(pl.col({timestamp!r}).str.to_datetime())")
    if frame[timestamp].null_count():
        raise TimeSeriesDataError(f"column {timestamp!r} has {frame[timestamp].null_count()} null timestamps; "
                                  f"drop those rows first")

    parts = frame.partition_by(item_id, maintain_order=True)
    if freq is None:
        freq = _infer_freq(parts, item_id, timestamp)
    freq = _canonical_freq(freq)

    if static_categories is not None and len(static_categories) != len(static_cat):
        raise TimeSeriesDataError(f"static_categories gives {len(static_categories)} lists for {len(static_cat)} "
                                  "static columns")
    codes = [{} for _ in static_cat] if static_categories is None else \
        [{value: i for i, value in enumerate(values)} for values in static_categories]
    entries, skipped = [], {}
    for part in parts:
        name = str(part[item_id][0])
        stamps = pd.DatetimeIndex(part[timestamp].to_numpy())
        values = np.column_stack([part[c].cast(pl.Float64).to_numpy() for c in (target, *dynamic_real)])
        periods = stamps.to_period(freq)
        if resample is None:
            _check_timestamps(name, stamps, periods, freq)
        else:
            order = np.argsort(periods.asi8, kind="stable")
            periods, values = periods[order], values[order]
            stamps = stamps[order]
        ordinals = periods.asi8 - periods.asi8[0]
        length = int(ordinals[-1]) + 1
        if length < min_length:
            skipped["shorter than min_length"] = skipped.get("shorter than min_length", 0) + 1
            continue
        grid = np.full((length, values.shape[1]), np.nan)
        if resample is None:
            grid[ordinals] = values
        else:
            grid = _aggregate(ordinals, values, length, resample)
        static = None
        if static_cat:
            static = []
            for j, col in enumerate(static_cat):
                uniq = part[col].unique()
                if len(uniq) != 1:
                    raise TimeSeriesDataError(f"static column {col!r} takes {len(uniq)} values within item "
                                              f"{name!r}; a static covariate must be constant per item")
                value = uniq[0]
                if static_categories is not None and value not in codes[j]:
                    raise TimeSeriesDataError(f"item {name!r}: static column {col!r} is {value!r}, a category not seen "
                                              f"in training (known: {list(codes[j])[:10]})")
                static.append(codes[j].setdefault(value, len(codes[j])))
        dynamic = grid[:, 1:].T if dynamic_real else None
        entries.append(_entry(periods[0], grid[:, 0], name, dynamic, None if static is None else np.array(static)))
    return SeriesCollection(entries, freq, skipped,
                            static_cardinalities=[len(c) for c in codes],
                            static_categories=[list(c) for c in codes], dynamic_names=list(dynamic_real))


def _infer_freq(parts, item_id: str, timestamp: str) -> str:
    for part in parts:
        stamps = pd.DatetimeIndex(part[timestamp].to_numpy())
        if len(stamps) >= 3 and stamps.is_monotonic_increasing and stamps.is_unique:
            inferred = pd.infer_freq(stamps)
            if inferred is not None:
                return inferred
    raise TimeSeriesDataError(
        "could not infer the frequency: no item has 3 or more sorted, unique, evenly spaced timestamps; "
        "pass freq= (e.g. 'h', 'D', 'M'), and resample= if the timestamps are irregular")


def _check_timestamps(name: str, stamps: pd.DatetimeIndex, periods: pd.PeriodIndex, freq: str) -> None:
    fix = "sort the frame with frame.sort(['item_id', 'timestamp']) or pass resample='mean'"
    if not stamps.is_monotonic_increasing:
        bad = int(np.argmax(np.diff(stamps.asi8) < 0)) + 1
        raise TimeSeriesDataError(f"item {name!r}: timestamps are not sorted (row {bad}: {stamps[bad]} comes "
                                  f"after {stamps[bad - 1]}); {fix}")
    if not stamps.is_unique:
        dup = stamps[stamps.duplicated()][0]
        raise TimeSeriesDataError(f"item {name!r}: duplicate timestamp {dup}; drop duplicates with "
                                  f"frame.unique(['item_id', 'timestamp']) or aggregate them with resample='mean'")
    on_start = periods.to_timestamp(how="start") == stamps
    on_end = periods.to_timestamp(how="end").normalize() == stamps
    # a week, month, quarter or year is one step wherever in it the row is stamped (sales of March on the 28th)
    calendar = step_seconds(freq) is None
    if not periods.is_unique or not (calendar or on_start.all() or on_end.all()):
        fix = (f"set the right frequency (data.freq, or freq=), or aggregate the rows of each {freq!r} period "
               "(data.resample=mean, or resample='mean')")
        if not (calendar or on_start.all() or on_end.all()):
            raise TimeSeriesDataError(f"item {name!r}: irregular timestamps: {stamps[~on_start][0]} is not on the "
                                      f"{freq!r} grid; {fix}")
        raise TimeSeriesDataError(f"item {name!r}: two rows fall in the {freq!r} period of "
                                  f"{stamps[periods.duplicated()][0]}; {fix}")


def _aggregate(ordinals: np.ndarray, values: np.ndarray, length: int, method: str) -> np.ndarray:
    grid = np.full((length, values.shape[1]), np.nan)
    bounds = np.flatnonzero(np.diff(ordinals)) + 1
    for chunk_idx, rows in zip(np.split(ordinals, bounds), np.split(values, bounds)):
        with np.errstate(all="ignore"):
            observed = [rows[~np.isnan(rows[:, j]), j] for j in range(rows.shape[1])]
            grid[chunk_idx[0]] = [_reduce(v, method) for v in observed]
    return grid


def _reduce(values: np.ndarray, method: str) -> float:
    if len(values) == 0:
        return np.nan
    return {"mean": np.mean, "sum": np.sum, "last": lambda v: v[-1], "first": lambda v: v[0],
            "max": np.max, "min": np.min}[method](values)


def to_gluonts(collection: SeriesCollection):
    """A GluonTS ``ListDataset`` holding the same entries (for APIs that insist on one)."""
    from gluonts.dataset.common import ListDataset

    return ListDataset([dict(e) for e in collection.entries], freq=collection.freq)


def truncate(collection: SeriesCollection, steps: int) -> SeriesCollection:
    """Drop the last ``steps`` steps of every series (e.g. to hold out a test horizon).
    Series left with no steps are skipped and counted."""
    entries, skipped = [], dict(collection.skipped)
    for e in collection.entries:
        if len(e["target"]) <= steps:
            skipped["too short to truncate"] = skipped.get("too short to truncate", 0) + 1
            continue
        cut = dict(e)
        for key in ("target", "observed_values"):
            cut[key] = e[key][:-steps]
        if "feat_dynamic_real" in e:
            cut["feat_dynamic_real"] = e["feat_dynamic_real"][:, :-steps]
        entries.append(cut)
    return SeriesCollection(entries, collection.freq, skipped, collection.static_cardinalities,
                            collection.static_categories, collection.dynamic_names)
