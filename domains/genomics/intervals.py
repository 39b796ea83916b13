"""Genomic intervals from BED / CSV / TSV / parquet, their validation and region-based splits.

An interval table is a polars DataFrame with columns ``chrom`` (str),
``start``, ``end`` (int64, 0-based half-open as in BED) and any of ``name``,
``score``, ``strand``, ``label``. CSV/TSV/parquet need a header; the aliases
``chr``/``chromosome``/``contig``, ``chromStart``/``begin``, ``chromEnd``/``stop``
are renamed. BED files have no header: columns 1-6 are chrom, start, end, name,
score, strand and a 7th column, if present, is ``label``.

Problems are never dropped silently: ``on_invalid="error"`` raises
:class:`IntervalError` with the first offending rows, ``"skip"`` drops them and
counts each reason in the returned :class:`IntervalReport`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import polars as pl

COLUMN_ALIASES = {
    "chr": "chrom", "chromosome": "chrom", "contig": "chrom", "seqname": "chrom", "#chrom": "chrom",
    "chromstart": "start", "begin": "start", "chromend": "end", "stop": "end",
}
BED_COLUMNS = ["chrom", "start", "end", "name", "score", "strand", "label"]
SPLITS = ("train", "val", "test")


class IntervalError(ValueError):
    """Intervals that are malformed, out of bounds or unlabelled."""


@dataclass
class IntervalReport:
    """Rows read, rows kept, and the count of rows dropped for each reason."""

    rows_read: int = 0
    rows_kept: int = 0
    dropped: Counter = field(default_factory=Counter)

    def __str__(self) -> str:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.dropped.items())) or "none"
        return f"{self.rows_kept} of {self.rows_read} intervals kept; dropped: {reasons}"


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    name = path.name.lower().removesuffix(".gz")
    for suffix, kind in ((".bed", "bed"), (".csv", "csv"), (".tsv", "tsv"), (".txt", "tsv"),
                         (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(suffix):
            return kind
    raise IntervalError(f"cannot tell the format of {path.name}; pass format='bed'|'csv'|'tsv'|'parquet'")


def _read_bed(path: Path) -> pl.DataFrame:
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    rows = []
    with opener(path, "rt") as fh:
        for line in fh:
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            rows.append(line.rstrip("\n\r").split("\t"))
    width = max((len(r) for r in rows), default=3)
    if width < 3:
        raise IntervalError(f"{path.name}: BED needs at least 3 tab-separated columns (chrom, start, end)")
    width = min(width, len(BED_COLUMNS))
    cols = {c: [r[i] if i < len(r) else None for r in rows] for i, c in enumerate(BED_COLUMNS[:width])}
    return pl.DataFrame(cols, schema={c: pl.String for c in cols})


def read_intervals(
    path: str | Path,
    format: str | None = None,
    contig_lengths: Mapping[str, int] | None = None,
    require_label: bool = False,
    on_invalid: str = "error",
) -> tuple[pl.DataFrame, IntervalReport]:
    """Read an interval file and validate it (see :func:`validate_intervals`)."""
    path = Path(path)
    if not path.is_file():
        raise IntervalError(f"interval file not found: {path}")
    kind = _format_of(path, format)
    if kind == "bed":
        df = _read_bed(path)
    elif kind == "parquet":
        df = pl.read_parquet(path)
    elif kind in ("csv", "tsv"):
        df = pl.read_csv(path, separator="," if kind == "csv" else "\t", infer_schema_length=10000)
    else:
        raise IntervalError(f"unknown format {kind!r}; use 'bed', 'csv', 'tsv' or 'parquet'")
    return validate_intervals(df, contig_lengths, require_label, on_invalid)


def validate_intervals(
    df: pl.DataFrame,
    contig_lengths: Mapping[str, int] | None = None,
    require_label: bool = False,
    on_invalid: str = "error",
) -> tuple[pl.DataFrame, IntervalReport]:
    """Normalise column names and types and check every row.

    Checks: integer ``start``/``end`` with ``0 <= start < end``; with
    ``contig_lengths`` (e.g. ``Genome.contigs``), a known contig and
    ``end <= length`` ('chr20' and '20' are matched when unambiguous); ``strand``
    in + - .; with ``require_label``, a non-missing ``label``.
    """
    if on_invalid not in ("error", "skip"):
        raise ValueError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}")
    df = df.rename({c: COLUMN_ALIASES[c.lower()] for c in df.columns if c.lower() in COLUMN_ALIASES})
    missing = [c for c in ("chrom", "start", "end") if c not in df.columns]
    if missing:
        raise IntervalError(f"interval table lacks column(s) {missing}; it has {df.columns}")
    if require_label and "label" not in df.columns:
        raise IntervalError(f"labels required but the table has no 'label' column; it has {df.columns}")
    df = df.with_columns(
        pl.col("chrom").cast(pl.String),
        pl.col("start").cast(pl.Int64, strict=False).alias("start"),
        pl.col("end").cast(pl.Int64, strict=False).alias("end"),
    )
    if "strand" in df.columns:
        df = df.with_columns(pl.col("strand").cast(pl.String).fill_null("."))
    if "label" in df.columns and df["label"].dtype == pl.String:
        # text files spell a missing label as "", NA, nan or "."; integer labels become Int64
        label = pl.col("label").str.strip_chars()
        df = df.with_columns(
            pl.when(label.str.to_lowercase().is_in(["", "na", "nan", ".", "none", "null"]))
            .then(None).otherwise(label).alias("label")
        )
        as_int = df["label"].cast(pl.Int64, strict=False)
        if as_int.null_count() == df["label"].null_count():
            df = df.with_columns(as_int.alias("label"))
    checks: list[tuple[str, pl.Expr]] = [
        ("non_integer_coordinates", pl.col("start").is_null() | pl.col("end").is_null()),
        ("negative_start", pl.col("start") < 0),
        ("start_not_before_end", pl.col("start") >= pl.col("end")),
    ]
    if "strand" in df.columns:
        checks.append(("bad_strand", ~pl.col("strand").is_in(["+", "-", "."])))
    if require_label:
        checks.append(("missing_label", pl.col("label").is_null()))
    if contig_lengths is not None:
        from .fasta import contig_aliases

        rename = {}
        for c in df["chrom"].unique().drop_nulls().to_list():
            if c not in contig_lengths:
                hits = [a for a in contig_aliases(c) if a in contig_lengths]
                if len(hits) == 1:
                    rename[c] = hits[0]
        if rename:
            df = df.with_columns(pl.col("chrom").replace(rename))
        lengths = pl.DataFrame({"chrom": list(contig_lengths), "_len": list(contig_lengths.values())},
                               schema={"chrom": pl.String, "_len": pl.Int64})
        df = df.join(lengths, on="chrom", how="left", maintain_order="left")
        checks += [("unknown_contig", pl.col("_len").is_null()),
                   ("end_beyond_contig", pl.col("end") > pl.col("_len"))]
    flags = df.select([expr.fill_null(False).alias(name) for name, expr in checks])
    bad_any = np.zeros(df.height, dtype=bool)
    report = IntervalReport(rows_read=df.height)
    for name in flags.columns:
        mask = flags[name].to_numpy()
        fresh = mask & ~bad_any  # count each row under its first failing check only
        if fresh.any():
            report.dropped[name] = int(fresh.sum())
        bad_any |= mask
    if bad_any.any() and on_invalid == "error":
        rows = df.filter(pl.Series(bad_any)).head(5).select([c for c in ("chrom", "start", "end") if c in df.columns])
        hint = ""
        if report.dropped.get("unknown_contig") and contig_lengths is not None:
            hint = f" Known contigs: {', '.join(list(contig_lengths)[:25])}."
        raise IntervalError(
            f"{int(bad_any.sum())} invalid interval(s) ({dict(report.dropped)}); first: "
            f"{rows.rows()}.{hint} Fix the file or pass on_invalid='skip' to drop and count them."
        )
    df = df.filter(~pl.Series(bad_any))
    if "_len" in df.columns:
        df = df.drop("_len")
    report.rows_kept = df.height
    return df, report


# ------------------------------------------------------------------ region split
@dataclass
class SplitReport:
    """How a region split went: blocks and windows per split and windows dropped at borders."""

    block_size: int
    blocks: dict[str, int]
    windows: dict[str, int]
    dropped_at_borders: int

    def __str__(self) -> str:
        return (f"region split ({self.block_size:,} bp blocks): blocks {self.blocks}, windows "
                f"{self.windows}, {self.dropped_at_borders} window(s) dropped on borders between splits")


def region_split(
    df: pl.DataFrame,
    block_size: int = 1_000_000,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> tuple[pl.DataFrame, SplitReport]:
    """Add a ``split`` column (train / val / test) by whole genomic blocks.

    Each contig is cut into ``block_size`` blocks; a window belongs to the
    block of its midpoint, and blocks (shuffled with ``seed``) go to test, then
    val, until each holds about its fraction of the windows; the rest are train.
    A window that reaches into a block of another split is dropped (counted),
    so windows of different splits never overlap (see :func:`split_overlaps`).
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    if df.height == 0:
        raise IntervalError("region_split got no windows")
    mid = (df["start"] + df["end"]) // 2
    block = df["chrom"] + ":" + (mid // block_size).cast(pl.String)
    counts = block.value_counts(sort=False)
    names = sorted(counts[block.name].to_list())
    per_block = dict(zip(counts[block.name].to_list(), counts["count"].to_list()))
    rng = np.random.default_rng(seed)
    order = [names[i] for i in rng.permutation(len(names))]
    total = df.height
    targets = {"test": fractions[2] * total, "val": fractions[1] * total}
    assign, filled = {}, {"test": 0, "val": 0}
    for b in order:
        # a block that would overshoot its split's target by > 20% goes to the next split
        split = next((s for s in ("test", "val") if filled[s] < targets[s]
                      and (filled[s] == 0 or filled[s] + per_block[b] <= 1.2 * targets[s])), "train")
        assign[b] = split
        if split != "train":
            filled[split] += per_block[b]
    out = df.with_columns(block.replace_strict(assign).alias("split"))
    # the split of the blocks holding each window's first and last base
    first = out["chrom"] + ":" + (out["start"] // block_size).cast(pl.String)
    last = out["chrom"] + ":" + ((out["end"] - 1) // block_size).cast(pl.String)
    split_of = lambda s: s.replace_strict(assign, default="train")  # noqa: E731 - unseen blocks hold no window
    crosses = (split_of(first) != out["split"]) | (split_of(last) != out["split"])
    spans_far = (out["end"] - out["start"]) > block_size
    bad = crosses | spans_far
    out = out.filter(~bad)
    report = SplitReport(
        block_size=block_size,
        blocks={s: sum(v == s for v in assign.values()) for s in SPLITS},
        windows={s: int((out["split"] == s).sum()) for s in SPLITS},
        dropped_at_borders=int(bad.sum()),
    )
    return out, report


def split_overlaps(df: pl.DataFrame, split_column: str = "split") -> int:
    """Number of windows that overlap (>= 1 bp) a window of a different split; 0 is leak-free."""
    n_bad = 0
    for _, part in df.sort(["chrom", "start"]).group_by("chrom", maintain_order=True):
        starts, ends = part["start"].to_numpy(), part["end"].to_numpy()
        splits = part[split_column].to_list()
        flagged = np.zeros(part.height, dtype=bool)
        reach: dict[str, tuple[int, int]] = {}  # split -> (max end so far, row of it)
        for i, (s, e, sp) in enumerate(zip(starts, ends, splits)):
            for other, (max_end, j) in reach.items():
                if other != sp and max_end > s:
                    flagged[i] = flagged[j] = True
            if sp not in reach or e > reach[sp][0]:
                reach[sp] = (int(e), i)
        n_bad += int(flagged.sum())
    return n_bad


def assert_no_split_overlap(df: pl.DataFrame, split_column: str = "split") -> None:
    """Raise :class:`IntervalError` if any window overlaps a window of another split."""
    n = split_overlaps(df, split_column)
    if n:
        raise IntervalError(f"{n} window(s) overlap a window of a different split: the split leaks")


def attach_sequences(df: pl.DataFrame, genome, pad: bool = True, column: str = "sequence") -> pl.DataFrame:
    """Add the (strand-aware) sequence of each interval; with ``pad`` ends past a contig become N."""
    seqs = []
    strands = df["strand"].to_list() if "strand" in df.columns else ["+"] * df.height
    for chrom, start, end, strand in zip(df["chrom"].to_list(), df["start"].to_list(), df["end"].to_list(), strands):
        if pad:
            length = end - start
            seqs.append(genome.window(chrom, start + length // 2, length, strand or "+").sequence)
        else:
            seqs.append(genome.fetch(chrom, start, end, strand or "+"))
    return df.with_columns(pl.Series(column, seqs, dtype=pl.String))
