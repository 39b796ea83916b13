import gzip
import shutil
from pathlib import Path

import pytest

from mambatune.domains.genomics.fasta import (
    Genome, GenomeError, OutOfBoundsError, UnknownContigError, bgzip_file, compression_of,
)
from mambatune.domains.genomics.fasta import main as fasta_main
from mambatune.domains.genomics.tokenizer import reverse_complement


def test_missing_index_is_built(fasta_copy):
    assert not Path(f"{fasta_copy}.fai").exists()
    with Genome(fasta_copy) as g:
        assert g.index_built
        assert g.contigs == {"20": 400_000}
        assert g.fetch("20", 60_000, 60_010) == "GATCCAGAGG"
    assert Path(f"{fasta_copy}.fai").is_file()
    with Genome(fasta_copy) as again:
        assert not again.index_built


def test_committed_slice_is_bgzip_with_index(genome):
    assert compression_of(genome.path) == "bgzip"
    assert not genome.index_built
    assert genome.fetch("20", 0, 10) == "N" * 10  # chr20 starts with 60 kb of N


def test_plain_gzip_is_refused_with_the_fix(fasta_copy, tmp_path):
    plain = tmp_path / "plain.fa.gz"
    with gzip.open(fasta_copy, "rb") as fin, gzip.open(plain, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    assert compression_of(plain) == "gzip"
    with pytest.raises(GenomeError, match="plain gzip.*bgzip"):
        Genome(plain)
    fixed = bgzip_file(plain, tmp_path / "fixed.fa.gz")
    with Genome(fixed) as g:
        assert g.fetch("20", 100_000, 100_050) == Genome(fasta_copy).fetch("20", 100_000, 100_050)
    assert fasta_main(["bgzip", str(plain), str(tmp_path / "cli.fa.gz")]) == 0
    assert compression_of(tmp_path / "cli.fa.gz") == "bgzip"


def test_uncompressed_fasta(tmp_path):
    fa = tmp_path / "tiny.fa"
    fa.write_text(">a\nACGTA\nCC\n>b\nGG\n")
    with Genome(fa) as g:
        assert g.contigs == {"a": 7, "b": 2}
        assert g.fetch("a", 3, 7) == "TACC"


def test_fetch_minus_strand_is_reverse_complement(genome):
    plus = genome.fetch("20", 123_000, 123_100)
    assert genome.fetch("20", 123_000, 123_100, strand="-") == reverse_complement(plus)
    assert set(plus) <= set("ACGTN") and len(plus) == 100


def test_unknown_contig_lists_contigs_and_aliases(genome):
    assert genome.fetch("chr20", 70_000, 70_005) == genome.fetch("20", 70_000, 70_005)
    assert genome.aliases_used == {"chr20": "20"}
    with pytest.raises(UnknownContigError, match=r"unknown contig 'chr1'.*contigs: 20.*'chr20' vs '20'"):
        genome.fetch("chr1", 0, 10)
    strict = Genome(genome.path, alias=False)
    with pytest.raises(KeyError, match="names it '20'"):
        strict.fetch("chr20", 0, 10)


def test_out_of_bounds_interval_is_an_error(genome):
    with pytest.raises(OutOfBoundsError, match="outside 20"):
        genome.fetch("20", 399_990, 400_010)
    with pytest.raises(OutOfBoundsError):
        genome.fetch("20", -5, 10)
    with pytest.raises(OutOfBoundsError):
        genome.fetch("20", 10, 10)


def test_window_pads_with_n_at_contig_ends(genome):
    w = genome.window("20", 399_995, 20)
    assert (w.start, w.end, w.pad_left, w.pad_right) == (399_985, 400_005, 0, 5)
    assert w.sequence.endswith("NNNNN") and len(w.sequence) == 20
    assert w.sequence[:15] == genome.fetch("20", 399_985, 400_000)
    left = genome.window("20", 3, 10)
    assert left.pad_left == 2 and left.padded == 2
    minus = genome.window("20", 399_995, 20, strand="-")
    assert minus.sequence == reverse_complement(w.sequence) and minus.pad_right == 5
    centred = genome.window("20", 200_000, 11)
    assert centred.sequence[5] == genome.fetch("20", 200_000, 200_001)
