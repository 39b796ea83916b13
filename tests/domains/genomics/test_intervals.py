import numpy as np
import polars as pl
import pytest

from mambatune.domains.genomics.intervals import (
    IntervalError, assert_no_split_overlap, attach_sequences, read_intervals, region_split, split_overlaps,
)

LENGTHS = {"20": 400_000}


def _write_bed(path, lines):
    path.write_text("track name=test\n" + "\n".join("\t".join(map(str, x)) for x in lines) + "\n")
    return path


def test_read_formats_agree(tmp_path):
    rows = [("chr20", 100, 200, "a", 0, "+", 1), ("20", 300, 400, "b", 0, "-", 0)]
    bed = _write_bed(tmp_path / "x.bed", rows)
    df = pl.DataFrame(rows, schema=["chromosome", "chromStart", "chromEnd", "name", "score", "strand", "label"],
                      orient="row")
    df.write_csv(tmp_path / "x.csv")
    df.write_csv(tmp_path / "x.tsv", separator="\t")
    df.write_parquet(tmp_path / "x.parquet")
    tables = [read_intervals(p, contig_lengths=LENGTHS, require_label=True)[0]
              for p in (bed, tmp_path / "x.csv", tmp_path / "x.tsv", tmp_path / "x.parquet")]
    for t in tables:
        assert t.select("chrom", "start", "end", "strand", "label").rows() == [
            ("20", 100, 200, "+", 1), ("20", 300, 400, "-", 0)]


def test_out_of_bounds_and_bad_rows_error_or_counted_skip(tmp_path):
    bed = _write_bed(tmp_path / "bad.bed", [
        ("20", 100, 200), ("20", 500, 400), ("20", 399_000, 400_001), ("chr7", 1, 5), ("20", -3, 5),
    ])
    with pytest.raises(IntervalError, match=r"4 invalid interval.*end_beyond_contig.*Known contigs: 20.*on_invalid='skip'"):
        read_intervals(bed, contig_lengths=LENGTHS)
    df, report = read_intervals(bed, contig_lengths=LENGTHS, on_invalid="skip")
    assert df.height == 1 and report.rows_read == 5 and report.rows_kept == 1
    assert dict(report.dropped) == {"start_not_before_end": 1, "end_beyond_contig": 1,
                                    "unknown_contig": 1, "negative_start": 1}
    assert "1 of 5 intervals kept" in str(report)


def test_missing_labels(tmp_path):
    csv = tmp_path / "l.csv"
    csv.write_text("chrom,start,end,label\n20,1,10,1\n20,20,30,\n20,40,50,NA\n")
    with pytest.raises(IntervalError, match="2 invalid.*missing_label"):
        read_intervals(csv, require_label=True)
    df, report = read_intervals(csv, require_label=True, on_invalid="skip")
    assert df["label"].to_list() == [1] and report.dropped["missing_label"] == 2
    nolabel = tmp_path / "n.csv"
    nolabel.write_text("chrom,start,end\n20,1,10\n")
    with pytest.raises(IntervalError, match="no 'label' column"):
        read_intervals(nolabel, require_label=True)
    with pytest.raises(IntervalError, match="lacks column"):
        read_intervals(nolabel, format="tsv")


def _random_windows(n=3000, length=2000, seed=1):
    rng = np.random.default_rng(seed)
    chrom = rng.choice(["1", "2"], n)
    start = rng.integers(0, 30_000_000, n)
    return pl.DataFrame({"chrom": chrom, "start": start, "end": start + length})


def test_region_split_has_zero_overlap():
    df, report = region_split(_random_windows(), block_size=500_000, seed=3)
    assert set(df["split"].unique()) == {"train", "val", "test"}
    assert split_overlaps(df) == 0
    assert_no_split_overlap(df)
    assert report.dropped_at_borders == 3000 - df.height
    assert 0.05 < report.windows["test"] / df.height < 0.2


def test_split_overlap_detector_catches_leaks():
    df = pl.DataFrame({"chrom": ["1", "1", "1", "2"], "start": [0, 150, 1000, 150], "end": [200, 300, 1100, 300],
                       "split": ["train", "test", "test", "train"]})
    assert split_overlaps(df) == 2
    with pytest.raises(IntervalError, match="leaks"):
        assert_no_split_overlap(df)


def test_attach_sequences_is_strand_aware(genome):
    df = pl.DataFrame({"chrom": ["chr20", "20"], "start": [100_000, 100_000], "end": [100_010, 100_010],
                       "strand": ["+", "-"]})
    out = attach_sequences(df, genome)
    plus, minus = out["sequence"].to_list()
    assert plus == genome.fetch("20", 100_000, 100_010)
    assert minus == genome.fetch("20", 100_000, 100_010, "-")
