"""Variants from VCF (.vcf, .vcf.gz) and combivep ``.cbv`` files, normalised against a genome.

A variant table is a polars DataFrame with ``chrom`` (str), ``pos`` (int, **1-based**
as in VCF), ``ref``, ``alt`` (upper-case, one ALT per row) and, when known,
``label`` (int), ``id``, ``kind`` (snv / mnv / insertion / deletion / complex).

:func:`normalize_variants` checks every REF against the genome. A mismatch is
fixed only when the fix is certain and unique:

* ``strand_flip``: the reverse complement of REF matches (same-length alleles);
  both alleles are reverse-complemented;
* ``ref_alt_swap``: ALT matches the genome and REF does not; the alleles swap;
* ``flip_and_swap``: the reverse complement of ALT matches;

anything else is dropped (``dropped_ref_mismatch``; ``dropped_ambiguous_fix``
when two fixes disagree). Duplicates are dropped after normalisation (and
every copy when their labels disagree). Every case is counted in the
:class:`VariantReport`; nothing is changed or dropped silently.
"""
from __future__ import annotations

import gzip
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from .fasta import Genome, UnknownContigError
from .tokenizer import reverse_complement

FIXES = ("strand_flip", "ref_alt_swap", "flip_and_swap")
_DNA = set("ACGTN")
_SCHEMA = {"chrom": pl.String, "pos": pl.Int64, "id": pl.String, "ref": pl.String, "alt": pl.String}


class VariantError(ValueError):
    """A variant file that cannot be parsed, or a record that breaks the format."""


@dataclass
class VariantReport:
    """Counts of everything reading and normalising did, by case (see the module docstring)."""

    counts: Counter = field(default_factory=Counter)

    def __getitem__(self, key: str) -> int:
        return self.counts[key]

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    def __str__(self) -> str:
        return ", ".join(f"{k}: {v}" for k, v in self.as_dict().items())


def variant_kind(ref: str, alt: str) -> str:
    if len(ref) == len(alt):
        return "snv" if len(ref) == 1 else "mnv"
    if len(ref) == 1 and alt[0] == ref:
        return "insertion"
    if len(alt) == 1 and ref[0] == alt:
        return "deletion"
    return "complex"


def _with_kind(df: pl.DataFrame) -> pl.DataFrame:
    kinds = [variant_kind(r, a) for r, a in zip(df["ref"].to_list(), df["alt"].to_list())]
    return df.with_columns(pl.Series("kind", kinds, dtype=pl.String))


def trim_alleles(pos: int, ref: str, alt: str) -> tuple[int, str, str]:
    """Drop the shared suffix, then the shared prefix (keeping one anchor base), of REF and ALT."""
    while len(ref) > 1 and len(alt) > 1 and ref[-1] == alt[-1]:
        ref, alt = ref[:-1], alt[:-1]
    while len(ref) > 1 and len(alt) > 1 and ref[0] == alt[0]:
        ref, alt, pos = ref[1:], alt[1:], pos + 1
    return pos, ref, alt


def _open_text(path: Path):
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt") if gz else open(path, "rt")


def read_vcf(
    path: str | Path,
    genome: Genome | None = None,
    label_info_key: str | None = None,
    on_invalid: str = "error",
    fixes: tuple[str, ...] = FIXES,
) -> tuple[pl.DataFrame, VariantReport]:
    """Read a VCF, split multi-allelic records and, with ``genome``, normalise against it.

    ``label_info_key`` takes an integer label from that INFO key (``LABEL=1``).
    Records with symbolic (``<DEL>``, breakends), ``*`` or ``.`` ALTs are skipped
    and counted. A malformed line raises (``on_invalid="error"``) or is
    counted and skipped (``"skip"``); so is a record lacking its label.
    """
    path = Path(path)
    if not path.is_file():
        raise VariantError(f"VCF file not found: {path}")
    report = VariantReport()
    c = report.counts
    rows: list[tuple] = []
    labels: list[int | None] = []
    for lineno, line in _numbered_lines(path):
        if line.startswith("#") or not line.strip():
            continue
        c["records"] += 1
        parts = line.rstrip("\n\r").split("\t")
        try:
            if len(parts) < 5:
                raise VariantError(f"{len(parts)} tab-separated columns, a VCF record needs >= 8")
            chrom, pos_s, vid, ref, alts = parts[:5]
            if not pos_s.strip().isdigit():
                raise VariantError(f"POS {pos_s!r} is not a whole number (1-based)")
            pos = int(pos_s)
            ref = ref.upper()
            if pos < 1 or not ref or not set(ref) <= _DNA:
                raise VariantError(f"bad POS {pos_s!r} or REF {ref!r}")
            label = None
            if label_info_key is not None:
                label = _info_label(parts[7] if len(parts) > 7 else ".", label_info_key)
        except (VariantError, ValueError) as err:
            if on_invalid == "error":
                raise VariantError(
                    f"{path.name} line {lineno}: {err}. Fix the record or pass on_invalid='skip'"
                ) from None
            c["skipped_malformed"] += 1
            continue
        if label_info_key is not None and label is None:
            if on_invalid == "error":
                raise VariantError(
                    f"{path.name} line {lineno}: no {label_info_key}= label in INFO; "
                    "label every record or pass on_invalid='skip' to drop and count them"
                )
            c["skipped_missing_label"] += 1
            continue
        alt_list = alts.split(",")
        if len(alt_list) > 1:
            c["multiallelic_records"] += 1
        for alt in alt_list:
            alt = alt.upper()
            if alt.startswith("<") or "[" in alt or "]" in alt:
                c["skipped_symbolic_alt"] += 1
            elif alt in (".", "*", ""):
                c["skipped_no_alt"] += 1
            elif not set(alt) <= _DNA:
                c["skipped_invalid_alt"] += 1
            elif alt == ref:
                c["skipped_alt_equals_ref"] += 1
            else:
                p, r, a = trim_alleles(pos, ref, alt)
                c["alleles"] += 1
                rows.append((chrom, p, vid, r, a))
                labels.append(label)
    df = pl.DataFrame(rows, schema=_SCHEMA, orient="row")
    if label_info_key is not None:
        df = df.with_columns(pl.Series("label", labels, dtype=pl.Int64))
    df = _with_kind(df)
    if genome is not None:
        df = normalize_variants(df, genome, fixes=fixes, report=report)
    else:
        df = drop_duplicates(df, report)
    return df, report


def _info_label(info: str, key: str) -> int | None:
    for item in info.split(";"):
        k, _, v = item.partition("=")
        if k == key and v not in ("", "."):
            if not v.strip().lstrip("-").isdigit():
                raise VariantError(f"INFO {key}={v!r} is not a whole number (labels in INFO are integers, e.g. 0 / 1; "
                                   "text labels can come from a side table of id and label)")
            return int(v)
    return None


def _numbered_lines(path: Path):
    """(line number, line) of a plain or gzip text file; a truncated archive or bytes that are not UTF-8 are a
    VariantError naming the file and line."""
    lineno = 0
    try:
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                yield lineno, line
    except UnicodeDecodeError:
        raise VariantError(f"{path}, line {lineno + 1}: bytes that are not UTF-8; save the file as UTF-8") from None
    except (EOFError, OSError, zlib.error) as err:
        raise VariantError(f"{path}: the gzip archive is truncated or corrupt after line {lineno} ({err}); "
                           "compress it again (bgzip or gzip)") from None


def read_cbv(
    path: str | Path,
    genome: Genome | None = None,
    contigs: list[str] | None = None,
    on_invalid: str = "error",
    fixes: tuple[str, ...] = FIXES,
) -> tuple[pl.DataFrame, VariantReport]:
    """Read a combivep ``.cbv`` file: tab-separated chrom, pos (1-based hg19), ref, alt, label
    (1 = deleterious, 0 = neutral), no header. ``contigs`` keeps only those chromosomes
    (others counted as ``other_contig``); with ``genome`` the alleles are normalised."""
    path = Path(path)
    if not path.is_file():
        raise VariantError(f"cbv file not found: {path}")
    report = VariantReport()
    c = report.counts
    rows, labels = [], []
    keep = None if contigs is None else {str(x) for x in contigs}
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip() or line.startswith("#"):
                continue
            c["records"] += 1
            parts = line.split()
            problem = None
            if len(parts) < 4:
                problem = f"{len(parts)} columns, need chrom pos ref alt label"
            elif len(parts) == 4 or parts[4] in (".", "NA"):
                problem = "missing label"
            elif parts[4] not in ("0", "1"):
                problem = f"label {parts[4]!r} is not 0 or 1"
            elif not parts[1].isdigit() or not set(parts[2].upper()) <= _DNA or not set(parts[3].upper()) <= _DNA:
                problem = f"bad pos/ref/alt {parts[1:4]}"
            if problem:
                if on_invalid == "error":
                    raise VariantError(f"{path.name} line {lineno}: {problem}; fix it or pass on_invalid='skip'")
                c["skipped_missing_label" if "label" in problem else "skipped_malformed"] += 1
                continue
            chrom = parts[0]
            if keep is not None and chrom not in keep and chrom.removeprefix("chr") not in keep:
                c["other_contig"] += 1
                continue
            p, r, a = trim_alleles(int(parts[1]), parts[2].upper(), parts[3].upper())
            c["alleles"] += 1
            rows.append((chrom, p, None, r, a))
            labels.append(int(parts[4]))
    df = pl.DataFrame(rows, schema=_SCHEMA, orient="row").with_columns(
        pl.Series("label", labels, dtype=pl.Int64))
    df = _with_kind(df)
    if genome is not None:
        df = normalize_variants(df, genome, fixes=fixes, report=report)
    else:
        df = drop_duplicates(df, report)
    return df, report


def normalize_variants(
    df: pl.DataFrame,
    genome: Genome,
    fixes: tuple[str, ...] = FIXES,
    report: VariantReport | None = None,
) -> pl.DataFrame:
    """Check REF against ``genome``; fix certain mismatches, drop the rest, then drop duplicates.

    Adds ``fix`` (``none`` or the fix applied) and renames contigs to the genome's
    spelling ('chr20' -> '20'). Counts are added to ``report``; pass one to read them.
    """
    unknown = set(fixes) - set(FIXES)
    if unknown:
        raise ValueError(f"unknown fixes {sorted(unknown)}; choose from {FIXES}")
    report = report if report is not None else VariantReport()
    c = report.counts
    keep, out_chrom, out_ref, out_alt, out_fix = [], [], [], [], []
    for i, (chrom, pos, ref, alt) in enumerate(zip(df["chrom"], df["pos"], df["ref"], df["alt"])):
        try:
            name = genome.resolve(chrom)
        except UnknownContigError:
            c["dropped_unknown_contig"] += 1
            continue
        n = genome.contigs[name]
        start = pos - 1
        if start + max(len(ref), 1) > n:
            c["dropped_out_of_bounds"] += 1
            continue
        here = genome.fetch(name, start, start + len(ref))
        if ref == here:
            result = (ref, alt, "none")
        else:
            candidates = {}
            if "strand_flip" in fixes and len(ref) == len(alt) and reverse_complement(ref) == here:
                candidates.setdefault((reverse_complement(ref), reverse_complement(alt)), "strand_flip")
            if "ref_alt_swap" in fixes and start + len(alt) <= n and genome.fetch(name, start, start + len(alt)) == alt:
                candidates.setdefault((alt, ref), "ref_alt_swap")
            if "flip_and_swap" in fixes and len(ref) == len(alt) and reverse_complement(alt) == here:
                candidates.setdefault((reverse_complement(alt), reverse_complement(ref)), "flip_and_swap")
            if not candidates:
                c["dropped_ref_mismatch"] += 1
                continue
            if len(candidates) > 1:
                c["dropped_ambiguous_fix"] += 1
                continue
            (new_ref, new_alt), how = next(iter(candidates.items()))
            result = (new_ref, new_alt, how)
        c["ref_match" if result[2] == "none" else result[2]] += 1
        keep.append(i)
        out_chrom.append(name)
        out_ref.append(result[0])
        out_alt.append(result[1])
        out_fix.append(result[2])
    out = _with_kind(df[keep].with_columns(
        pl.Series("chrom", out_chrom, dtype=pl.String),
        pl.Series("ref", out_ref, dtype=pl.String),
        pl.Series("alt", out_alt, dtype=pl.String),
        pl.Series("fix", out_fix, dtype=pl.String),
    ))
    return drop_duplicates(out, report)


def drop_duplicates(df: pl.DataFrame, report: VariantReport | None = None) -> pl.DataFrame:
    """Keep the first of identical (chrom, pos, ref, alt) rows; with a ``label`` column, rows
    whose copies disagree on the label are all dropped. Counts go to ``report``."""
    report = report if report is not None else VariantReport()
    key = ["chrom", "pos", "ref", "alt"]
    if df.height == 0:
        report.counts["kept"] = 0
        return df
    df = df.with_row_index("_row")
    if "label" in df.columns:
        n_labels = df.group_by(key).agg(pl.col("label").n_unique().alias("_n_labels"), pl.len().alias("_n"))
        conflicted = n_labels.filter(pl.col("_n_labels") > 1)
        if conflicted.height:
            report.counts["dropped_conflicting_label"] += int(conflicted["_n"].sum())
            df = df.join(conflicted.select(key), on=key, how="anti")
    unique = df.unique(subset=key, keep="first", maintain_order=True)
    if df.height - unique.height:
        report.counts["dropped_duplicate"] += df.height - unique.height
    report.counts["kept"] = unique.height
    return unique.sort("_row").drop("_row")


# ------------------------------------------------------------------ windows
def variant_windows(df: pl.DataFrame, genome: Genome, flank: int = 500) -> pl.DataFrame:
    """Add ``ref_seq`` (``2 * flank + 1`` bases, + strand, upper case) with the variant's first
    REF base at index ``flank``, ``window_start`` (0-based genome coordinate of index 0; may be
    negative) and ``padded`` (N bases added beyond the contig ends)."""
    seqs, starts, pads = [], [], []
    for chrom, pos in zip(df["chrom"].to_list(), df["pos"].to_list()):
        w = genome.window(chrom, pos - 1, 2 * flank + 1)
        seqs.append(w.sequence)
        starts.append(w.start)
        pads.append(w.padded)
    return df.with_columns(
        pl.Series("window_start", starts, dtype=pl.Int64),
        pl.Series("padded", pads, dtype=pl.Int64),
        pl.Series("ref_seq", seqs, dtype=pl.String),
    )


def alt_sequence(ref_seq: str, offset: int, ref: str, alt: str) -> str:
    """``ref_seq`` with REF at ``offset`` replaced by ALT, kept at the same length.

    Exact for SNVs and MNVs. For indels the right end is cut (insertion) or
    filled with N (deletion); fetch a wider window from the genome for exact ones.
    """
    if ref_seq[offset:offset + len(ref)] != ref:
        raise VariantError(
            f"REF {ref!r} does not match the window at offset {offset} "
            f"({ref_seq[offset:offset + len(ref)]!r}); normalise variants against the genome first"
        )
    seq = ref_seq[:offset] + alt + ref_seq[offset + len(ref):]
    return seq[: len(ref_seq)] + "N" * max(0, len(ref_seq) - len(seq))


__all__ = [
    "FIXES", "VariantError", "VariantReport", "read_vcf", "read_cbv", "normalize_variants",
    "drop_duplicates", "trim_alleles", "variant_kind", "variant_windows", "alt_sequence",
]