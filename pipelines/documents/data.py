"""A documents recipe's data: the built-in licences, or the user's files, into train / val / test tables.

``data.path`` names the user's documents: a table file (JSON lines, CSV, TSV, parquet, JSON; ``.gz``
too), a folder of them or a glob (read by ``domains.tables.read_table``), or, with
``data.labels_path``, a folder of text files whose labels a table gives (``files``).
Without ``data.path`` the built-in licence categories are used (``data.source: licenses``; the older
``data.source=<file>`` spelling still means ``data.path=<file>``).

Splits come from ``pipelines.data_source.split_rows`` (the keys every domain shares): a K-fold fold
(``data.cv_folds``), a split column, a test file (``data.test_path``) or a seeded stratified ratio;
when no validation rows are given they are carved from train. Which row went where is written to the
run folder (``splits.csv``) and every count (empty texts dropped, labels respelled, files unused) goes
to the report (``DocumentData.notes``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from mambatune.domains import tables
from mambatune.domains.documents import ByteTokenizer, DocumentTable, LoadReport, load_license_dataset
from mambatune.domains.documents.tokenizer_file import load_tokenizer

from ..data_source import SPLIT_NAMES, split_rows
from .columns import ID, document_frame
from .config import DEMO, TASKS, DataConfig
from .files import TEXT_SUFFIXES, read_text_folder_with_labels

SPLITS = ("train", "val", "test")
FILE_SPLIT = "_split_from_file"  # the split a train / val / test file name gives its rows


@dataclass
class DocumentData:
    """train / val / test tables, how they were split (one line), what was dropped or changed (notes), and
    the :class:`~mambatune.pipelines.data_source.Splits` to record (None for the built-in split)."""

    tables: dict[str, DocumentTable]
    how: str
    notes: list[str] = field(default_factory=list)
    splits: object | None = None
    multi_label: bool = False

    def write(self, run_dir: Path) -> None:
        """``splits.csv`` in the run folder: which file row went to which split."""
        if self.splits is not None:
            self.splits.write(run_dir)


def load_data(cfg: DataConfig, recipe_source: str | None = None) -> DocumentData:
    """The recipe's documents split into train / val / test, subsampled by max_train / max_eval."""
    if cfg.user_path is None and cfg.fold is None:
        data = DocumentData({s: load_license_dataset(s, include_deprecated=cfg.include_deprecated) for s in SPLITS},
                            "the built-in licence split (train / val / test)")
    else:
        data = split_user_data(cfg, recipe_source)
    for split, table in list(data.tables.items()):
        n = cfg.max_train if split == "train" else cfg.max_eval
        if n is not None and len(table) > n:
            data.notes.append(f"{split}: {n} of {len(table)} documents sampled (data.max_{'train' if split == 'train' else 'eval'})")
            table = DocumentTable(table.frame.sample(n, seed=cfg.seed, shuffle=True), table.multi_label, table.report)
        if len(table) == 0:
            raise ValueError(f"the {split} split of {cfg.describe()} has no documents")
        data.tables[split] = table
    return data


def load_splits(cfg: DataConfig, recipe_source: str | None = None) -> dict[str, DocumentTable]:
    """{split: DocumentTable} for train, val and test (see :func:`load_data`)."""
    return load_data(cfg, recipe_source).tables


def split_user_data(cfg: DataConfig, recipe_source: str | None) -> DocumentData:
    search = (Path(recipe_source).parent,) if recipe_source else ()
    n_read: dict[str, int] = {}
    if cfg.user_path is None:  # K-fold on the built-in licences: every licence, folded
        frame, source_notes = licence_frame(cfg), []
    else:
        frame, source_notes = read_documents(cfg, cfg.user_path, search, "data.path", n_read)
    split_cfg, how_prefix = cfg, ""
    if cfg.split_column is None and cfg.fold is None and not cfg.test_path:
        if "split" in frame.columns:  # a file made for the old loader, or any file with a split column
            split_cfg, how_prefix = dataclasses.replace(cfg, split_column="split"), "the data's 'split' column; "
        elif FILE_SPLIT in frame.columns:
            split_cfg, how_prefix = dataclasses.replace(cfg, split_column=FILE_SPLIT), "train / val / test files; "
    elif cfg.split_column is None and "split" in frame.columns:
        source_notes.append("the data's 'split' column is not used: " + ("data.cv_folds makes the folds"
                            if cfg.fold is not None else "data.test_path gives the test documents"))
    frame = frame.drop(FILE_SPLIT, strict=False) if split_cfg.split_column != FILE_SPLIT else frame
    test = None
    if cfg.test_path:
        test, test_notes = read_documents(cfg, cfg.test_path, search, "data.test_path", n_read)
        source_notes += [f"test file: {n}" for n in test_notes]
        test = test.drop(FILE_SPLIT, strict=False)
        missing = set(frame.columns) - set(test.columns) - {cfg.split_column, cfg.group_column}
        if missing:
            raise tables.TableError(f"data.test_path {cfg.test_path}: no column(s) {sorted(missing)} that data.path has")
        test = test.select([c for c in frame.columns if c in test.columns])
    multi = frame.schema["label"] == pl.List(pl.String)
    splits = split_rows(frame, split_cfg, label_column=None if cfg.task != "classify" else "label", test_df=test,
                        where=f"data.path {cfg.user_path or DEMO}")
    how = how_prefix + splits.how
    kept = frame.height + (test.height if test is not None else 0)
    read = sum(n_read.values()) or kept
    report = LoadReport(source=str(cfg.user_path or DEMO), n_read=read, n_empty_dropped=read - kept, notes=source_notes)
    out = {s: DocumentTable(splits.frames[s], multi, report) for s in SPLITS}
    return DocumentData(out, how, source_notes + splits.notes, splits, multi)


def licence_frame(cfg: DataConfig) -> pl.DataFrame:
    """The built-in licences (all splits) as a frame of text, label, id and the FILE / ROW columns."""
    table = load_license_dataset(None, include_deprecated=cfg.include_deprecated)
    frame = table.frame.with_row_index(tables.ROW, offset=1).with_columns(pl.col(tables.ROW).cast(pl.Int64))
    return frame.select("text", "label", pl.col("key").alias(ID), pl.lit("licenses.parquet").alias(tables.FILE),
                        tables.ROW)


def read_documents(cfg: DataConfig, path: str, search_dirs, key: str, n_read: dict | None = None
                   ) -> tuple[pl.DataFrame, list[str]]:
    """One source's documents as a frame of ``text``, ``label`` (str, or list of str when multi-label),
    ``id``, the FILE / ROW columns and any split / group column; and notes on what was changed."""
    where = f"{key} {path}"
    n_read = {} if n_read is None else n_read
    if cfg.labels_path:
        raw, file_notes = read_text_folder_with_labels(path, cfg.labels_path, file_column=cfg.file_column,
                                                       encoding=cfg.encoding, search_dirs=search_dirs)
        if cfg.id_column is None:  # a document is named by its file
            cfg = dataclasses.replace(cfg, id_column=cfg.file_column)
    else:
        try:
            raw, file_notes = tables.read_table(path, encoding=cfg.encoding, search_dirs=search_dirs, key=key), []
        except tables.TableError as err:
            folder = Path(path)
            texts = [f for f in folder.rglob("*") if f.suffix.lower() in TEXT_SUFFIXES] if folder.is_dir() else []
            if not texts:
                raise
            raise tables.TableError(f"{err}. {key} {path} is a folder of {len(texts)} text file(s): label them with "
                                    "data.labels_path=<a table with a 'file' column (each file's path inside the "
                                    "folder) and a 'label' column>") from None
    frame, notes = document_frame(raw, cfg, where)
    notes = file_notes + notes
    n_read[key] = raw.height  # rows before empty documents were left out
    files = raw[tables.FILE].unique().to_list()
    if len(files) > 1 and all(split_of_file(f) for f in files):
        frame = frame.with_columns(pl.col(tables.FILE).map_elements(split_of_file, return_dtype=pl.String)
                                   .alias(FILE_SPLIT))
    return frame, notes


def split_of_file(name: str) -> str | None:
    """``train.jsonl`` / ``validation.csv.gz`` / ``test.parquet`` -> the split its name gives; else None."""
    stem = name.lower().removesuffix(".gz").rsplit(".", 1)[0]
    return SPLIT_NAMES.get(stem)


def make_tokenizer(cfg: DataConfig):
    """``byte`` (the shared ByteTokenizer), or a tokenizer file / model folder (ours or Hugging Face's)."""
    return ByteTokenizer() if cfg.tokenizer == "byte" else load_tokenizer(cfg.tokenizer)


__all__ = ["DataConfig", "DocumentData", "ID", "load_data", "load_splits", "make_tokenizer", "TASKS"]
