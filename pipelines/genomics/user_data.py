"""A genomics recipe's ``data.path``: the user's sequences, labels and splits, read with recipe keys alone.

``data.format`` (``auto``: from the file name) picks the reader:

- ``table``: CSV / TSV / parquet / JSON lines (``domains.tables.read_table``), sequences in
  ``data.sequence_column``, labels in ``data.label_column``;
- ``fasta``: labels in the headers (``data.header_label``) or a side table (``data.labels_path``, joined on
  ``data.id_column``, default ``id``), see ``domains.genomics.user_files``;
- ``regions``: BED / narrowPeak / a table of chrom, start, end (+ strand, + label) read from ``data.genome``:
  ``data.window`` bp around each centre, or the region plus ``data.flank`` bp, or (window null) the region;
- ``vcf`` goes to the VEP tasks (``genomics.user_vep``).

Sequences are cleaned (upper case, non-ACGTN -> N, ``data.max_length`` / ``data.too_long``; counted),
labels encoded into one label space over every split (``domains.genomics.user_data``), and the rows split by
``pipelines.data_source.split_rows`` (split column, test file, K-fold fold or seeded ratio).
``data.max_train`` / ``data.max_eval`` subsample the splits afterwards (quick runs; counted).
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from mambatune.domains.genomics.user_data import (
    Labels, LabelSpace, SequenceCounts, class_order, clean_sequences, label_sets, label_space, one_spelling,
)
from mambatune.domains.genomics.user_files import (
    REGION_ALIASES, attach_labels, file_format, read_fasta_table, read_region_table, region_sequences,
)
from mambatune.domains.tables import FILE, ROW, TableError, read_table, require_columns, to_labels, where_row
from mambatune.pipelines.data_source import Splits, split_rows

SEQ = "_sequence"  # the cleaned sequence, beside the user's own column


@dataclass
class UserData:
    """Per split (train / val / test): cleaned sequences, encoded labels and ids; and how they were made."""

    sequences: dict[str, list[str]]
    labels: dict[str, Labels]
    ids: dict[str, list[str]]
    space: LabelSpace
    splits: Splits
    counts: SequenceCounts
    format: str
    notes: list[str] = field(default_factory=list)
    regions: dict | None = None

    def sizes(self) -> dict[str, int]:
        return {s: len(v) for s, v in self.sequences.items()}

    def fingerprint(self) -> dict[str, str]:
        """{split: 16 hex digits} over each split's ids, cleaned sequences and encoded labels: runs with equal
        fingerprints were trained, validated and scored on the same examples (``mambatune ensemble`` checks it)."""
        return {name: fingerprint_rows(zip(self.ids[name], seqs, self.labels[name].values.tolist()))
                for name, seqs in self.sequences.items()}

    def describe(self) -> dict:
        """What results.json records of the data."""
        return {"format": self.format, "sizes": self.sizes(), "split": self.splits.how, "fingerprint": self.fingerprint(),
                "labels": {"kind": self.space.kind, "classes": self.space.classes, "how": self.space.how},
                "sequences": self.counts.as_dict(), "regions": self.regions,
                "notes": self.splits.notes + self.space.notes + self.notes}


def fingerprint_rows(rows) -> str:
    """The first 16 hex digits of the SHA-256 of ``rows`` (each a JSON-able tuple), in order."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row).encode() + b"\n")
    return digest.hexdigest()[:16]


def read_frame(path: str, cfg, fmt: str, where: str) -> tuple[pl.DataFrame, dict | None]:
    """One file set as a table with a sequence column (and the regions' counts, for regions)."""
    if fmt == "fasta":
        return read_fasta_table(path, header_label=cfg.header_label, label_key=cfg.label_column or "label",
                                encoding=cfg.encoding), None
    if fmt == "regions":
        if not cfg.genome:
            raise TableError(f"{where}: regions are read from a reference genome: set data.genome=<FASTA, plain or "
                             "bgzip> (the one the coordinates refer to)")
        window = None if cfg.flank is not None else cfg.window  # data.flank, when set, wins over the recipe's window
        return region_sequences(read_region_table(path, cfg.encoding), cfg.genome, window=window,
                                flank=cfg.flank, on_invalid=cfg.on_invalid, where=where)
    if fmt == "table":
        return read_table(path, encoding=cfg.encoding), None
    raise TableError(f"{where}: a {fmt} file cannot feed a sequence task; VCF files go to the VEP recipes "
                     "(genomics/vep_lora, genomics/vep_zeroshot)")


def sequence_column(cfg, fmt: str) -> str:
    return cfg.sequence_column if fmt == "table" else "sequence"


def load_user_data(cfg) -> UserData:
    """Reads, cleans, labels and splits the user's data (see the module docstring)."""
    fmt = file_format(cfg.path, cfg.format)
    where = f"data.path={cfg.path}"
    if not cfg.label_column:
        raise TableError("data.label_column is null: a sequence task learns from labels; name the label column "
                         "(zero-shot scoring without labels is for VCF files, genomics/vep_zeroshot)")
    df, regions = read_frame(cfg.path, cfg, fmt, where)
    test_df, test_regions = (None, None) if not cfg.test_path else read_frame(
        cfg.test_path, cfg, file_format(cfg.test_path, cfg.format), f"data.test_path={cfg.test_path}")
    notes: list[str] = []
    id_key = cfg.id_column or "id"
    if cfg.labels_path:
        side = read_table(cfg.labels_path, encoding=cfg.encoding)
        df, more = attach_labels(df, side, key=id_key, column=cfg.label_column, where=where)
        notes += more
        if test_df is not None:
            test_df, _ = attach_labels(test_df, side, key=id_key, column=cfg.label_column,
                                       where=f"data.test_path={cfg.test_path}")
    column = sequence_column(cfg, fmt)
    keys = {"data.sequence_column": column, "data.label_column": cfg.label_column, "data.id_column": cfg.id_column}
    if fmt == "fasta" and cfg.label_column not in df.columns:
        unlabelled_headers(df, cfg)
        raise TableError(f"{where}: the FASTA headers carry no labels (data.header_label={cfg.header_label}: "
                         f"'>id|label' or '{cfg.label_column}=<label>'); label the headers or give a side table "
                         "data.labels_path with columns id and label")
    for frame, name in ((df, where), (test_df, f"data.test_path={cfg.test_path}")):
        if frame is not None and fmt == "table" and column not in frame.columns and \
                {"chrom", "start", "end"} <= {REGION_ALIASES.get(c.lower(), c.lower()) for c in frame.columns}:
            raise TableError(f"{name}: no column {column!r} (data.sequence_column) but chrom, start and end columns: "
                             "regions? Set data.format=regions and data.genome=<reference FASTA> to read their "
                             "sequences, or name the sequence column with data.sequence_column")
        if frame is not None and fmt == "regions" and cfg.label_column not in frame.columns and not cfg.labels_path:
            present = ", ".join(c for c in frame.columns if c not in (FILE, ROW, "sequence"))
            raise TableError(f"{name}: the regions have no column {cfg.label_column!r} (data.label_column; their "
                             f"columns: {present}); a BED file's 7th column is its label (chrom, start, end, name, "
                             "score, strand, label), or a first line naming the columns can name it; add the labels or "
                             "set data.label_column")
        if frame is not None:
            require_columns(frame, keys if fmt == "table" else {k: v for k, v in keys.items()
                                                                if k != "data.sequence_column"}, name)
    space = label_space([df, test_df], cfg.label_column, kind=cfg.label_kind, separator=cfg.label_separator,
                        positive=cfg.positive_label, where=where)
    if test_df is not None:
        unseen_test_classes(df, test_df, cfg, space.kind, where)
    counts = SequenceCounts()
    seqs, counts = clean_sequences(df, column, where=where, max_length=cfg.max_length, too_long=cfg.too_long,
                                   counts=counts)
    df = df.with_columns(pl.Series(SEQ, seqs, dtype=pl.String))
    if test_df is not None:
        seqs, counts = clean_sequences(test_df, column, where=f"data.test_path={cfg.test_path}",
                                       max_length=cfg.max_length, too_long=cfg.too_long, counts=counts)
        test_df = test_df.with_columns(pl.Series(SEQ, seqs, dtype=pl.String))
    splits = split_rows(df, cfg, label_column=cfg.label_column, test_df=test_df, where=where)
    frames = dict(splits.frames)
    for name, limit in (("train", cfg.max_train), ("val", cfg.max_eval), ("test", cfg.max_eval)):
        if limit is not None and frames[name].height > limit:
            notes.append(f"{name}: {limit} of {frames[name].height} rows used (data.max_"
                         f"{'train' if name == 'train' else 'eval'})")
            frames[name] = frames[name].sample(limit, seed=cfg.seed, shuffle=True)
    splits.frames = frames
    if frames["val"].height == 0:
        raise TableError(f"{where}: the validation split is empty ({splits.how}); set data.val_fraction > 0 or mark "
                         "val rows in data.split_column: training picks its best step on it")
    out = UserData({}, {}, {}, space, splits, counts, fmt, notes,
                   {"data": regions, "test_path": test_regions} if regions or test_regions else None)
    for name, frame in frames.items():
        out.sequences[name] = frame[SEQ].to_list()
        out.labels[name] = space.encode(frame, cfg.label_column, cfg.label_separator, where)
        out.ids[name] = row_ids(frame, cfg.id_column, fmt)
    out.notes += split_notes(out)
    return out


def unlabelled_headers(df: pl.DataFrame, cfg) -> None:
    """When some FASTA headers carry a label ('>id|label' or 'key=label') and others do not, names the first
    record without one (``header_label=auto`` reads labels from the headers only when every header has one)."""
    if cfg.header_label != "auto":
        return
    key = cfg.label_column
    has = {"'>id|label'": ["|" in i for i in df["id"].to_list()],
           f"'{key}=<label>'": [f"{key}=" in d for d in df["description"].to_list()]}
    for how, marks in has.items():
        if any(marks) and not all(marks):
            i = marks.index(False)
            raise TableError(f"{where_row(df, i).replace(', row', ', record')} ({df['id'][i]!r}): no label in the "
                             f"header, while {sum(marks)} of {len(marks)} headers carry one ({how}); label every "
                             "record, or set data.header_label=none and give data.labels_path")


def row_classes(frame: pl.DataFrame, cfg, kind: str, where: str) -> list[list[str]]:
    """Each row's classes (one, or a multi-label row's several), each in the label space's spelling."""
    if kind == "multilabel":
        return label_sets(frame, cfg.label_column, cfg.label_separator, where)
    return [[one_spelling(y)] for y in to_labels(frame, cfg.label_column, where=where)[0]]


def unseen_test_classes(df: pl.DataFrame, test_df: pl.DataFrame, cfg, kind: str, where: str) -> None:
    """A class of the test file that no row of ``data.path`` has is an error: the model cannot learn it."""
    if kind == "regression":
        return
    train = {c for row in row_classes(df, cfg, kind, where) for c in row}
    test = row_classes(test_df, cfg, kind, f"data.test_path={cfg.test_path}")
    rows = [i for i, row in enumerate(test) if set(row) - train]
    if rows:
        new = sorted({c for i in rows for c in test[i]} - train, key=class_order)
        raise TableError(f"{where_row(test_df, rows[0])}: class {new[0]!r} of data.test_path (in {len(rows)} "
                         f"row(s); new classes: {', '.join(new[:10])}) never appears in {where} (its classes: "
                         f"{', '.join(sorted(train, key=class_order)[:10])}); the model cannot learn a class it never "
                         "sees: add training rows of it, or fix or remove those test rows")


def split_notes(data: UserData) -> list[str]:
    """What a user should know of the splits: classes with no training example, ids used more than once,
    test sequences that also appear (identical after cleaning) in the training split."""
    notes = []
    space = data.space
    if space.kind in ("binary", "multiclass", "multilabel"):
        def counts(split):
            values = data.labels[split].values
            return values.sum(0) if space.kind == "multilabel" else np.bincount(values, minlength=len(space.classes))
        train = counts("train")
        others = counts("val") + counts("test")
        missing = [c for j, c in enumerate(space.classes) if train[j] == 0 and others[j] > 0]
        if missing:
            notes.append(f"class(es) {', '.join(map(repr, missing[:10]))} have no example in the training split "
                         f"({int(sum(others[space.classes.index(c)] for c in missing))} in val / test): the model "
                         "cannot learn them; add rows of them, or remove them")
    ids = [i for split in data.ids.values() for i in split]
    repeated = {i for i, n in Counter(ids).items() if n > 1}
    if repeated:
        rows = sum(i in repeated for i in ids)
        notes.append(f"{len(repeated)} id(s) used by more than one row ({rows} rows, e.g. {sorted(repeated)[0]!r}): "
                     "their rows in the predictions cannot be told apart by id; give each row its own id "
                     "(data.id_column)")
    train = set(data.sequences["train"])
    shared = sum(s in train for s in data.sequences["test"])
    if shared:
        notes.append(f"{shared} of {len(data.sequences['test'])} test sequence(s) also appear in the training "
                     "split (identical after cleaning): their test scores flatter the model; remove the duplicates, "
                     "or keep copies in one split with data.group_column")
    return notes


def row_ids(frame: pl.DataFrame, id_column: str | None, fmt: str) -> list[str]:
    """The id of each row in the predictions: ``data.id_column``, else a column named ``id`` (a FASTA
    record's id), else file:row."""
    if id_column or "id" in frame.columns:
        return [str(v) for v in frame[id_column or "id"].to_list()]
    return [f"{f}:{r}" for f, r in zip(frame[FILE].to_list(), frame[ROW].to_list())]
