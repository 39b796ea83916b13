"""A user's FASTA and region files as one table per file set: a row per sequence, with the columns of
``domains.tables`` (:data:`FILE`, :data:`ROW`) so every later error can name the record.

FASTA (``.fa .fasta .fna .fas``, gzip or bgzip too; read with Biopython): one row per record, with
``id`` (the first word of the header), ``description`` (the rest) and ``sequence``. Labels come from
the header, by ``header_label``:

- ``pipe``: ``>seq17|1`` -> id ``seq17``, label ``1`` (the last ``|``-separated field of the first word);
- ``key``: ``>seq17 label=1`` -> label ``1`` (``<key>=<value>`` anywhere in the header, separated from
  other fields by spaces, ``;`` or ``|``; the key is the recipe's label column);
- ``auto``: ``key`` when every header has the key, else ``pipe`` when every first word holds a ``|``,
  else no label column (labels then come from a side table, :func:`attach_labels`);
- ``none``: no labels from the header.

Regions (BED, narrowPeak, broadPeak, or a table with chrom / start / end columns; a BED file's first line may
name its columns, ``chrom  start  end  name  label``, instead of the positions): 0-based half-open
coordinates as in BED; the sequence of each region is read from a reference FASTA (:class:`~.fasta.Genome`):
``window`` bp around the region's centre, or the region plus ``flank`` bp on each side, or the region
itself; a region on the minus strand is reverse-complemented. A region that is not inside its contig
(unknown contig, start < 0, start >= end, end past the contig end, a coordinate that is not a whole
number such as ``100.5``, a strand other than + - .) is a :class:`TableError` naming the file and line,
or with ``on_invalid="skip"`` is dropped and counted by reason. Windows that reach past a contig end are
padded with N and counted.
"""
from __future__ import annotations

import gzip
import io
from collections import Counter
from pathlib import Path

import polars as pl

from mambatune.domains.tables import FILE, ROW, TableError, find_files, read_table, where_row

FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fas", ".ffn")
REGION_SUFFIXES = (".bed", ".narrowpeak", ".broadpeak")
VCF_SUFFIXES = (".vcf",)
BED_COLUMNS = ("chrom", "start", "end", "name", "score", "strand", "label")
PEAK_COLUMNS = ("chrom", "start", "end", "name", "score", "strand", "signalValue", "pValue", "qValue", "peak")
REGION_ALIASES = {"chr": "chrom", "chromosome": "chrom", "contig": "chrom", "seqname": "chrom", "#chrom": "chrom",
                  "chromstart": "start", "begin": "start", "chromend": "end", "stop": "end"}


def bare_name(path: str | Path) -> str:
    name = Path(str(path)).name.lower()
    for suffix in (".gz", ".bgz"):
        name = name.removesuffix(suffix)
    return name


def file_format(path: str, fmt: str = "auto") -> str:
    """``table`` | ``fasta`` | ``regions`` | ``vcf`` of ``path`` (a file, folder or glob): ``fmt`` when it is
    not ``auto``, else from the name of the first file it names."""
    if fmt != "auto":
        return fmt
    name = bare_name(path)
    if not name.endswith(FASTA_SUFFIXES + REGION_SUFFIXES + VCF_SUFFIXES):
        files = find_any(path)
        name = bare_name(files[0]) if files else name
    if name.endswith(FASTA_SUFFIXES):
        return "fasta"
    if name.endswith(REGION_SUFFIXES):
        return "regions"
    if name.endswith(VCF_SUFFIXES):
        return "vcf"
    return "table"


def find_any(path: str | Path, suffixes: tuple[str, ...] = ()) -> list[Path]:
    """The files ``path`` names (a file, a glob, or a folder's files ending in ``suffixes``), sorted."""
    import glob

    text = str(path)
    if any(ch in text for ch in "*?["):
        return sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
    p = Path(text)
    if p.is_dir():
        return sorted(f for f in p.iterdir() if f.is_file() and (not suffixes or bare_name(f).endswith(suffixes)))
    return [p] if p.is_file() else []


def text_of(path: Path, encoding: str = "utf-8") -> str:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)  # bgzip is a series of gzip members: this reads them all
        except (EOFError, OSError) as err:
            raise TableError(f"{path}: the gzip archive is truncated or corrupt ({err}); compress it again") from None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise TableError(f"{path}, line {line}: bytes that are not {encoding}; save the file as UTF-8 or set "
                         "data.encoding (e.g. data.encoding=latin-1)") from None


def files_of(path: str | Path, suffixes: tuple[str, ...], what: str) -> list[Path]:
    files = find_any(path, suffixes)
    if not files:
        raise TableError(f"{what} {str(path)!r} not found (a file, a folder of {', '.join(suffixes)} files, or a "
                         "glob); check data.path")
    return files


# -- FASTA ---------------------------------------------------------------------------------------

def read_fasta_table(path: str | Path, *, header_label: str = "auto", label_key: str = "label",
                     encoding: str = "utf-8") -> pl.DataFrame:
    """Every record of the FASTA file(s) ``path`` names: ``id``, ``description``, ``sequence``, and
    ``label_key`` when the headers hold labels (see the module docstring); :data:`FILE`, :data:`ROW`
    (the record's number in its file)."""
    from Bio import SeqIO

    frames = []
    for f in files_of(path, FASTA_SUFFIXES, "FASTA file"):
        text = text_of(f, encoding)
        first = next((line for line in text.splitlines() if line.strip()), None)
        if first is None:
            raise TableError(f"{f} is empty: a FASTA file needs records ('>id' then the sequence lines)")
        if not first.startswith(">"):
            raise TableError(f"{f}, line 1: a FASTA file starts with a '>' header line, this one starts with "
                             f"{first[:30]!r}; is it a FASTA file? (tables need a .csv / .tsv / .parquet name)")
        records = [(r.id, r.description, str(r.seq)) for r in SeqIO.parse(io.StringIO(text), "fasta")]
        empty = [i for i, r in enumerate(records) if not r[2].strip()]
        if empty:
            raise TableError(f"{f}, record {empty[0] + 1} ({records[empty[0]][0]!r}): no sequence under the header; "
                             "every record needs its bases")
        nameless = [i for i, r in enumerate(records) if not r[0].strip()]
        if nameless:
            raise TableError(f"{f}, record {nameless[0] + 1}: a '>' header with no id ({len(nameless)} such "
                             "record(s)); give every record a name after the '>' (e.g. '>seq1')")
        ids = [r[0] for r in records]
        labels = header_labels(f, records, header_label, label_key)
        if labels is not None and header_label_kind(records, header_label, label_key) == "pipe":
            ids = [i.rsplit("|", 1)[0] for i in ids]
        cols = {"id": ids, "description": [r[1] for r in records], "sequence": [r[2] for r in records]}
        if labels is not None:
            cols[label_key] = labels
        frame = pl.DataFrame(cols, schema={c: pl.String for c in cols})
        frames.append(frame.with_columns(pl.Series(ROW, range(1, len(records) + 1), dtype=pl.Int64),
                                         pl.lit(f.name).alias(FILE)))
    columns = {tuple(fr.columns) for fr in frames}
    if len(columns) > 1:
        raise TableError(f"the FASTA files of {path} do not all carry labels in their headers the same way; "
                         "label every header, or none and give data.labels_path")
    return pl.concat(frames)


def header_label_kind(records: list[tuple], header_label: str, key: str) -> str:
    if header_label != "auto":
        return header_label
    if records and all(has_key(r[1], key) for r in records):
        return "key"
    if records and all("|" in r[0] for r in records):
        return "pipe"
    return "none"


def has_key(header: str, key: str) -> bool:
    return key_value(header, key) is not None


def key_value(header: str, key: str) -> str | None:
    for field in header.replace(";", " ").replace("|", " ").split():
        k, sep, v = field.partition("=")
        if sep and k == key:
            return v
    return None


def header_labels(path: Path, records: list[tuple], header_label: str, key: str) -> list[str] | None:
    kind = header_label_kind(records, header_label, key)
    if kind == "none":
        return None
    out = []
    for i, (rid, desc, _) in enumerate(records):
        value = key_value(desc, key) if kind == "key" else (rid.rsplit("|", 1)[1] if "|" in rid else None)
        if value is None or not value.strip():
            how = f"'{key}=<label>' in the header" if kind == "key" else "'>id|label'"
            raise TableError(f"{path}, record {i + 1} ({rid!r}): no label in the header (data.header_label={kind}: "
                             f"{how}); label every record, or set data.header_label=none and give data.labels_path")
        out.append(value.strip())
    return out


def attach_labels(df: pl.DataFrame, labels: pl.DataFrame, *, key: str, column: str, where: str) -> tuple[pl.DataFrame, list[str]]:
    """``df`` with ``column`` from the side table ``labels`` joined on ``key`` (both must have it). A record
    with no row in the side table, or an id listed twice there, is a TableError; side-table rows that match
    no record are counted in the returned notes."""
    for name, frame in (("data.labels_path", labels),):
        missing = [c for c in (key, column) if c not in frame.columns]
        if missing:
            present = [c for c in frame.columns if c not in (FILE, ROW)]
            raise TableError(f"{name}: no column {missing[0]!r} (the id column is data.id_column, default 'id'; the "
                             f"label column data.label_column); its columns are {', '.join(present)}")
    if column in df.columns:
        raise TableError(f"{where}: the records already carry labels in column {column!r} (from their headers) and "
                         "data.labels_path is set too; use one of them (data.header_label=none ignores the headers)")
    ids = labels[key].cast(pl.String).str.strip_chars()
    dup = ids.is_duplicated()
    if dup.any():
        i = int(dup.arg_max())
        raise TableError(f"{where_row(labels, i)}: id {ids[i]!r} is listed more than once in data.labels_path; "
                         "give each id one label")
    side = pl.DataFrame({"_id": ids, column: labels[column]})
    joined = df.with_columns(pl.col(key).cast(pl.String).str.strip_chars().alias("_id")).join(
        side, on="_id", how="left", maintain_order="left")
    missing = joined[column].is_null() & ~pl.Series(df[key]).is_null()
    if missing.any():
        i = int(missing.arg_max())
        raise TableError(f"{where_row(df, i)}: id {df[key][i]!r} has no row in data.labels_path "
                         f"({int(missing.sum())} record(s) lack one); add their labels or remove the records")
    unused = side.height - side.join(joined.select("_id"), on="_id", how="semi").height
    notes = [f"{unused} row(s) of data.labels_path match no record and were not used"] if unused else []
    return joined.drop("_id"), notes


# -- regions -------------------------------------------------------------------------------------

def read_region_table(path: str | Path, encoding: str = "utf-8") -> pl.DataFrame:
    """A BED / narrowPeak / broadPeak file (no header; columns by position, see ``BED_COLUMNS`` /
    ``PEAK_COLUMNS``, further columns ``col<n>``) or a table file with chrom / start / end columns
    (aliases such as chromStart are renamed), every column as text, with :data:`FILE` and :data:`ROW`
    (the line number in the file)."""
    if not bare_name(path).endswith(REGION_SUFFIXES) and not any(
            bare_name(f).endswith(REGION_SUFFIXES) for f in find_any(path, REGION_SUFFIXES)):
        df = read_table(path, encoding=encoding)
        return df.rename({c: REGION_ALIASES[c.lower()] for c in df.columns if c.lower() in REGION_ALIASES})
    frames = []
    for f in files_of(path, REGION_SUFFIXES, "region file"):
        names = PEAK_COLUMNS if bare_name(f).endswith((".narrowpeak", ".broadpeak")) else BED_COLUMNS
        rows, lines, header = [], [], None
        for n, line in enumerate(text_of(f, encoding).splitlines(), 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            parts = line.rstrip("\r").split("\t")
            if len(parts) < 3:
                spaced = " (its fields look separated by spaces: a BED file separates them by tabs)" \
                    if len(line.split()) >= 3 else ""
                raise TableError(f"{f}, line {n}: {len(parts)} tab-separated column(s){spaced}; a BED line needs at "
                                 "least chrom, start and end separated by tabs")
            if not rows and header is None and is_header(parts):
                header = [REGION_ALIASES.get(p.strip().lower(), p.strip().lower()) for p in parts]
                continue
            rows.append(parts)
            lines.append(n)
        if not rows:
            raise TableError(f"{f} holds no regions (only blank, comment, track or header lines)")
        width = max(len(r) for r in rows)
        if header is not None:  # a header line (chrom, start, end, ...) names the columns, as a table's would
            names = header
        cols = [names[i] if i < len(names) and names[i] else f"col{i + 1}" for i in range(width)]
        if len(set(cols)) < len(cols):
            raise TableError(f"{f}: the header line names a column twice ({', '.join(cols)}); give each its own name")
        data = {c: [r[i] if i < len(r) else None for r in rows] for i, c in enumerate(cols)}
        frame = pl.DataFrame(data, schema={c: pl.String for c in cols})
        frames.append(frame.with_columns(pl.Series(ROW, lines, dtype=pl.Int64), pl.lit(f.name).alias(FILE)))
    try:
        return pl.concat(frames, how="diagonal")
    except Exception as err:
        raise TableError(f"the region files of {path} cannot be read together ({err})") from None


def is_header(parts: list[str]) -> bool:
    """A BED line that names columns ('chrom  start  end ...') rather than giving a region: its start and end
    fields are names, not numbers."""
    names = {REGION_ALIASES.get(p.strip().lower(), p.strip().lower()) for p in parts}
    return all(whole(p) is None for p in parts[1:3]) and ("chrom" in names or {"start", "end"} <= names)


def region_sequences(df: pl.DataFrame, genome_path: str | Path, *, window: int | None, flank: int | None,
                     on_invalid: str = "error", where: str = "data") -> tuple[pl.DataFrame, dict]:
    """``df`` (chrom, start, end, optional strand) with a ``sequence`` column read from the genome (see the
    module docstring) and the counts of what was done: regions kept, dropped by reason, windows padded."""
    from .fasta import Genome, GenomeError, UnknownContigError

    missing = [c for c in ("chrom", "start", "end") if c not in df.columns]
    if missing:
        present = [c for c in df.columns if c not in (FILE, ROW)]
        raise TableError(f"{where}: a region table needs chrom, start and end columns (0-based, end exclusive, as "
                         f"in BED); it lacks {', '.join(missing)} (its columns: {', '.join(present)})")
    if on_invalid not in ("error", "skip"):
        raise ValueError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}")
    try:
        genome = Genome(genome_path)
    except GenomeError as err:
        raise TableError(f"data.genome: {err}") from None
    strands = df["strand"].to_list() if "strand" in df.columns else ["+"] * df.height
    keep, seqs, dropped, padded = [], [], Counter(), 0
    for i, (chrom, s, e, strand) in enumerate(zip(df["chrom"].to_list(), df["start"].to_list(),
                                                  df["end"].to_list(), strands)):
        problem, reason = None, None
        start, end = whole(s), whole(e)
        strand = "+" if strand in (None, "", ".") else str(strand).strip()
        if start is None or end is None:
            problem, reason = f"start {s!r} / end {e!r} must be whole numbers (0-based, as in BED)", "bad_coordinate"
        elif start < 0 or start >= end:
            problem, reason = f"start {start} must be >= 0 and below end {end}", "bad_coordinate"
        elif strand not in ("+", "-"):
            problem, reason = f"strand {strand!r} must be '+', '-' or '.'", "bad_strand"
        else:
            try:
                name = genome.resolve(str(chrom))
            except UnknownContigError as err:
                problem, reason = str(err), "unknown_contig"
            else:
                if end > genome.contigs[name]:
                    problem = f"end {end:,} is past the end of contig {name} ({genome.contigs[name]:,} bp)"
                    reason = "off_contig_end"
        if problem:
            if on_invalid == "error":
                raise TableError(f"{where_row(df, i)}: {problem if problem.endswith(('.', '?')) else problem + '.'} Fix the region, or set "
                                 "data.on_invalid=skip to drop such regions (counted in the report)")
            dropped[reason] += 1
            continue
        if window is not None:
            w = genome.window(name, (start + end) // 2, window, strand)
        elif flank:
            w = genome.window(name, (start - flank + end + flank) // 2, end - start + 2 * flank, strand)
        else:
            w = genome.window(name, (start + end) // 2, end - start, strand)
        padded += w.padded > 0
        keep.append(i)
        seqs.append(w.sequence)
    genome.close()
    if not keep:
        raise TableError(f"{where}: no region is left after dropping {sum(dropped.values())} invalid ones "
                         f"({dict(dropped)})")
    out = df[keep].with_columns(pl.Series("sequence", seqs, dtype=pl.String))
    how = (f"{window:,} bp around each region's centre" if window is not None else
           f"each region plus {flank:,} bp on each side" if flank else "each region as it is")
    return out, {"regions_read": df.height, "regions_kept": len(keep), "dropped": dict(dropped),
                 "windows_padded_with_n_past_contig_end": int(padded), "sequence": how,
                 "minus_strand_reverse_complemented": int(sum(strands[i] == "-" for i in keep))}


def whole(value) -> int | None:
    """An integer coordinate from text or a number; None for anything else (``100.5``, ``''``, ``1e3``)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else None
