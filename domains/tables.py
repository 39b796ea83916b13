"""A user's table files read the same way in every domain, with errors that name the file and row.

``read_table`` takes a file, a folder (every table file in it), a glob, or a list of those, in
CSV / TSV / parquet / JSON lines / JSON, each optionally gzip-compressed. CSV and TSV columns
come back as strings so that a column's type is decided from the whole file by the converters
below (``to_numbers``, ``to_labels``), never guessed from its first rows. Two extra columns,
:data:`FILE` and :data:`ROW`, say where each row came from (the 1-based data row of a CSV, the
line of a JSON-lines file, the record of a JSON array) so that every later error can name it.

Everything a converter changes or counts is returned to the caller for the run's report;
nothing is dropped silently.
"""
from __future__ import annotations

import csv
import difflib
import glob
import gzip
import io
import json
import math
import re
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import polars as pl

FILE = "_file"
ROW = "_row"
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".parquet", ".pq", ".jsonl", ".ndjson", ".json")
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "nat", "#n/a", "-"})


class TableError(ValueError):
    """A table that cannot be read or converted; the message names the file (and row / column),
    says what is wrong and how to fix it."""


# -- finding files -------------------------------------------------------------------------------

def table_kind(path: Path) -> str:
    """csv | tsv | parquet | jsonl | json, from the suffix (a trailing ``.gz`` is looked through)."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix, kind in ((".csv", "csv"), (".tsv", "tsv"), (".tab", "tsv"), (".parquet", "parquet"),
                         (".pq", "parquet"), (".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json")):
        if name.endswith(suffix):
            return kind
    raise TableError(f"{path}: unknown table format (the name should end in one of "
                     f"{', '.join(TABLE_SUFFIXES)}, optionally followed by .gz)")


def is_table_file(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return path.is_file() and name.endswith(TABLE_SUFFIXES)


def find_files(path: str | Path | Sequence[str | Path], search_dirs: Iterable[str | Path] = (),
               key: str = "data.path") -> list[Path]:
    """The files that ``path`` names: a file, a folder (its table files, sorted), a glob, or a list of
    those. A relative path is tried in the working folder, then in each of ``search_dirs``. ``key``: the
    recipe key that gave ``path``, named when nothing is found."""
    if isinstance(path, (list, tuple)):
        out: list[Path] = []
        for p in path:
            out.extend(f for f in find_files(p, search_dirs, key) if f not in out)
        return out
    text = str(path)
    bases = [Path(".")] + [Path(d) for d in search_dirs]
    if Path(text).is_absolute():
        bases = [Path("/")]
    tried = []
    for base in bases:
        candidate = base / text
        tried.append(str(candidate))
        if any(ch in text for ch in "*?["):
            hits = sorted(Path(p) for p in glob.glob(str(candidate), recursive=True) if Path(p).is_file())
            if hits:
                return hits
        elif candidate.is_file():
            return [candidate]
        elif candidate.is_dir():
            hits = sorted(p for p in candidate.iterdir() if is_table_file(p))
            if not hits:
                raise TableError(f"folder {candidate} holds no table file (looked for names ending in "
                                 f"{', '.join(TABLE_SUFFIXES)}, optionally .gz)")
            return hits
    raise TableError(f"data file {text!r} not found (looked for: {', '.join(dict.fromkeys(tried))}); "
                     f"check {key} (a file, a folder or a glob)")


# -- reading -------------------------------------------------------------------------------------

def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it ends in .gz; a truncated or corrupt archive is a TableError."""
    data = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as err:
            raise TableError(f"{path}: the gzip archive is truncated or corrupt ({err}); "
                             "download or compress the file again") from None
    return data


def decode(data: bytes, path: Path, encoding: str) -> str:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise TableError(f"{path}, line {line}: bytes that are not {encoding} ({data[err.start:err.start + 4]!r}); "
                         "save the file as UTF-8, or set data.encoding to its encoding (e.g. data.encoding=latin-1)"
                         ) from None
    except LookupError:
        raise TableError(f"data.encoding={encoding!r} is not an encoding Python knows (e.g. utf-8, latin-1, cp1252)"
                         ) from None
    return text.removeprefix("\ufeff")


def read_delimited(path: Path, text: str, delimiter: str) -> pl.DataFrame:
    # a long document is one field: csv's default limit (128 KiB per field) would refuse it, so a field may be
    # as long as the file itself
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(rows)
    except StopIteration:
        raise TableError(f"{path} is empty: it needs a header row naming the columns, then one row per example"
                         ) from None
    except csv.Error as err:
        raise TableError(f"{path}, line 1: {err}") from None
    header = [h.strip() for h in header]
    if not any(header):
        raise TableError(f"{path}: the first line is empty; it must name the columns")
    other = other_separator(header, delimiter)
    if other:
        names = {"\t": "tabs", ";": "';'", "|": "'|'", ",": "commas"}
        fix = ("name the file .tsv (tab-separated)" if other == "\t" else
               "save it with commas between fields and decimal points in numbers (in a spreadsheet: CSV, '.' as the "
               "decimal separator)" if delimiter == "," else "save it with tabs between fields, or name it .csv")
        raise TableError(f"{path}, line 1: the header is one column ({header[0]!r}) whose names are separated by "
                         f"{names[other]}, but this file is read with {names[delimiter]} between fields; {fix}")
    seen = set()
    for h in header:
        if not h:
            raise TableError(f"{path}: the header has an empty column name ({header}); name every column")
        if h in seen:
            raise TableError(f"{path}: the header names column {h!r} twice; give the columns distinct names")
        seen.add(h)
    columns: list[list[str]] = [[] for _ in header]
    row_numbers = []
    try:
        for n, row in enumerate(rows, start=1):
            if not row or (len(row) == 1 and not row[0].strip() and len(header) > 1):
                continue  # a blank line
            if len(row) != len(header):
                raise TableError(f"{path}, data row {n} (line {rows.line_num}): {len(row)} fields where the header "
                                 f"has {len(header)} ({', '.join(header)}); quote fields that contain "
                                 f"{'a tab' if delimiter == chr(9) else 'commas'} and check the row")
            for col, value in zip(columns, row):
                col.append(value)
            row_numbers.append(n)
    except csv.Error as err:
        raise TableError(f"{path}, line {rows.line_num}: {err}; check the quoting of that row") from None
    if not row_numbers:
        raise TableError(f"{path} has a header ({', '.join(header)}) but no rows")
    frame = pl.DataFrame({h: pl.Series(h, col, dtype=pl.Utf8) for h, col in zip(header, columns)})
    return frame.with_columns(pl.Series(ROW, row_numbers, dtype=pl.Int64))


def other_separator(header: list[str], delimiter: str) -> str | None:
    """The separator a one-column header seems to use instead of ``delimiter`` (``;`` in a CSV written with
    decimal commas, a tab in a .csv), or None."""
    if len(header) != 1:
        return None
    for sep in (";", "\t", "|", ","):
        if sep != delimiter and len([part for part in header[0].split(sep) if part.strip()]) >= 2:
            return sep
    return None


def records_frame(path: Path, records: list, numbers: list[int], unit: str) -> pl.DataFrame:
    if not records:
        raise TableError(f"{path} holds no records: it needs one JSON object per example")
    for rec, n in zip(records, numbers):
        if not isinstance(rec, dict):
            raise TableError(f"{path}, {unit} {n}: expected an object of fields ({{\"text\": ..., \"label\": ...}}), "
                             f"got {type(rec).__name__}")
    try:
        try:
            frame = pl.DataFrame(records, infer_schema_length=None)
        except Exception:  # a field mixing types ([1.5, 2] or "NaN" beside numbers in a list): keep it, as text
            frame = pl.DataFrame(records, infer_schema_length=None, strict=False)  # where needed, for the converters
    except Exception as err:  # polars reports mixed types per column, without the row
        clash = mixed_field(records, numbers, unit)
        detail = clash or f"({str(err).splitlines()[0]})"
        raise TableError(f"{path}{', ' if clash else ': the records do not have one type per field '}{detail}; "
                         "give each field the same type in every record") from None
    return frame.with_columns(pl.Series(ROW, numbers, dtype=pl.Int64))


def mixed_field(records: list[dict], numbers: list[int], unit: str) -> str | None:
    """'line 7: field 'text' is a list, but line 1 has a str' for the first field whose records hold two kinds
    of value (a number and a bool are their own kinds; int and float are one); None when none does."""
    def kind(value) -> str:
        if isinstance(value, bool):
            return "bool"
        return "number" if isinstance(value, (int, float)) else type(value).__name__

    first: dict[str, tuple[str, int]] = {}
    for rec, n in zip(records, numbers):
        for name, value in rec.items():
            if value is None:
                continue
            seen = first.setdefault(name, (kind(value), n))
            if seen[0] != kind(value):
                return (f"{unit} {n}: field {name!r} is a {kind(value)}, but {unit} {seen[1]} has a {seen[0]} "
                        "there")
    return None


def keyed_records(path: Path, whole: dict) -> pl.DataFrame:
    """A JSON object of objects ({"N0001": {...}, ...}, as R's jsonlite and the M1 / M3 competition files write
    them): one record per entry, its key in an ``id`` column (``key`` when the records have an ``id``). Fields
    that every record holds as a one-element list of a scalar (jsonlite's boxed scalars, ``"period":
    ["YEARLY"]``) become that scalar."""
    records = [dict(v) for v in whole.values()]
    key = "key" if any("id" in r for r in records) else "id"
    fields = {f for r in records for f in r}
    boxed = {f for f in fields
             if all(isinstance(r.get(f), list) and len(r[f]) == 1 and not isinstance(r[f][0], (list, dict))
                    for r in records)}
    for k, r in zip(whole, records):
        for f in boxed:
            r[f] = r[f][0]
        r[key] = k
    return records_frame(path, records, list(range(1, len(records) + 1)), "record")


def read_json(path: Path, text: str, kind: str) -> pl.DataFrame:
    stripped = text.lstrip()
    if not stripped:
        raise TableError(f"{path} is empty: it needs one JSON object per line (JSON lines) or an array of objects "
                         "(JSON), one per example")
    if kind == "json" and stripped[0] == "[":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise TableError(f"{path}, line {err.lineno}: not valid JSON ({err.msg})") from None
        return records_frame(path, records, list(range(1, len(records) + 1)), "record")
    if kind == "json" and stripped[0] == "{":
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # JSON lines in a .json file
        if isinstance(whole, dict) and whole and all(isinstance(v, dict) for v in whole.values()):
            return keyed_records(path, whole)
        if isinstance(whole, dict):
            return records_frame(path, [whole], [1], "record")
    records, numbers = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise TableError(f"{path}, line {n}: not valid JSON ({err.msg} at column {err.colno}); "
                             "JSON lines need one complete object per line") from None
        numbers.append(n)
    return records_frame(path, records, numbers, "line")


def read_one(path: Path, encoding: str = "utf-8") -> pl.DataFrame:
    kind = table_kind(path)
    if kind == "parquet":
        try:
            frame = pl.read_parquet(io.BytesIO(read_bytes(path)))
        except TableError:
            raise
        except Exception as err:
            raise TableError(f"{path}: not a readable parquet file ({err})") from None
        if frame.height == 0:
            raise TableError(f"{path} has no rows")
        frame = frame.with_columns(pl.Series(ROW, range(1, frame.height + 1), dtype=pl.Int64))
    else:
        text = decode(read_bytes(path), path, encoding)
        if kind in ("json", "jsonl"):
            frame = read_json(path, text, kind)
        else:
            frame = read_delimited(path, text, "\t" if kind == "tsv" else ",")
    for reserved in (FILE,):
        if reserved in frame.columns:
            raise TableError(f"{path}: the column name {reserved!r} is reserved; rename it")
    return frame.with_columns(pl.lit(path.name).alias(FILE))


def read_table(path: str | Path | Sequence[str | Path], *, encoding: str = "utf-8",
               search_dirs: Iterable[str | Path] = (), key: str = "data.path") -> pl.DataFrame:
    """Every row of the files ``path`` names (see :func:`find_files`), with :data:`FILE` and :data:`ROW`.
    Several files must have the same columns."""
    files = find_files(path, search_dirs, key)
    frames = [read_one(f, encoding) for f in files]
    first = frames[0]
    for f, frame in zip(files[1:], frames[1:]):
        if set(frame.columns) != set(first.columns):
            raise TableError(f"{f} has columns {sorted(set(frame.columns) - {FILE, ROW})} but {files[0]} has "
                             f"{sorted(set(first.columns) - {FILE, ROW})}; files read together need the same columns")
    if len(frames) == 1:
        return first
    try:
        return pl.concat([fr.select(first.columns) for fr in frames], how="vertical_relaxed")
    except Exception as err:
        raise TableError(f"the files {', '.join(map(str, files))} cannot be stacked: a column has different "
                         f"types in different files ({err})") from None


# -- columns -------------------------------------------------------------------------------------

def where_row(df: pl.DataFrame, i: int) -> str:
    """``file, row n`` of the i-th row of ``df``."""
    file = df[FILE][i] if FILE in df.columns else "input"
    row = df[ROW][i] if ROW in df.columns else i + 1
    return f"{file}, row {row}"


def require_columns(df: pl.DataFrame, columns: dict[str, str | None], where: str) -> None:
    """Each ``{recipe key: column}`` (None: not asked for) must be a column of ``df``."""
    present = [c for c in df.columns if c not in (FILE, ROW)]
    for key, col in columns.items():
        if col is not None and col not in df.columns:
            close = closest_column(col, present)
            fix = f"Did you mean {close!r}? Set {key}={close}" if close else f"Set {key}=<one of them>"
            raise TableError(f"{where}: no column {col!r} ({key}); its columns are {', '.join(present)}. {fix}")


def closest_column(name: str, present: list[str]) -> str | None:
    """The column ``name`` most likely means (another case, a typo), or None."""
    by_case = [c for c in present if c.lower() == str(name).lower()]
    if by_case:
        return by_case[0]
    close = difflib.get_close_matches(str(name), present, n=1, cutoff=0.75)
    return close[0] if close else None


def to_numbers(df: pl.DataFrame, column: str, *, where: str, allow_missing: bool = True,
               allow_inf: bool = False) -> tuple[np.ndarray, int]:
    """The column as float64 and the number of missing values (NA, empty, ... -> NaN). Text that is not a
    number, inf (unless allowed) or a missing value (unless allowed) is a TableError naming the row.

    Column-wise (polars), so a file of millions of rows converts in well under a second; the rows are
    looked at one by one only to name the first bad one."""
    series = df[column]
    if series.dtype == pl.Boolean:
        first = next((i for i, v in enumerate(series.to_list()) if v is not None), 0)
        raise TableError(f"{where_row(df, first)}: column {column!r} holds {series[first]!r}, not a number")
    if series.dtype.is_numeric():
        values = series.cast(pl.Float64).fill_null(float("nan")).to_numpy().astype(np.float64, copy=True)
        text = None
    else:
        text = series.cast(pl.Utf8).str.strip_chars()
        blank = text.is_null() | text.str.to_lowercase().is_in(sorted(MISSING))
        parsed = text.cast(pl.Float64, strict=False)
        bad = (~blank & parsed.is_null()).to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise TableError(f"{where_row(df, i)}: column {column!r} holds {series[i]!r}, not a number ({where}); "
                             f"{number_fix(str(series[i]).strip())}")
        values = parsed.fill_null(float("nan")).to_numpy().astype(np.float64, copy=True)
        values[blank.to_numpy()] = np.nan
    nan = np.isnan(values)
    if nan.any() and not allow_missing:
        i = int(np.argmax(nan))
        raise TableError(f"{where_row(df, i)}: column {column!r} is empty / missing ({series[i]!r}); every row needs "
                         "a value here")
    if not allow_inf:
        inf = np.isinf(values)
        if inf.any():
            i = int(np.argmax(inf))
            raise TableError(f"{where_row(df, i)}: column {column!r} holds {series[i]!r} (infinite); fix the value or "
                             "mark it missing (empty or NA)")
    return values, int(nan.sum())


def number_fix(text: str) -> str:
    """How to fix a value that is not a number; a decimal comma or thousands separator gets its own advice."""
    if re.fullmatch(r"[-+]?[\d.,' ]*\d,\d[\d.,' ]*", text):
        example = text.replace(",", ".") if re.fullmatch(r"[-+]?\d+,\d+", text) else "1234.5"
        return (f"a decimal comma or a thousands separator? Write numbers with a decimal point and no separators "
                f"({example}); in a spreadsheet, export CSV with '.' as the decimal separator")
    return "fix the value or mark it missing (empty or NA)"


def canonical_number(text: str) -> str | None:
    """'0.0' -> '0', '1e0' -> '1', '2.50' -> '2.5'; None when ``text`` is not a finite number."""
    try:
        x = float(text)
    except ValueError:
        return None
    if not math.isfinite(x):
        return None
    return str(int(x)) if x.is_integer() else repr(x)


def to_labels(df: pl.DataFrame, column: str, *, where: str) -> tuple[list[str], list[str]]:
    """Class labels as stripped strings, and notes on what was changed (spaces stripped are counted). Missing
    labels ('', NA, nan, null) are a TableError naming the rows; numeric labels written two ways ('0' and '0.0')
    become one."""
    raw = df[column].to_list()
    labels, empty, spaced = [], [], 0
    for i, v in enumerate(raw):
        text = "" if v is None else (str(v).strip() if not isinstance(v, float) or not math.isnan(v) else "")
        if text.lower() in MISSING:
            empty.append(i)
        spaced += isinstance(v, str) and bool(text) and text != v
        labels.append(text)
    if empty:
        shown = "; ".join(where_row(df, i) for i in empty[:5])
        raise TableError(f"{where}: {len(empty)} row(s) have no label in column {column!r} (e.g. {shown}); "
                         "give every row a label, or remove those rows")
    notes = [f"column {column!r}: {spaced} label(s) with spaces around them, stripped"] if spaced else []
    canon = [canonical_number(t) for t in labels]
    if all(c is not None for c in canon):
        changed = sum(c != t for c, t in zip(canon, labels))
        spellings = {}
        for c, t in zip(canon, labels):
            spellings.setdefault(c, set()).add(t)
        merged = {c: sorted(s) for c, s in spellings.items() if len(s) > 1}
        if changed:
            labels = canon
            notes.append(f"column {column!r}: {changed} numeric label(s) rewritten in one spelling"
                         + (f" ({'; '.join(f'{sorted(v)} -> {k!r}' for k, v in merged.items())})" if merged else ""))
    return labels, notes
