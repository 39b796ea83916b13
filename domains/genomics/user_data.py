"""A user's table of DNA sequences and labels made ready for a model: sequences cleaned, labels encoded.

:func:`clean_sequences` upper-cases every sequence and maps any character other than A C G T N to N,
counting each character it replaced (IUPAC codes such as R or Y, but also '-', '.', 'U' or spaces), so
a run reports what it changed. An RNA sequence (U and no T) is read as DNA, its U as T (counted). A sequence longer than ``max_length`` is an error naming its row, or,
with ``too_long="crop"``, its central ``max_length`` bases are kept (counted). An empty sequence, and a
sequence that is mostly not DNA (more than half its characters replaced: likely the wrong column), is
an error naming the file and row.

:func:`encode_labels` reads a label column as one of four kinds:

- ``binary`` / ``multiclass``: one class per row (any text or number; '0' and '0.0' are one class, also
  across files and beside text labels, noted);
- ``multilabel``: several classes per row, as a list column (parquet / JSON) or a string of classes
  separated by ``separator`` (default ``;``, e.g. ``"CTCF;H3K27ac"``);
- ``regression``: one number per row.

``kind="auto"`` picks ``multilabel`` for a list column or when a label holds the separator,
``regression`` when every label is a number and at least one is not a whole number, else binary or
multi-class by the number of classes; the choice is recorded (``Labels.how``). Labels that are mostly
numbers, not all whole, with a few that are not finite numbers (``inf``, ``3.5 (approx)``) are an error
naming the first such row, not 40 classes.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from mambatune.domains.tables import MISSING, TableError, canonical_number, to_labels, to_numbers, where_row

from .sequence_data import center_crop

LABEL_KINDS = ("auto", "binary", "multiclass", "multilabel", "regression")
TOO_LONG = ("error", "crop")
DNA = frozenset("ACGTN")
_KEEP = np.zeros(256, dtype=bool)
for _b in "ACGTN":
    _KEEP[ord(_b)] = True


@dataclass
class SequenceCounts:
    """What cleaning changed: sequences upper-cased, characters mapped to N (by character), sequences cropped."""

    n: int = 0
    lower_case: int = 0
    replaced: Counter = field(default_factory=Counter)
    with_replaced: int = 0
    cropped: int = 0
    rna: int = 0
    min_length: int = 0
    max_length: int = 0

    def as_dict(self) -> dict:
        return {"sequences": self.n, "lower_case_upper_cased": self.lower_case,
                "sequences_with_non_acgtn": self.with_replaced,
                "non_acgtn_mapped_to_n": dict(sorted(self.replaced.items())), "rna_u_read_as_t": self.rna,
                "cropped_to_max_length": self.cropped,
                "length_min": self.min_length, "length_max": self.max_length}

    def text(self) -> str:
        parts = [f"{self.n} sequences of {self.min_length:,}-{self.max_length:,} bp"]
        if self.lower_case:
            parts.append(f"{self.lower_case} upper-cased")
        if self.rna:
            parts.append(f"{self.rna} RNA sequences (U, no T) read as DNA (U -> T)")
        if self.replaced:
            chars = ", ".join(f"{c!r} x{n}" for c, n in sorted(self.replaced.items()))
            parts.append(f"{sum(self.replaced.values())} characters other than ACGTN mapped to N in "
                         f"{self.with_replaced} sequences ({chars})")
        if self.cropped:
            parts.append(f"{self.cropped} cropped to their central bases (data.too_long=crop)")
        return "; ".join(parts)


def clean_sequences(df: pl.DataFrame, column: str, *, where: str, max_length: int | None = None,
                    too_long: str = "error", counts: SequenceCounts | None = None) -> tuple[list[str], SequenceCounts]:
    """The DNA of ``df[column]``, upper-cased, with every non-ACGTN character as N; see the module docstring."""
    if too_long not in TOO_LONG:
        raise ValueError(f"data.too_long must be one of {', '.join(TOO_LONG)}, got {too_long!r}")
    counts = counts or SequenceCounts()
    out, lengths = [], []
    for i, raw in enumerate(df[column].to_list()):
        seq = "" if raw is None else str(raw).strip()
        if seq.lower() in MISSING:
            raise TableError(f"{where_row(df, i)}: column {column!r} (data.sequence_column) is empty ({raw!r}); "
                             "every row needs a DNA sequence: fill it or remove the row")
        upper = seq.upper()
        if upper != seq:
            counts.lower_case += 1
        if "U" in upper and "T" not in upper:  # RNA: its U is DNA's T, not an unknown base
            upper = upper.replace("U", "T")
            counts.rna += 1
        data = np.frombuffer(upper.encode("utf-8", "surrogatepass"), dtype=np.uint8)
        if data.size != len(upper) or not _KEEP[data].all():
            bad = [ch for ch in upper if ch not in DNA]
            if len(bad) * 2 > len(upper):
                shown = "".join(sorted(set(bad)))[:20]
                raise TableError(f"{where_row(df, i)}: column {column!r} does not look like DNA: {len(bad)} of its "
                                 f"{len(upper)} characters are not A, C, G, T or N ({shown!r}). Check "
                                 "data.sequence_column names the sequence column")
            counts.replaced.update(bad)
            counts.with_replaced += 1
            upper = "".join(ch if ch in DNA else "N" for ch in upper)
        if max_length is not None and len(upper) > max_length:
            if too_long == "error":
                raise TableError(f"{where_row(df, i)}: the sequence is {len(upper):,} bp, longer than "
                                 f"data.max_length={max_length:,}; raise data.max_length, or set data.too_long=crop "
                                 "to keep the central bases of long sequences (counted in the report)")
            upper = center_crop(upper, max_length)
            counts.cropped += 1
        lengths.append(len(upper))
        out.append(upper)
    if lengths:
        counts.min_length = min(lengths) if counts.n == 0 else min(counts.min_length, min(lengths))
        counts.max_length = max(counts.max_length, max(lengths))
    counts.n += len(out)
    return out, counts


@dataclass
class Labels:
    """Encoded labels of one table: ``values`` are class ids (n,) int64 (binary / multiclass), multi-hot
    (n, classes) float32 (multilabel) or numbers (n,) float64 (regression); ``classes`` name the ids."""

    kind: str
    values: np.ndarray
    classes: list[str]
    how: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class LabelSpace:
    """The label kind and classes, fixed from every split so that ids mean the same in all of them."""

    kind: str
    classes: list[str]
    how: str
    notes: list[str] = field(default_factory=list)

    def encode(self, df: pl.DataFrame, column: str, separator: str, where: str) -> Labels:
        if self.kind == "regression":
            values, _ = to_numbers(df, column, where=where, allow_missing=False)
            return Labels(self.kind, values, [], self.how)
        if self.kind == "multilabel":
            sets = label_sets(df, column, separator, where)
            index = {c: j for j, c in enumerate(self.classes)}
            hot = np.zeros((len(sets), len(self.classes)), dtype=np.float32)
            for i, s in enumerate(sets):
                for c in s:
                    hot[i, index[c]] = 1
            return Labels(self.kind, hot, self.classes, self.how)
        labels, _ = to_labels(df, column, where=where)
        index = {c: j for j, c in enumerate(self.classes)}
        ids = []
        for i, y in enumerate(labels):
            j = index.get(one_spelling(y))
            if j is None:
                raise TableError(f"{where_row(df, i)}: label {y!r} in column {column!r} is not one of the classes "
                                 f"the run learns ({', '.join(self.classes[:10])}); fix the label or remove the row")
            ids.append(j)
        return Labels(self.kind, np.asarray(ids, dtype=np.int64), self.classes, self.how)


def one_spelling(label: str) -> str:
    """A class label as the label space names it: a number in one spelling ('0.0' -> '0'), text as it is."""
    return canonical_number(label) or label


def label_sets(df: pl.DataFrame, column: str, separator: str, where: str) -> list[list[str]]:
    """Each row's classes: a list cell as is, a text cell split on ``separator``; numbers unified
    ('1' and '1.0'). A missing cell is an error; an empty list (``[]``) means none of the classes."""
    out, empty = [], []
    for i, v in enumerate(df[column].to_list()):
        if isinstance(v, (list, tuple, pl.Series)):
            parts = [str(x).strip() for x in v if x is not None and str(x).strip()]
        elif v is None or str(v).strip().lower() in MISSING:
            empty.append(i)
            continue
        else:
            parts = [p.strip() for p in str(v).split(separator) if p.strip()]
        out.append(sorted({canonical_number(p) or p for p in parts}))
    if empty:
        shown = "; ".join(where_row(df, i) for i in empty[:5])
        raise TableError(f"{where}: {len(empty)} row(s) have no labels in column {column!r} (e.g. {shown}); give "
                         f"every row its classes separated by {separator!r} (a list column may hold [] for none)")
    return out


def label_space(frames: list[pl.DataFrame], column: str, *, kind: str = "auto", separator: str = ";",
                positive: str | None = None, where: str = "data") -> LabelSpace:
    """The label kind and the sorted classes of ``column`` over every table in ``frames`` (see the module
    docstring). ``positive`` names the positive class of a binary task (default: the second class in sorted
    order, e.g. '1' of '0'/'1', 'promoter' of 'non_promoter'/'promoter')."""
    if kind not in LABEL_KINDS:
        raise TableError(f"data.label_kind must be one of {', '.join(LABEL_KINDS)}, got {kind!r}")
    frames = [f for f in frames if f is not None and f.height]
    table = pl.concat([f.select(column) for f in frames], how="vertical_relaxed")
    is_list = isinstance(table.schema[column], pl.List)
    how = f"data.label_kind={kind}"
    if kind == "auto":
        texts = [str(v) for v in table[column].to_list() if v is not None]
        if is_list or any(separator in t for t in texts):
            kind, how = "multilabel", ("auto: a list column" if is_list else f"auto: labels hold {separator!r}")
        else:
            canon = [canonical_number(t.strip()) for t in texts if t.strip().lower() not in MISSING]
            fractions = sum(c is not None and ("." in c or "e" in c) for c in canon)
            if canon and all(c is not None for c in canon) and fractions:
                kind, how = "regression", "auto: numbers that are not all whole"
            elif fractions and 2 * sum(c is None for c in canon) < len(canon):
                not_number(frames, column, where)
    notes: list[str] = []
    if kind == "regression":
        for f in frames:
            to_numbers(f, column, where=where, allow_missing=False)
        return LabelSpace("regression", [], how, notes)
    if kind == "multilabel":
        classes = sorted({c for f in frames for s in label_sets(f, column, separator, where) for c in s},
                         key=class_order)
        if len(classes) < 2:
            raise TableError(f"{where}: multi-label column {column!r} names {len(classes)} class(es) "
                             f"({classes}); a multi-label task needs at least two")
        return LabelSpace("multilabel", classes, how, notes)
    seen: list[str] = []
    for f in frames:
        labels, more = to_labels(f, column, where=where)
        seen += labels
        notes += more
    spellings: dict[str, set[str]] = {}
    for label in seen:
        spellings.setdefault(one_spelling(label), set()).add(label)
    merged = {c: sorted(s) for c, s in spellings.items() if len(s) > 1}
    if merged:  # e.g. '0' in one file and '0.0' in the other, or beside text labels
        notes.append(f"column {column!r}: numeric labels written two ways read as one class ("
                     + "; ".join(f"{v} -> {k!r}" for k, v in sorted(merged.items())) + ")")
    classes = sorted(spellings, key=class_order)
    if len(classes) < 2:
        raise TableError(f"{where}: column {column!r} (data.label_column) has one class ({classes[0]!r}); a "
                         "classifier needs at least two. For a numeric target set data.label_kind=regression")
    if kind == "binary" and len(classes) != 2:
        raise TableError(f"{where}: data.label_kind=binary but column {column!r} has {len(classes)} classes "
                         f"({', '.join(classes[:10])}); set data.label_kind=multiclass (or auto)")
    if kind == "auto":
        kind, how = ("binary", "auto: two classes") if len(classes) == 2 else \
            ("multiclass", f"auto: {len(classes)} classes")
    if positive is not None:
        if kind != "binary":
            raise TableError(f"data.positive_label is for binary labels; column {column!r} is {kind}")
        positive = canonical_number(positive) or positive if all(canonical_number(c) for c in classes) else positive
        if positive not in classes:
            raise TableError(f"data.positive_label={positive!r} is not a class of column {column!r} "
                             f"({', '.join(classes)})")
        classes = [c for c in classes if c != positive] + [positive]
    return LabelSpace(kind, classes, how, notes)


def not_number(frames: list[pl.DataFrame], column: str, where: str) -> None:
    """Raises for the first label of ``column`` that is not a finite number, in labels that are mostly numbers
    and not all whole (a regression target with a typo, ``inf`` or a note in a cell)."""
    numbers = sum(canonical_number(str(v).strip()) is not None for f in frames for v in f[column].to_list()
                  if v is not None and str(v).strip().lower() not in MISSING)
    for f in frames:
        for i, v in enumerate(f[column].to_list()):
            text = "" if v is None else str(v).strip()
            if text.lower() not in MISSING and canonical_number(text) is None:
                raise TableError(f"{where_row(f, i)}: column {column!r} holds {text!r}, not a finite number, while "
                                 f"{numbers} other labels are numbers, not all whole (a regression target?) "
                                 f"({where}); fix the value, or set data.label_kind=multiclass if every label is a "
                                 "class name")


def class_order(label: str):
    """Numbers in numeric order before text in text order ('2' < '10' < 'a')."""
    num = canonical_number(label)
    return (0, float(num), "") if num is not None else (1, 0.0, label)
