"""What ``mambatune predict`` reads for a genomics run: one output row per input record, none dropped.

- a FASTA (``.fa`` / ``.fasta`` / ``.fna`` / ``.fas`` / ``.ffn``, plain or gzip): one record = one sequence,
  its id the header's first word;
- a table (CSV / TSV / parquet / JSON lines) with the run's sequence column (``data.sequence_column``,
  ``sequence`` by default): one row = one sequence, its id from ``data.id_column``, ``id`` or ``name``, else
  ``file:row``;
- regions with ``--genome``: a BED / narrowPeak, or a table with ``chrom``, ``start``, ``end`` columns (and no
  sequence column, or ``--genome`` given), read as the run read its windows (``data.window`` bp around each
  region's centre, strand-aware, N past a contig end; with ``data.flank`` the region plus its flanks); a
  region that cannot be read (bad coordinates or strand, a contig the genome lacks, past a contig end) keeps
  its row with a note;
- a VCF with ``--genome``: each variant's ref / alt windows (:func:`variant_inputs`).

A sequence is prepared as the run prepared its own: a demo run's central ``data.window`` bp, checked
against the DNA alphabet; a run on the user's files (``data.path``) cleans it as it cleaned them (upper case,
non-ACGTN read as N, ``data.max_length`` / ``data.too_long``). A record that cannot be scored keeps its row
with a ``note``; the counts go to stderr.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from mambatune.domains.genomics import DNATokenizer, Genome, GenomeError, InvalidSequenceError, read_vcf
from mambatune.domains.genomics.sequence_data import center_crop
from mambatune.domains.genomics.user_data import clean_sequences
from mambatune.domains.genomics.user_files import file_format, read_region_table, region_sequences, text_of
from mambatune.domains.genomics.vep import haplotype_windows, variant_pairs
from mambatune.domains.tables import FILE, ROW, TableError, where_row

VARIANT_FLANK = 500  # the demo variant windows are 1,001 bp with the variant at the centre
LM_TASKS = ("vep_zeroshot", "pretrain_dna")
COORDINATES = ("chrom", "start", "end")


@dataclass
class GenomicsInputs:
    """What ``predict`` scores: one row per input record. ``sequences`` (or ``refs``/``alts`` for
    variants) hold None where a record cannot be scored, and ``notes`` say why."""

    kind: str  # "sequences" | "variants"
    rows: list[dict]
    sequences: list[str | None] = field(default_factory=list)
    refs: list[str | None] = field(default_factory=list)
    alts: list[str | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


@dataclass
class Record:
    """One input record before it is prepared: its output row, its bases (None: could not be read, and
    ``unread`` says why) and where it came from (file, row / record number)."""

    row: dict
    sequence: str | None
    file: str
    line: int
    unread: str = ""


def read_fasta_records(path: Path, encoding: str = "utf-8") -> list[tuple[str, str]]:
    """(id, sequence) of every record (the id is the header's first word), empty records included; plain or
    gzip (a truncated archive, or bytes that are not ``encoding``, are a TableError naming the file)."""
    records, name, parts = [], None, []
    for line in text_of(path, encoding).splitlines():
        line = line.strip()
        if line.startswith(">"):
            if name is not None:
                records.append((name, "".join(parts)))
            name, parts = (line[1:].split() or [f"record{len(records) + 1}"])[0], []
        elif line and name is not None:
            parts.append(line)
        elif line:
            raise ValueError(f"{path}: sequence text before the first '>' header; is it a FASTA file?")
    if name is not None:
        records.append((name, "".join(parts)))
    return records


def read_inputs(source: str, recipe, genome: str | None = None) -> GenomicsInputs:
    """The records of ``source`` (a FASTA, a table of sequences, regions or a VCF; see the module docstring),
    each prepared as the run prepared its inputs."""
    cfg = recipe.data
    path = Path(source)
    if path.is_dir():
        raise ValueError(f"input {source} is a folder; genomics predict reads one file: a FASTA, a table with a "
                         f"{cfg.sequence_column!r} column, regions with --genome, or a VCF with --genome")
    if not path.is_file():
        raise FileNotFoundError(f"input {source} not found; genomics predict reads a FASTA, a table with a "
                                f"{cfg.sequence_column!r} column, regions (BED, or a table with chrom, start, end) "
                                "with --genome, or a VCF with --genome")
    fmt = file_format(source, "auto")
    if fmt == "vcf":
        if cfg.task == "promoter":
            raise ValueError(f"a promoter run scores sequences: give a FASTA, a table of sequences or regions with "
                             f"--genome, not {path.name}")
        with open_genome(genome, path) as ref:
            return variant_inputs(path, recipe, ref)
    if cfg.task == "vep":
        raise ValueError(f"a vep run scores variants: give a VCF and --genome, not {path.name}")
    if fmt == "fasta":
        records = [Record({"id": name}, seq, path.name, n) for n, (name, seq) in enumerate(read_fasta_records(path, cfg.encoding), 1)]
        if not records:
            raise ValueError(f"{path.name} has no FASTA records")
        return sequence_inputs(records, recipe)
    table = read_region_table(path, cfg.encoding)
    coordinates = all(c in table.columns for c in COORDINATES) or cfg.path and cfg.format == "regions"
    if fmt == "regions" or coordinates and (genome or cfg.sequence_column not in table.columns):
        if not genome:
            raise ValueError(f"{path.name} gives coordinates: pass --genome <reference FASTA> to read its sequences "
                             f"(a table of sequences needs a {cfg.sequence_column!r} column)")
        records, dropped = region_records(table, genome, cfg, path.name)
        out = sequence_inputs(records, recipe)
        out.counts.update({f"regions_{reason}": n for reason, n in dropped.items()})
        return out
    if cfg.sequence_column not in table.columns:
        shown = ", ".join(c for c in table.columns if c not in (FILE, ROW))
        raise TableError(f"{path.name}: no column {cfg.sequence_column!r} (the sequences; the run's "
                         f"data.sequence_column) and no chrom, start, end columns (regions, with --genome); its "
                         f"columns are {shown}")
    key = next((c for c in (cfg.id_column, "id", "name") if c and c in table.columns), None)
    files, lines = table[FILE].to_list(), table[ROW].to_list()
    ids = [str(v) for v in table[key].to_list()] if key else [f"{f}:{n}" for f, n in zip(files, lines)]
    seqs = [None if v is None else str(v) for v in table[cfg.sequence_column].to_list()]
    return sequence_inputs([Record({"id": i}, s, f, n) for i, s, f, n in zip(ids, seqs, files, lines)], recipe)


def open_genome(genome: str | None, path: Path) -> Genome:
    if not genome:
        raise ValueError(f"{path.name} gives coordinates: pass --genome <reference FASTA> to read its sequences")
    return Genome(genome)


# -- regions -------------------------------------------------------------------------------------

def region_records(table: pl.DataFrame, genome: str, cfg, name: str) -> tuple[list[Record], dict[str, int]]:
    """A record for every row of the region table: the window the run reads (``user_files.region_sequences``
    with the run's ``data.window`` / ``data.flank``), or no bases and a note saying why the region could not
    be read; and the count of unread regions by reason."""
    missing = [c for c in COORDINATES if c not in table.columns]
    if missing:
        shown = ", ".join(c for c in table.columns if c not in (FILE, ROW))
        raise TableError(f"{name}: regions need chrom, start and end columns (0-based, end exclusive, as in BED); "
                         f"it lacks {', '.join(missing)} (its columns: {shown})")
    try:
        Genome(genome).close()
    except GenomeError as err:
        raise ValueError(f"--genome {genome}: {err}") from None
    window = None if cfg.flank is not None else cfg.window
    table = table.with_columns(pl.Series("_input", range(table.height)))
    try:
        kept, info = region_sequences(table, genome, window=window, flank=cfg.flank, on_invalid="skip", where=name)
        read, dropped = dict(zip(kept["_input"].to_list(), kept["sequence"].to_list())), info["dropped"]
    except TableError:  # no region could be read (the columns and the genome are checked above)
        read, dropped = {}, {"not_read": table.height}
    strands = table["strand"].to_list() if "strand" in table.columns else ["+"] * table.height
    names = table["name"].to_list() if "name" in table.columns else [None] * table.height
    records = []
    for i, (chrom, start, end) in enumerate(zip(*(table[c].to_list() for c in COORDINATES))):
        row = {"id": str(names[i]) if names[i] not in (None, "", ".") else f"{chrom}:{start}-{end}", "chrom": chrom,
               "start": start, "end": end, "strand": strands[i], "length": region_length(start, end)}
        record = Record(row, read.get(i), table[FILE][i] if FILE in table.columns else name,
                        table[ROW][i] if ROW in table.columns else i + 1)
        if i not in read:
            record.unread = why_unread(table[i:i + 1], genome, window, cfg.flank, name)
        records.append(record)
    return records, dropped


def region_length(start, end) -> int | str:
    try:
        return int(end) - int(start)
    except (TypeError, ValueError):
        return ""


def why_unread(row: pl.DataFrame, genome: str, window: int | None, flank: int | None, name: str) -> str:
    """Why ``region_sequences`` could not read this one region: its own message, without the advice on
    ``data.on_invalid`` (which is about training data)."""
    try:
        region_sequences(row, genome, window=window, flank=flank, on_invalid="error", where=name)
    except TableError as err:
        text = str(err).split(". Fix the region")[0]
        return text.split(": ", 1)[1] if text.startswith(where_row(row, 0)) else text
    return "the region could not be read"


# -- sequences -----------------------------------------------------------------------------------

def sequence_inputs(records: list[Record], recipe) -> GenomicsInputs:
    """The records prepared as the run prepared its sequences (see the module docstring), one row each."""
    out = GenomicsInputs("sequences", [])
    prepare = user_sequence if recipe.data.path else demo_sequence
    tok = DNATokenizer(recipe.data.k)
    for record in records:
        row = dict(record.row)
        if record.unread:
            seq, note, counted = None, f"not scored: {record.unread}", ["not_scored"]
        else:
            seq, note, counted = prepare(record, recipe.data, tok)
        row.setdefault("length", len(record.sequence or ""))
        out.rows.append(row)
        out.sequences.append(seq)
        out.notes.append(note)
        out.counts.update(counted)
    out.counts["records"] = len(records)
    out.counts["scored"] = sum(s is not None for s in out.sequences)
    return out


def demo_sequence(record: Record, cfg, tok: DNATokenizer) -> tuple[str | None, str, list[str]]:
    """A demo run's input: the central ``data.window`` bp, DNA letters only; (sequence or None, note, counts)."""
    seq, window = record.sequence or "", cfg.window
    if not seq.strip():
        return None, "empty sequence: not scored", ["skipped_empty"]
    cropped = center_crop(seq, window)
    try:
        tok.encode(cropped, name=record.row["id"])
    except InvalidSequenceError as err:
        return None, f"not scored: {err}", ["skipped_invalid"]
    if len(cropped) < len(seq):
        return cropped, f"cropped to the central {window} bp (as in training)", ["cropped"]
    if window and len(seq) < window:
        return cropped, f"shorter than the trained window ({window} bp): scored as is", ["shorter_than_window"]
    return cropped, "", []


def user_sequence(record: Record, cfg, tok: DNATokenizer) -> tuple[str | None, str, list[str]]:
    """A user-data run's input, cleaned as the run cleaned its sequences; (sequence or None, note, counts)."""
    frame = pl.DataFrame({"sequence": [record.sequence], FILE: [record.file], ROW: [record.line]},
                         schema={"sequence": pl.String, FILE: pl.String, ROW: pl.Int64})
    try:
        (seq,), counts = clean_sequences(frame, "sequence", where=record.file, max_length=cfg.max_length,
                                         too_long=cfg.too_long)
    except TableError as err:
        return None, f"not scored: {err}", ["not_scored"]
    parts, counted = [], []
    if counts.rna:
        parts.append("RNA: U read as T")
        counted.append("rna_u_read_as_t")
    if counts.replaced:
        parts.append(f"{sum(counts.replaced.values())} non-ACGTN character(s) read as N")
        counted.append("non_acgtn_mapped_to_n")
    if counts.cropped:
        parts.append("cropped to its central data.max_length bases")
        counted.append("cropped")
    return seq, "; ".join(parts), counted


# -- variants ------------------------------------------------------------------------------------

def variant_inputs(path: Path, recipe, genome: Genome) -> GenomicsInputs:
    """Ref / alt windows (1,001 bp around the variant, cropped to ``data.window``) of the SNVs of a VCF,
    normalised against ``genome`` (fixes and drops counted). Other variant kinds get equal-length
    haplotype windows under a zero-shot LM run (``haplotype_windows``); a supervised run, trained on
    SNVs, keeps their rows unscored."""
    df, report = read_vcf(path, genome=genome, on_invalid="skip")
    out = GenomicsInputs("variants", [])
    out.counts.update(report.as_dict())
    if df.height == 0:
        from .user_vep import why_none_left
        raise ValueError(f"{path.name}: no variant left to score ({report}); "
                         f"{why_none_left(report.counts, genome, '--genome')}")
    ids = df["id"].to_list()
    for i, (chrom, pos, ref, alt, kind, fix) in enumerate(zip(*(df[c].to_list() for c in
                                                                 ("chrom", "pos", "ref", "alt", "kind", "fix")))):
        out.rows.append({"id": ids[i] if ids[i] not in (None, ".") else f"{chrom}:{pos}:{ref}>{alt}", "chrom": chrom,
                         "pos": pos, "ref": ref, "alt": alt, "fix": fix})
        if kind != "snv" and recipe.data.task in LM_TASKS:
            length = recipe.data.window or 2 * VARIANT_FLANK + 1
            wide_length = 2 * (length + len(ref) + len(alt)) + 1
            r, a = haplotype_windows(genome.window(chrom, pos - 1, wide_length).sequence, wide_length // 2,
                                     ref, alt, length)
            out.refs.append(r)
            out.alts.append(a)
            out.notes.append(f"{kind}: equal-length haplotype windows (REF or ALT, then the bases after it)")
            out.counts["scored_not_snv"] += 1
            continue
        if kind != "snv":
            out.refs.append(None)
            out.alts.append(None)
            out.notes.append(f"{kind}: not scored (the model was trained and is scored on SNVs)")
            out.counts["skipped_not_snv"] += 1
            continue
        window = genome.window(chrom, pos - 1, 2 * VARIANT_FLANK + 1).sequence
        r, a = variant_pairs([window], [ref], [alt], recipe.data.window)
        out.refs.append(r[0])
        out.alts.append(a[0])
        out.notes.append("")
    out.counts["scored"] = sum(r is not None for r in out.refs)
    return out
