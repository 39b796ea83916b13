"""The committed demo data: present, small, consistent with its manifest, leak-free."""
import polars as pl
import pytest

from mambatune.domains.genomics.datasets import DATA_DIR, load_promoters, load_variants, manifest
from mambatune.domains.genomics.intervals import split_overlaps
from mambatune.domains.genomics.tokenizer import clean_sequence, reverse_complement


def test_committed_files_are_small():
    files = [p for p in DATA_DIR.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {"promoter_chr20.parquet", "vep_chr20.parquet", "chr20_0-400k.fa.gz",
                                      "chr20_0-400k.fa.gz.fai", "manifest.json", "README.md"}
    assert sum(p.stat().st_size for p in files) < 8_000_000


def test_promoters_match_manifest_and_do_not_leak():
    m = manifest()["promoter"]
    df = load_promoters("multiclass")
    for name, cid in (("non_promoter", 0), ("protein_coding", 1), ("lncRNA", 2)):
        for split, n in m["rows"][name].items():
            assert df.filter((pl.col("class_id") == cid) & (pl.col("split") == split)).height == n
    assert split_overlaps(df) == 0
    assert (df["sequence"].str.len_chars() == m["window"]).all()
    assert df["label"].null_count() == 0
    binary = load_promoters("binary")
    assert set(binary["label"].unique()) == {0, 1}
    assert load_promoters(split="test")["split"].unique().to_list() == ["test"]
    for seq in df["sequence"].head(50):
        clean_sequence(seq)  # valid DNA
    with pytest.raises(ValueError, match="unknown split"):
        load_promoters(split="holdout")


def test_promoter_sequences_are_strand_aware(genome):
    df = load_promoters().filter(pl.col("end") <= 400_000)
    assert df.height >= 4  # the DEFB cluster lies in the bundled slice
    for row in df.iter_rows(named=True):
        plus = genome.fetch("20", row["start"], row["end"])
        assert row["sequence"] == (plus if row["strand"] == "+" else reverse_complement(plus))


def test_variants_match_manifest_and_genome(genome):
    m = manifest()["vep"]
    df = load_variants()
    for key, n in m["rows"].items():
        split, label = key.split("/label")
        assert df.filter((pl.col("split") == split) & (pl.col("label") == int(label))).height == n
    flank = m["flank"]
    assert (df["ref_seq"].str.len_chars() == 2 * flank + 1).all()
    assert (df["ref_seq"].str.slice(flank, 1) == df["ref"]).all()
    in_slice = df.filter(pl.col("pos") + flank < 400_000)
    for row in in_slice.head(20).iter_rows(named=True):
        assert genome.fetch("20", row["pos"] - 1, row["pos"]) == row["ref"]
    labelled = load_variants(["train", "val", "test"])
    windows = labelled.with_columns(pl.col("window_start").alias("start"),
                                    (pl.col("window_start") + 2 * flank + 1).alias("end"))
    assert split_overlaps(windows) == 0
    counts = m["combivep_training"]
    assert counts["ref_match"] + counts["strand_flip"] + counts["ref_alt_swap"] + counts["flip_and_swap"] \
        + counts["dropped_ref_mismatch"] == counts["alleles"]
