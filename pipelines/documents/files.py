"""A folder of text files labelled by a table: ``data.path=docs/ data.labels_path=labels.csv``.

The table (any format ``domains.tables.read_table`` reads) has one row per document: the file's path
inside the folder (``data.file_column``, default ``file``; ``a.txt`` or ``sub/b.txt``) and its label
(``data.label_column``), and may hold a split, group or id column as a table of texts would. Each named
file is read as text in ``data.encoding``; a named file that does not exist is an error naming the
table row. Text files in the folder that the table does not name are not used, and counted.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from mambatune.domains import tables
from mambatune.domains.tables import TableError

TEXT_SUFFIXES = (".txt", ".text", ".md", ".rst", ".html", ".htm", ".xml", ".license", ".rule")


def find_folder(path: str, search_dirs) -> Path:
    candidates = [Path(path)] if Path(path).is_absolute() else [Path(path)] + [Path(d) / path for d in search_dirs]
    for c in candidates:
        if c.is_dir():
            return c
    raise TableError(f"data.path {path!r}: no such folder (looked for: {', '.join(map(str, candidates))}); with "
                     "data.labels_path, data.path is the folder of text files the table names")


def read_text_folder_with_labels(folder: str, labels_path: str, *, file_column: str = "file",
                                 encoding: str = "utf-8", search_dirs=()) -> tuple[pl.DataFrame, list[str]]:
    """(the label table with a ``text`` column added: each row's file, decoded; FILE / ROW name the table
    row, and notes on the files not used)."""
    root = find_folder(folder, search_dirs)
    labels = tables.read_table(labels_path, encoding=encoding, search_dirs=search_dirs, key="data.labels_path")
    where = f"data.labels_path {labels_path}"
    tables.require_columns(labels, {"data.file_column": file_column}, where)
    if "text" in labels.columns:
        raise TableError(f"{where}: has a column 'text', which the folder's files fill; rename that column")
    names = ["" if v is None else str(v).strip() for v in labels[file_column].to_list()]
    texts, missing = [], []
    for i, name in enumerate(names):
        path = root / name
        if not name or not path.is_file():
            missing.append(i)
            texts.append(None)
            continue
        texts.append(tables.decode(path.read_bytes(), path, encoding))
    if missing:
        shown = "; ".join(f"{tables.where_row(labels, i)}: {names[i]!r}" for i in missing[:5])
        raise TableError(f"{where}: {len(missing)} file(s) it names are not in {root} ({shown}); the "
                         f"{file_column!r} column gives each file's path inside data.path")
    named = set(names)
    unused = [p for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
              and p.relative_to(root).as_posix() not in named]
    notes = []
    if unused:
        shown = ", ".join(p.relative_to(root).as_posix() for p in unused[:5])
        notes.append(f"{len(unused)} text file(s) in {root} that {Path(labels_path).name} does not name were not "
                     f"used ({shown}{' ...' if len(unused) > 5 else ''})")
    return labels.with_columns(pl.Series("text", texts, dtype=pl.String)), notes
