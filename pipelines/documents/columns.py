"""A user's table of documents into the columns the documents pipeline reads: ``text``, ``label``, ``id``.

- text (``data.text_column``): a string, or a list of paragraphs (joined by a blank line). Empty texts
  are dropped and counted (``data.empty_texts=drop``) or an error naming their rows (``error``).
- label (``data.label_column``), the multi-label rule: a label column that holds **lists** (JSON,
  parquet) is multi-label; a string column is multi-label only with ``data.multi_label=true``, its
  labels separated by ``data.label_separator`` (``;``: ``"gpl-2.0;mit"``). In a multi-label row an
  empty list / cell means "no label" (kept, counted); empty parts, duplicates and spaces around labels
  are removed (counted). Single-label: ``domains.tables.to_labels`` (missing labels are an error
  naming the rows; '0' and '0.0' become one label, counted).
- id (``data.id_column``; unset: a column named ``id`` if there is one, else ``file:row`` of the
  source): what ``predictions_test.csv`` names each document by. Duplicated ids are counted.
"""
from __future__ import annotations

import polars as pl

from mambatune.domains import tables
from mambatune.domains.tables import FILE, ROW, TableError

ID = "id"
AUTO_ID_COLUMNS = ("id",)
PARAGRAPH_SEPARATOR = "\n\n"


def document_frame(raw: pl.DataFrame, cfg, where: str) -> tuple[pl.DataFrame, list[str]]:
    """(frame of text, label, id, FILE, ROW and the split / group columns the recipe names, notes)."""
    classify = cfg.task == "classify"
    tables.require_columns(raw, {"data.text_column": cfg.text_column,
                                 "data.label_column": cfg.label_column if classify else None,
                                 "data.id_column": cfg.id_column, "data.split_column": cfg.split_column,
                                 "data.group_column": cfg.group_column}, where)
    notes: list[str] = []
    raw = drop_empty_texts(raw.with_columns(text_column(raw, cfg.text_column, where)), cfg.empty_texts, where, notes)
    columns = [pl.col("__text").alias("text")]
    if classify:
        labels, multi = label_values(raw, cfg, where, notes)
        columns.append(pl.Series("label", labels, dtype=pl.List(pl.String) if multi else pl.String))
    else:
        columns.append(pl.lit(None, dtype=pl.String).alias("label"))
    columns.append(pl.Series(ID, id_values(raw, cfg.id_column, where, notes), dtype=pl.String))
    keep = [c for c in dict.fromkeys([cfg.split_column or "split", cfg.group_column, FILE, ROW])
            if c and c in raw.columns and c not in ("text", "label", ID)]
    return raw.select(*columns, *keep), notes


def text_column(raw: pl.DataFrame, column: str, where: str) -> pl.Expr:
    dtype = raw.schema[column]
    if isinstance(dtype, (pl.List, pl.Array)):
        if dtype.inner not in (pl.String, pl.Null):
            raise TableError(f"{where}: data.text_column {column!r} holds lists of {dtype.inner}, not of text")
        return pl.col(column).list.join(PARAGRAPH_SEPARATOR).alias("__text")
    if dtype not in (pl.String, pl.Null):
        raise TableError(f"{where}: data.text_column {column!r} holds {dtype} values, not text; point "
                         "data.text_column at the column with the documents")
    return pl.col(column).cast(pl.String).alias("__text")


def drop_empty_texts(raw: pl.DataFrame, mode: str, where: str, notes: list[str]) -> pl.DataFrame:
    empty = pl.col("__text").is_null() | (pl.col("__text").str.strip_chars() == "")
    rows = raw.with_row_index("__i").filter(empty)["__i"].to_list()
    if not rows:
        return raw
    shown = "; ".join(tables.where_row(raw, i) for i in rows[:5])
    if mode == "error":
        raise TableError(f"{where}: {len(rows)} empty document(s) ({shown}); remove them, or set "
                         "data.empty_texts=drop to leave them out (counted in the report)")
    if len(rows) == raw.height:
        raise TableError(f"{where}: every document is empty; is data.text_column the column of the texts?")
    notes.append(f"{len(rows)} empty document(s) left out ({shown}{' ...' if len(rows) > 5 else ''})")
    return raw.filter(~empty)


def label_values(raw: pl.DataFrame, cfg, where: str, notes: list[str]) -> tuple[list, bool]:
    column = cfg.label_column
    is_list = isinstance(raw.schema[column], (pl.List, pl.Array))
    multi = cfg.multi_label if cfg.multi_label is not None else is_list
    if is_list and not multi:
        raise TableError(f"{where}: data.label_column {column!r} holds lists of labels but data.multi_label=false; "
                         "set data.multi_label=true (or leave it unset), or give one label per row")
    if not multi:
        labels, label_notes = tables.to_labels(raw, column, where=where)
        notes.extend(label_notes)
        joined = [v for v in labels if cfg.label_separator in v]
        if joined:
            notes.append(f"column {column!r}: {len(joined)} label(s) hold {cfg.label_separator!r} (e.g. "
                         f"{joined[0]!r}), each read as one class; set data.multi_label=true to read them as several "
                         "labels")
        return labels, False
    if not is_list:
        check_separator(raw, column, cfg.label_separator, where)
    return multi_labels(raw, column, cfg.label_separator, is_list, where, notes), True


def check_separator(raw: pl.DataFrame, column: str, separator: str, where: str) -> None:
    """Multi-label text cells whose labels are joined by another separator than ``separator`` would each be one
    label: an error naming the separator they use."""
    values = [str(v) for v in raw[column].to_list() if v is not None]
    if any(separator in v for v in values):
        return
    for other in (";", "|", ",", "/", "+"):
        joined = [v for v in values if other != separator and other in v]
        if joined:
            raise TableError(f"{where}: data.multi_label=true splits the labels of column {column!r} on "
                             f"data.label_separator={separator!r}, which no row holds, but {len(joined)} row(s) hold "
                             f"{other!r} (e.g. {joined[0]!r}); set 'data.label_separator=\"{other}\"' (quoted, as "
                             "YAML reads it)")


def multi_labels(raw: pl.DataFrame, column: str, separator: str, is_list: bool, where: str,
                 notes: list[str]) -> list[list[str]]:
    """Each row's labels as a sorted list of distinct stripped strings (numbers in one spelling)."""
    out, n_none, n_blank_parts, n_dupes, respelled = [], 0, 0, 0, 0
    for value in raw[column].to_list():
        if value is None:
            parts = []
        elif is_list:
            parts = ["" if v is None else str(v) for v in value]
        else:
            parts = str(value).split(separator)
        stripped = [p.strip() for p in parts]
        kept = [p for p in stripped if p]
        n_blank_parts += len(parts) - len(kept) if parts != [""] else 0
        canon = [tables.canonical_number(p) or p for p in kept]
        respelled += sum(c != p for c, p in zip(canon, kept))
        distinct = sorted(set(canon))
        n_dupes += len(canon) - len(distinct)
        n_none += not distinct
        out.append(distinct)
    if all(not labels for labels in out):
        raise TableError(f"{where}: no row has a label in data.label_column {column!r}")
    how = "lists" if is_list else f"'{separator}'-separated labels (data.multi_label=true)"
    n_multi = sum(len(v) > 1 for v in out)
    notes.append(f"multi-label from {how} in column {column!r}: {n_multi} document(s) with several labels, "
                 f"{n_none} with none")
    for n, what in ((n_blank_parts, "empty label part(s) removed"),
                    (n_dupes, "repeated label(s) in a row removed"),
                    (respelled, "numeric label(s) rewritten in one spelling ('1.0' -> '1')")):
        if n:
            notes.append(f"column {column!r}: {n} {what}")
    return out


def id_values(raw: pl.DataFrame, id_column: str | None, where: str, notes: list[str]) -> list[str]:
    column = id_column or next((c for c in AUTO_ID_COLUMNS if c in raw.columns), None)
    if column is None:
        files = raw[FILE].unique().to_list() if FILE in raw.columns else []
        rows = raw[ROW].to_list() if ROW in raw.columns else list(range(1, raw.height + 1))
        if len(files) > 1:
            return [f"{f}:{r}" for f, r in zip(raw[FILE].to_list(), rows)]
        return [str(r) for r in rows]
    values = ["" if v is None else str(v).strip() for v in raw[column].to_list()]
    blank = [i for i, v in enumerate(values) if not v]
    if blank:
        shown = "; ".join(tables.where_row(raw, i) for i in blank[:5])
        raise TableError(f"{where}: {len(blank)} row(s) have no id in column {column!r} ({shown}); give every row an "
                         "id" + ("" if id_column else ", or set data.id_column to another column"))
    n_dupes = len(values) - len(set(values))
    if n_dupes:
        notes.append(f"column {column!r}: {n_dupes} repeated id(s) (ids name documents in predictions_test.csv)")
    return values
