"""Reference genome access through pyfaidx: indexed random access to FASTA or bgzip FASTA.

Coordinates are 0-based, half-open (``fetch("20", 0, 10)`` is the first ten
bases). A missing ``.fai`` index is built next to the file (``index_built`` says
so). A plain-gzip FASTA is refused with the command that converts it to bgzip;
:func:`bgzip_file` (or ``python -m mambatune.domains.genomics.fasta bgzip IN OUT``)
does the conversion without htslib installed.
"""
from __future__ import annotations

import gzip
import sys
from dataclasses import dataclass
from pathlib import Path

from .tokenizer import reverse_complement

BGZIP_HINT = (
    "convert it to bgzip: `gunzip -c {p} | bgzip > {q}` (bgzip ships with htslib/tabix), "
    "or without htslib: `python -m mambatune.domains.genomics.fasta bgzip {p} {q}`"
)


class GenomeError(ValueError):
    """A genome file that cannot be opened, or a request it cannot answer."""


class UnknownContigError(GenomeError, KeyError):
    """A contig name the genome does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class OutOfBoundsError(GenomeError, IndexError):
    """An interval that does not lie inside its contig."""


@dataclass(frozen=True)
class Window:
    """A fixed-length window; ``pad_left``/``pad_right`` count the N bases added beyond the
    contig start/end, in + strand genome orientation (before any reverse complement)."""

    sequence: str
    contig: str
    start: int
    end: int
    strand: str
    pad_left: int
    pad_right: int

    @property
    def padded(self) -> int:
        return self.pad_left + self.pad_right


def compression_of(path: str | Path) -> str:
    """``"plain"``, ``"bgzip"`` or ``"gzip"`` (gzip without the BGZF extra field)."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    if head[:2] != b"\x1f\x8b":
        return "plain"
    # BGZF: gzip with FEXTRA set and an extra subfield 'BC' (SAM/BAM spec 4.1)
    if len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC":
        return "bgzip"
    return "gzip"


def bgzip_file(src: str | Path, dst: str | Path) -> Path:
    """Write ``src`` (plain or gzip FASTA) to ``dst`` as bgzip, which pyfaidx can index."""
    from Bio import bgzf

    src, dst = Path(src), Path(dst)
    opener = gzip.open if compression_of(src) != "plain" else open
    with opener(src, "rb") as fin, bgzf.BgzfWriter(str(dst), "wb") as fout:
        while chunk := fin.read(1 << 20):
            fout.write(chunk)
    return dst


def contig_aliases(name: str) -> list[str]:
    """Other spellings of a contig name: 'chr20' <-> '20', 'chrM' <-> 'MT'."""
    if name in ("chrM", "chrMT"):
        return ["MT", "M"]
    if name in ("MT", "M"):
        return ["chrM", "chrMT"]
    return [name[3:]] if name.startswith("chr") else ["chr" + name]


class Genome:
    """Random access to a reference FASTA (plain or bgzip) by contig and 0-based coordinates.

    ``alias=True`` lets ``chr20`` find contig ``20`` (and back) when exactly one
    spelling exists; the pairs used are kept in ``aliases_used``.
    ``rebuild_index=False`` trusts an existing ``.fai`` even when it is older
    than the FASTA (for read-only installs).
    """

    def __init__(self, path: str | Path, alias: bool = True, rebuild_index: bool = True):
        import pyfaidx

        self.path = Path(path)
        if not self.path.is_file():
            raise GenomeError(f"FASTA file not found: {self.path}")
        kind = compression_of(self.path)
        if kind == "gzip":
            q = self.path.with_name("bgzip." + self.path.name)
            raise GenomeError(
                f"{self.path} is plain gzip, which allows no random access; "
                + BGZIP_HINT.format(p=self.path, q=q)
            )
        self.index_built = not Path(str(self.path) + ".fai").is_file()
        try:
            self._fasta = pyfaidx.Fasta(str(self.path), as_raw=True, sequence_always_upper=False,
                                        rebuild=rebuild_index)
        except PermissionError as err:
            raise GenomeError(
                f"cannot write the index {self.path}.fai ({err}); copy the FASTA to a writable "
                "folder or index it there with `samtools faidx`"
            ) from err
        except pyfaidx.FastaIndexingError as err:
            raise GenomeError(f"{self.path} is not a well-formed FASTA: {err}") from err
        except ValueError as err:  # pyfaidx: 'Duplicate key "20"' when two records share a name
            if "Duplicate key" not in str(err):
                raise
            raise GenomeError(f"{self.path}: two records have the name {str(err).split(' ', 2)[-1]}; a reference "
                              "genome names each contig once: rename or remove the copy") from err
        self.contigs: dict[str, int] = {name: len(rec) for name, rec in self._fasta.records.items()}
        self.alias = alias
        self.aliases_used: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Genome({str(self.path)!r}, contigs={len(self.contigs)})"

    def __contains__(self, contig: str) -> bool:
        try:
            self.resolve(contig)
        except UnknownContigError:
            return False
        return True

    def resolve(self, contig: str) -> str:
        """The genome's own name for ``contig`` (itself, or an unambiguous alias)."""
        contig = str(contig)
        if contig in self.contigs:
            return contig
        matches = [a for a in contig_aliases(contig) if a in self.contigs]
        if self.alias and len(matches) == 1:
            self.aliases_used[contig] = matches[0]
            return matches[0]
        names = list(self.contigs)
        shown = ", ".join(names[:25]) + (f", ... ({len(names)} in all)" if len(names) > 25 else "")
        hint = ""
        if matches:
            hint = f" The genome names it {matches[0]!r}; pass alias=True or rename."
        elif any(n.startswith("chr") for n in names) != contig.startswith("chr"):
            other = contig.removeprefix("chr") if contig.startswith("chr") else f"chr{contig}"
            hint = (f" Naming differs ('chr20' vs '20'), but {other!r} is not in it either: is it the genome your "
                    "coordinates refer to?")
        raise UnknownContigError(f"unknown contig {contig!r} in {self.path.name}; contigs: {shown}.{hint}")

    def length(self, contig: str) -> int:
        return self.contigs[self.resolve(contig)]

    def fetch(self, contig: str, start: int, end: int, strand: str = "+", upper: bool = True) -> str:
        """Bases ``[start, end)`` of ``contig``; ``strand='-'`` gives the reverse complement.

        Raises :class:`OutOfBoundsError` unless ``0 <= start < end <= length``.
        """
        name = self.resolve(contig)
        n = self.contigs[name]
        if not (0 <= start < end <= n):
            raise OutOfBoundsError(
                f"interval {contig}:{start}-{end} is outside {name} (0-based half-open, length {n}); "
                "need 0 <= start < end <= length — use window() to pad with N at contig ends"
            )
        seq = self._fasta[name][int(start):int(end)]
        if upper:
            seq = seq.upper()
        return reverse_complement(seq) if _strand(strand) == "-" else seq

    def window(self, contig: str, center: int, length: int, strand: str = "+", upper: bool = True) -> Window:
        """``length`` bases with ``center`` at index ``length // 2`` (+ strand), padded with N
        beyond the contig ends. For ``strand='-'`` the window is reverse-complemented."""
        if length <= 0:
            raise GenomeError(f"window length must be positive, got {length}")
        name = self.resolve(contig)
        n = self.contigs[name]
        if not 0 <= center < n:
            raise OutOfBoundsError(f"window centre {contig}:{center} is outside {name} (length {n})")
        start = int(center) - length // 2
        end = start + length
        pad_left, pad_right = max(0, -start), max(0, end - n)
        seq = "N" * pad_left + self.fetch(name, max(start, 0), min(end, n), upper=upper) + "N" * pad_right
        if _strand(strand) == "-":
            seq = reverse_complement(seq)
        return Window(seq, name, start, end, _strand(strand), pad_left, pad_right)

    def close(self) -> None:
        self._fasta.close()

    def __enter__(self) -> "Genome":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _strand(strand: str) -> str:
    if strand in ("+", ".", None, 1, "1"):
        return "+"
    if strand in ("-", -1, "-1"):
        return "-"
    raise GenomeError(f"strand must be '+', '-' or '.', got {strand!r}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] != "bgzip":
        print("usage: python -m mambatune.domains.genomics.fasta bgzip IN.fa[.gz] OUT.fa.gz", file=sys.stderr)
        return 2
    print(bgzip_file(argv[1], argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
