import gzip

import polars as pl
import pytest

from mambatune.domains.genomics.tokenizer import reverse_complement
from mambatune.domains.genomics.vcf import (
    VariantError, alt_sequence, read_cbv, read_vcf, trim_alleles, variant_kind, variant_windows,
)

HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
POSITIONS = [100_001, 100_101, 100_201, 100_301, 100_401, 100_501, 100_601]


def _other(base, avoid):
    return next(b for b in "ACGT" if b not in avoid)


@pytest.fixture
def cases(genome):
    """1-based positions and the genome base there, with the allele pair each case writes."""
    g = {p: genome.fetch("20", p - 1, p) for p in POSITIONS}
    comp = lambda b: reverse_complement(b)  # noqa: E731
    p1, p2, p3, p4, p5, p6, p7 = POSITIONS
    x5 = _other(g[p5], {g[p5], comp(g[p5])})
    alt1 = _other(g[p1], {g[p1]})
    alt2 = _other(g[p2], {g[p2], comp(g[p2])})
    return {
        "match": (p1, g[p1], alt1),
        "strand_flip": (p2, comp(g[p2]), comp(alt2)),
        "ref_alt_swap": (p3, _other(g[p3], {g[p3], comp(g[p3])}), g[p3]),
        "flip_and_swap": (p4, _other(g[p4], {g[p4], comp(g[p4])}), comp(g[p4])),
        "mismatch": (p5, x5, comp(x5)),
        "multi": (p6, g[p6], ",".join(b for b in "ACGT" if b != g[p6])),
        "deletion": (p7, genome.fetch("20", p7 - 1, p7 + 2), g[p7]),
    }


def _vcf_lines(cases, labels=True):
    lines = []
    for i, (name, (pos, ref, alt)) in enumerate(cases.items()):
        info = f"LABEL={i % 2}" if labels else "."
        lines.append(f"chr20\t{pos}\t{name}\t{ref}\t{alt}\t.\tPASS\t{info}")
    return lines


def test_vcf_normalisation_counts_every_case(genome, cases, tmp_path):
    lines = _vcf_lines(cases)
    lines += [lines[0], "20\t100700\tsv\tA\t<DEL>\t.\tPASS\tLABEL=0", "7\t100\tother\tA\tG\t.\tPASS\tLABEL=0"]
    path = tmp_path / "x.vcf.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(HEADER + "\n".join(lines) + "\n")
    df, report = read_vcf(path, genome, label_info_key="LABEL")
    c = report.as_dict()
    assert c["records"] == 10 and c["multiallelic_records"] == 1 and c["skipped_symbolic_alt"] == 1
    assert c["ref_match"] == 1 + 1 + 3 + 1  # match, its duplicate, three ALTs of multi, deletion
    assert (c["strand_flip"], c["ref_alt_swap"], c["flip_and_swap"]) == (1, 1, 1)
    assert c["dropped_ref_mismatch"] == 1 and c["dropped_unknown_contig"] == 1
    assert c["dropped_duplicate"] == 1 and c["kept"] == df.height == 6 + 3 - 1
    assert set(df["chrom"]) == {"20"}  # 'chr20' resolved to the genome's name
    for pos, ref in zip(df["pos"], df["ref"]):
        assert genome.fetch("20", pos - 1, pos - 1 + len(ref)) == ref  # every kept REF is the genome's
    fixed = dict(zip(df["id"], df["fix"]))
    assert fixed["strand_flip"] == "strand_flip" and fixed["ref_alt_swap"] == "ref_alt_swap"
    assert dict(zip(df["id"], df["kind"]))["deletion"] == "deletion"


def test_vcf_without_genome_keeps_alleles_and_drops_duplicates(cases, tmp_path):
    lines = _vcf_lines(cases, labels=False)
    path = tmp_path / "x.vcf"
    path.write_text(HEADER + "\n".join(lines + [lines[1]]) + "\n")
    df, report = read_vcf(path)
    assert report["dropped_duplicate"] == 1 and df.height == 9 and "label" not in df.columns


def test_vcf_missing_labels_and_malformed_lines(cases, tmp_path):
    lines = _vcf_lines(cases)
    lines[2] = lines[2].replace("LABEL=0", "DP=3")
    path = tmp_path / "x.vcf"
    path.write_text(HEADER + "\n".join(lines + ["20\tnotanumber\t.\tA\tG\t.\t.\tLABEL=1"]) + "\n")
    with pytest.raises(VariantError, match="line 5: no LABEL= label"):
        read_vcf(path, label_info_key="LABEL")
    df, report = read_vcf(path, label_info_key="LABEL", on_invalid="skip")
    assert report["skipped_missing_label"] == 1 and report["skipped_malformed"] == 1
    assert df["label"].null_count() == 0


def test_cbv_reads_normalises_and_reports(genome, cases, tmp_path):
    rows = [(p, r, a) for name, (p, r, a) in cases.items() if name not in ("multi", "deletion")]
    text = "".join(f"20\t{p}\t{r}\t{a}\t{i % 2}\n" for i, (p, r, a) in enumerate(rows))
    text += f"20\t{rows[0][0]}\t{rows[0][1]}\t{rows[0][2]}\t0\n"  # duplicate, same label
    text += f"20\t{rows[1][0]}\t{rows[1][1]}\t{rows[1][2]}\t0\n"  # duplicate, other label: both dropped
    text += "1\t12345\tA\tG\t1\n"
    path = tmp_path / "x.cbv"
    path.write_text(text)
    df, report = read_cbv(path, genome, contigs=["20"])
    c = report.as_dict()
    assert c["other_contig"] == 1 and c["dropped_ref_mismatch"] == 1
    assert c["dropped_duplicate"] == 1 and c["dropped_conflicting_label"] == 2
    assert df.height == 3 and c["kept"] == 3
    assert df["fix"].to_list() == ["none", "ref_alt_swap", "flip_and_swap"]


def test_cbv_missing_label(tmp_path):
    path = tmp_path / "x.cbv"
    path.write_text("20\t100001\tA\tG\t1\n20\t100002\tA\tG\n20\t100003\tA\tG\t.\n")
    with pytest.raises(VariantError, match="line 2: missing label"):
        read_cbv(path)
    df, report = read_cbv(path, on_invalid="skip")
    assert report["skipped_missing_label"] == 2 and df.height == 1


def test_only_certain_fixes_are_applied(genome, cases, tmp_path):
    pos, ref, alt = cases["strand_flip"]
    path = tmp_path / "x.cbv"
    path.write_text(f"20\t{pos}\t{ref}\t{alt}\t1\n")
    df, report = read_cbv(path, genome, fixes=("ref_alt_swap",))
    assert df.height == 0 and report["dropped_ref_mismatch"] == 1
    with pytest.raises(ValueError, match="unknown fixes"):
        read_cbv(path, genome, fixes=("guess",))


def test_alleles_helpers():
    assert trim_alleles(10, "CTT", "CT") == (10, "CT", "C")
    assert trim_alleles(10, "AGC", "ATC") == (11, "G", "T")
    assert [variant_kind(*x) for x in [("A", "G"), ("AC", "GT"), ("A", "AT"), ("AT", "A"), ("AT", "GCC")]] == [
        "snv", "mnv", "insertion", "deletion", "complex"]
    assert alt_sequence("AACGT", 2, "C", "T") == "AATGT"
    assert alt_sequence("AACGT", 1, "A", "AGG") == "AAGGC"
    assert alt_sequence("AACGT", 1, "ACG", "A") == "AATNN"
    with pytest.raises(VariantError, match="does not match"):
        alt_sequence("AACGT", 2, "G", "T")


def test_variant_windows_centre_the_ref_base(genome):
    df = pl.DataFrame({"chrom": ["20", "20"], "pos": [100_001, 399_999], "ref": ["X", "X"], "alt": ["A", "A"]})
    out = variant_windows(df, genome, flank=10)
    assert out["ref_seq"].str.len_chars().to_list() == [21, 21]
    assert out["ref_seq"][0][10] == genome.fetch("20", 100_000, 100_001)
    assert out["padded"].to_list() == [0, 9] and out["window_start"][0] == 99_990
