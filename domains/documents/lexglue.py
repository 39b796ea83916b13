"""Loaders for two LexGLUE tasks in their published column layouts.

* ECtHR (A: violated articles, B: allegedly violated articles): ``text`` is a
  list of paragraphs (the case facts), ``labels`` a list of articles, stored
  either as names (``"3"``, ``"P1-1"``) or as ClassLabel ids into
  :data:`ECTHR_ARTICLES`. Multi-label; a case may have no label.
* SCOTUS: ``text`` a string (the opinion), ``label`` an int id of the issue
  area, ids 0..13 for the areas named ``"1"``..``"14"`` (:data:`SCOTUS_ISSUE_AREAS`).

Each loader takes a local file (.jsonl / .parquet / .csv), a ``save_to_disk``
folder, or the hub name ``"lex_glue"`` (``coastalcph/lex_glue``; online only).
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from .data import DocumentTable, read_hf_dataset, read_table

ECTHR_ARTICLES = ["2", "3", "5", "6", "8", "9", "10", "11", "14", "P1-1"]
SCOTUS_ISSUE_AREAS = [str(i) for i in range(1, 15)]
SCOTUS_AREA_TITLES = [
    "Criminal Procedure", "Civil Rights", "First Amendment", "Due Process", "Privacy", "Attorneys",
    "Unions", "Economic Activity", "Judicial Power", "Federalism", "Interstate Relations",
    "Federal Taxation", "Miscellaneous", "Private Action",
]
HUB_NAMES = ("lex_glue", "coastalcph/lex_glue")
FILE_SUFFIXES = (".jsonl", ".ndjson", ".parquet", ".csv")


def _load(source, config: str, split: str, label_column: str, empty: str) -> DocumentTable:
    if isinstance(source, (str, Path)) and Path(source).suffix.lower() in FILE_SUFFIXES:
        return read_table(source, text_column="text", label_column=label_column, empty=empty)
    name = "coastalcph/lex_glue" if str(source) in HUB_NAMES else source
    return read_hf_dataset(name, split=split, config=config, text_column="text",
                           label_column=label_column, empty=empty)


def _ids_to_names(table: DocumentTable, names: list[str], multi: bool) -> DocumentTable:
    dtype = table.frame.schema["label"]
    inner = dtype.inner if multi else dtype
    if not inner.is_integer():
        return table
    bad = table.frame.select((pl.col("label").explode() if multi else pl.col("label")).alias("v")) \
        .filter((pl.col("v") < 0) | (pl.col("v") >= len(names)))
    if bad.height:
        raise ValueError(f"{table.report.source}: label ids {sorted(set(bad['v'].to_list()))[:10]} are outside "
                         f"0..{len(names) - 1} ({len(names)} classes: {names})")
    mapping = dict(enumerate(names))
    expr = (pl.col("label").list.eval(pl.element().replace_strict(mapping, return_dtype=pl.String)) if multi
            else pl.col("label").replace_strict(mapping, return_dtype=pl.String))
    return DocumentTable(table.frame.with_columns(expr), table.multi_label, table.report)


def read_ecthr(source: str | Path, variant: str = "a", split: str = "train", empty: str = "drop") -> DocumentTable:
    """ECtHR task A or B: paragraphs joined with blank lines; labels as article names.

    A table whose ``labels`` are not lists is refused (that is not the ECtHR layout).
    """
    if variant not in ("a", "b"):
        raise ValueError(f"variant={variant!r} is not 'a' or 'b'")
    table = _load(source, f"ecthr_{variant}", split, "labels", empty)
    if not table.multi_label:
        raise ValueError(f"{table.report.source}: ECtHR's 'labels' must be lists of articles, got "
                         f"{table.frame.schema['label']}")
    table = _ids_to_names(table, ECTHR_ARTICLES, multi=True)
    unknown = set(table.frame["label"].explode().drop_nulls().to_list()) - set(ECTHR_ARTICLES)
    if unknown:
        raise ValueError(f"{table.report.source}: articles {sorted(unknown)} are not ECtHR's {ECTHR_ARTICLES}")
    return table


def read_scotus(source: str | Path, split: str = "train", empty: str = "drop") -> DocumentTable:
    """SCOTUS: one issue area per opinion, as its name ``"1"``..``"14"``."""
    table = _load(source, "scotus", split, "label", empty)
    if table.multi_label:
        raise ValueError(f"{table.report.source}: SCOTUS's 'label' must be one id per opinion, got lists")
    return _ids_to_names(table, SCOTUS_ISSUE_AREAS, multi=False)
