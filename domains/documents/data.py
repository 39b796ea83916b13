"""Load labelled documents from files into a :class:`DocumentTable`.

Sources: JSONL / CSV / parquet (through polars), Hugging Face ``datasets``
(local data files, a ``save_to_disk`` folder, or a hub name when online), and a
folder of text files labelled by sub-folder (``root/<label>/*.txt``).

Every loader returns a table with a ``text`` column (str) and a ``label``
column: one value per document (single-label) or a list of values
(multi-label, as in LexGLUE's ECtHR). What a loader skips or repairs is counted
in ``table.report``, never dropped silently:

* empty documents: ``empty="drop"`` (default, counted) or ``empty="error"``;
* bytes that are not UTF-8: ``encoding_errors="replace"`` (default: U+FFFD,
  counted per document and in total) or ``encoding_errors="error"``;
* a missing text or label column: an error naming the columns there are.

Labelled tables become model inputs through :class:`~.dataset.DocumentDataset`.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

EMPTY_MODES = ("drop", "error")
ENCODING_MODES = ("replace", "error")
TEXT_SUFFIXES = (".txt", ".md", ".text", ".LICENSE")


@dataclass
class LoadReport:
    """Counts of what a loader read, dropped and repaired."""

    source: str
    n_read: int = 0
    n_empty_dropped: int = 0
    n_non_utf8_docs: int = 0
    n_replacement_chars: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def n_kept(self) -> int:
        return self.n_read - self.n_empty_dropped

    def __str__(self) -> str:
        return (f"{self.source}: read {self.n_read}, kept {self.n_kept}, dropped {self.n_empty_dropped} empty, "
                f"{self.n_non_utf8_docs} with non-UTF-8 bytes ({self.n_replacement_chars} replaced)")


@dataclass
class DocumentTable:
    """Documents (``frame`` with columns ``text``, ``label`` and any extras) plus a load report."""

    frame: pl.DataFrame
    multi_label: bool
    report: LoadReport

    def __len__(self) -> int:
        return self.frame.height

    @property
    def texts(self) -> list[str]:
        return self.frame["text"].to_list()

    @property
    def labels(self) -> list:
        return self.frame["label"].to_list()

    def filter(self, mask) -> "DocumentTable":
        """Rows where ``mask`` (a polars expression or boolean Series) holds; the report is shared."""
        return DocumentTable(self.frame.filter(mask), self.multi_label, self.report)


def decode_utf8(data: bytes, errors: str = "replace") -> tuple[str, int]:
    """Decode UTF-8; return (text, number of U+FFFD inserted for invalid bytes)."""
    if errors not in ENCODING_MODES:
        raise ValueError(f"encoding_errors={errors!r} is not one of {ENCODING_MODES}")
    try:
        return data.decode("utf-8"), 0
    except UnicodeDecodeError as err:
        if errors == "error":
            raise ValueError(f"input is not valid UTF-8 ({err}); fix the encoding, or pass "
                             "encoding_errors='replace' to replace bad bytes with U+FFFD (counted)") from err
    text = data.decode("utf-8", errors="replace")
    return text, text.count("\ufffd") - data.count("\ufffd".encode("utf-8"))


def _require_columns(frame: pl.DataFrame, source: str, **columns: str | None) -> None:
    for role, name in columns.items():
        if name is not None and name not in frame.columns:
            raise KeyError(f"{source} has no {role} column {name!r}; its columns are {frame.columns}. "
                           f"Pass {role}_column=<one of them>.")


def _is_list_dtype(dtype) -> bool:
    return isinstance(dtype, (pl.List, pl.Array))


def finalize_table(frame: pl.DataFrame, report: LoadReport, text_column: str = "text",
                   label_column: str | None = "label", keep_columns: list[str] | None = None,
                   empty: str = "drop", paragraph_separator: str = "\n\n") -> DocumentTable:
    """Select and rename the text/label columns, join paragraph lists, handle empty documents.

    A text column holding lists of strings (ECtHR's paragraphs) is joined with
    ``paragraph_separator``. ``label_column=None`` gives an unlabelled table
    (``label`` all null). A list-typed label column makes the table multi-label.
    """
    if empty not in EMPTY_MODES:
        raise ValueError(f"empty={empty!r} is not one of {EMPTY_MODES}")
    _require_columns(frame, report.source, text=text_column, label=label_column)
    keep_columns = [c for c in (keep_columns or []) if c not in (text_column, label_column)]
    _require_columns(frame, report.source, **{f"extra ({c})": c for c in keep_columns})
    text = pl.col(text_column)
    if _is_list_dtype(frame.schema[text_column]):
        text = text.list.join(paragraph_separator)
    elif frame.schema[text_column] != pl.String:
        raise TypeError(f"{report.source}: text column {text_column!r} has type {frame.schema[text_column]}, "
                        "expected strings or lists of strings")
    label = pl.col(label_column) if label_column is not None else pl.lit(None)
    out = frame.select(text.alias("text"), label.alias("label"), *keep_columns)
    report.n_read += out.height
    is_empty = pl.col("text").is_null() | (pl.col("text").str.strip_chars() == "")
    n_empty = out.select(is_empty.sum()).item()
    if n_empty and empty == "error":
        rows = out.with_row_index().filter(is_empty)["index"].head(5).to_list()
        raise ValueError(f"{report.source}: {n_empty} empty documents (first rows {rows}); remove them, "
                         "or pass empty='drop' to drop them (counted in the report)")
    if n_empty:
        out = out.filter(~is_empty)
        report.n_empty_dropped += n_empty
        report.notes.append(f"dropped {n_empty} empty documents")
    multi = label_column is not None and _is_list_dtype(frame.schema[label_column])
    if label_column is not None:
        n_missing = out["label"].null_count()
        if n_missing:
            raise ValueError(f"{report.source}: {n_missing} documents have no value in label column "
                             f"{label_column!r}; fill or remove them")
    return DocumentTable(out, multi, report)


def _read_text_source(path: Path, encoding_errors: str, report: LoadReport) -> io.BytesIO:
    text, n_bad = decode_utf8(path.read_bytes(), encoding_errors)
    if n_bad:
        report.n_replacement_chars += n_bad
        report.notes.append(f"replaced {n_bad} invalid UTF-8 sequences with U+FFFD")
    return io.BytesIO(text.encode("utf-8"))


def read_table(path: str | Path, text_column: str = "text", label_column: str | None = "label",
               keep_columns: list[str] | None = None, empty: str = "drop",
               encoding_errors: str = "replace", paragraph_separator: str = "\n\n",
               csv_separator: str = ",") -> DocumentTable:
    """Read a .jsonl/.ndjson, .csv/.tsv or .parquet file of documents (format from the suffix)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    report = LoadReport(source=str(path))
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        frame = pl.read_ndjson(_read_text_source(path, encoding_errors, report))
    elif suffix in (".csv", ".tsv"):
        sep = "\t" if suffix == ".tsv" else csv_separator
        frame = pl.read_csv(_read_text_source(path, encoding_errors, report), separator=sep)
    elif suffix == ".parquet":
        frame = pl.read_parquet(path)
    else:
        raise ValueError(f"{path}: unknown suffix {suffix!r}; expected .jsonl, .ndjson, .csv, .tsv or .parquet")
    table = finalize_table(frame, report, text_column, label_column, keep_columns, empty, paragraph_separator)
    if report.n_replacement_chars:
        n_docs = table.frame.select(pl.col("text").str.contains("\ufffd").sum()).item()
        report.n_non_utf8_docs += n_docs
    return table


def read_text_folder(root: str | Path, suffixes: tuple[str, ...] = TEXT_SUFFIXES, empty: str = "drop",
                     encoding_errors: str = "replace") -> DocumentTable:
    """Read ``root/<label>/<file>`` text files; the sub-folder name is the label.

    Adds a ``path`` column. Files at the top level of ``root`` (no label) raise.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder at {root}")
    report = LoadReport(source=str(root))
    loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix in suffixes]
    if loose:
        raise ValueError(f"{root} holds unlabelled files {loose[:5]}; put each file in a sub-folder "
                         "named after its label (root/<label>/<file>)")
    rows = {"text": [], "label": [], "path": []}
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(p for p in label_dir.rglob("*") if p.is_file() and p.suffix in suffixes):
            text, n_bad = decode_utf8(file.read_bytes(), encoding_errors)
            if n_bad:
                report.n_non_utf8_docs += 1
                report.n_replacement_chars += n_bad
            rows["text"].append(text)
            rows["label"].append(label_dir.name)
            rows["path"].append(str(file.relative_to(root)))
    if not rows["text"]:
        raise ValueError(f"{root} has no files ending in {suffixes} in its sub-folders")
    frame = pl.DataFrame(rows, schema={"text": pl.String, "label": pl.String, "path": pl.String})
    return finalize_table(frame, report, keep_columns=["path"], empty=empty)


def read_hf_dataset(name_or_path: str | Path, split: str | None = "train", text_column: str = "text",
                    label_column: str | None = "label", config: str | None = None,
                    keep_columns: list[str] | None = None, empty: str = "drop",
                    label_names: bool = True) -> DocumentTable:
    """Read a Hugging Face dataset: a ``save_to_disk`` folder, a local data file, or a hub name.

    ``label_names=True`` turns ``ClassLabel`` ids into their names. A hub name
    needs internet access; offline it raises an error that says what to do instead.
    """
    import datasets

    path = Path(name_or_path)
    source = f"{name_or_path}" + (f"[{split}]" if split else "")
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        ds = datasets.load_from_disk(str(path))
    elif path.is_file():
        kind = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}.get(path.suffix.lower())
        if kind is None:
            raise ValueError(f"{path}: cannot tell the format from suffix {path.suffix!r}")
        ds = datasets.load_dataset(kind, data_files=str(path))
    elif path.is_dir():
        ds = datasets.load_dataset(str(path))
    else:
        try:
            ds = datasets.load_dataset(str(name_or_path), config)
        except Exception as err:
            raise OSError(f"could not load {name_or_path!r} from the Hugging Face hub (offline, or no such "
                          f"dataset: {type(err).__name__}: {err}). On a machine with internet access run "
                          f"`datasets.load_dataset({str(name_or_path)!r}, {config!r}).save_to_disk(DIR)`, "
                          "copy DIR here and pass its path.") from err
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise KeyError(f"{name_or_path} has no split {split!r}; its splits are {list(ds)}")
        ds = ds[split]
    report = LoadReport(source=source)
    if label_column is not None and label_column not in ds.column_names:
        raise KeyError(f"{source} has no label column {label_column!r}; its columns are {ds.column_names}. "
                       "Pass label_column=<one of them>.")
    frame = pl.from_arrow(ds.with_format("arrow")[:])
    if label_names and label_column is not None:
        frame = _class_label_names(frame, ds.features[label_column], label_column)
    return finalize_table(frame, report, text_column, label_column, keep_columns, empty)


def _class_label_names(frame: pl.DataFrame, feature, column: str) -> pl.DataFrame:
    """ClassLabel ids (or lists of them) -> their names; other features unchanged."""
    import datasets

    inner = getattr(feature, "feature", None)
    for class_label, is_list in ((feature, False), (inner, True)):
        if isinstance(class_label, datasets.ClassLabel):
            mapping = dict(enumerate(class_label.names))
            expr = pl.element() if is_list else pl.col(column)
            expr = expr.replace_strict(mapping, return_dtype=pl.String)
            return frame.with_columns(pl.col(column).list.eval(expr) if is_list else expr.alias(column))
    return frame
