"""A user's DNA data: sequence cleaning, label kinds, FASTA headers and side tables, regions, the tuned
baselines, the tokenizer saved beside a checkpoint."""
import json

import numpy as np
import polars as pl
import pytest

from mambatune.domains.genomics import DNATokenizer, reverse_complement
from mambatune.domains.genomics.baselines import baseline_scores, tuned_baseline
from mambatune.domains.genomics.datasets import SLICE_FILE, data_path
from mambatune.domains.genomics.metrics import multilabel_metrics, regression_metrics
from mambatune.domains.genomics.tokenizer import TokenizerMismatchError
from mambatune.domains.genomics.user_data import SequenceCounts, clean_sequences, label_space
from mambatune.domains.genomics.user_files import (
    attach_labels, file_format, read_fasta_table, read_region_table, region_sequences,
)
from mambatune.domains.genomics.vocab import checkpoint_tokenizer
from mambatune.domains.tables import FILE, ROW, TableError, read_table


def table(**cols) -> pl.DataFrame:
    n = len(next(iter(cols.values())))
    return pl.DataFrame(cols).with_columns(pl.lit("my.csv").alias(FILE), pl.Series(ROW, range(1, n + 1)))


# -- sequences -----------------------------------------------------------------------------------

def test_sequences_upper_cased_and_non_acgtn_counted_as_n():
    seqs, counts = clean_sequences(table(s=["acgtR", "AC-GT", "ACGTN"]), "s", where="t")
    assert seqs == ["ACGTN", "ACNGT", "ACGTN"]
    assert counts.lower_case == 1 and counts.with_replaced == 2 and counts.replaced == {"R": 1, "-": 1}
    assert counts.as_dict()["non_acgtn_mapped_to_n"] == {"-": 1, "R": 1}


def test_long_sequences_error_or_crop_counted():
    df = table(s=["ACGTACGTAC", "ACG"])
    with pytest.raises(TableError, match=r"my.csv, row 1: .*10 bp, longer than data.max_length=4.*too_long=crop"):
        clean_sequences(df, "s", where="t", max_length=4)
    seqs, counts = clean_sequences(df, "s", where="t", max_length=4, too_long="crop")
    assert seqs == ["TACG", "ACG"] and counts.cropped == 1


@pytest.mark.parametrize("bad", ["", "NA", None])
def test_empty_sequence_names_the_row(bad):
    with pytest.raises(TableError, match=r"my.csv, row 2: column 's' .* is empty"):
        clean_sequences(table(s=["ACGT", bad]), "s", where="t")


def test_a_column_of_text_is_not_dna():
    with pytest.raises(TableError, match=r"row 1: column 'name' does not look like DNA.*data.sequence_column"):
        clean_sequences(table(name=["promoter of gene X"]), "name", where="t")


def test_counts_add_up_over_two_tables():
    counts = SequenceCounts()
    clean_sequences(table(s=["ACGTAC"]), "s", where="a", counts=counts)
    clean_sequences(table(s=["ACG"]), "s", where="b", counts=counts)
    assert (counts.n, counts.min_length, counts.max_length) == (2, 3, 6)


# -- labels --------------------------------------------------------------------------------------

def test_label_kinds_detected_and_recorded():
    assert label_space([table(y=["b", "a", "b"])], "y").kind == "binary"
    space = label_space([table(y=["2", "10", "1"])], "y")
    assert (space.kind, space.classes) == ("multiclass", ["1", "2", "10"])  # numbers in numeric order
    ml = label_space([table(y=["CTCF;H3K27ac", "CTCF", "H3K4me3"])], "y")
    assert (ml.kind, ml.classes, ml.how) == ("multilabel", ["CTCF", "H3K27ac", "H3K4me3"], "auto: labels hold ';'")
    listed = pl.DataFrame({"y": [["a"], ["a", "b"], []]}).with_columns(pl.lit("x.jsonl").alias(FILE),
                                                                        pl.Series(ROW, [1, 2, 3]))
    space = label_space([listed], "y")
    assert space.kind == "multilabel" and space.encode(listed, "y", ";", "t").values.tolist() == [[1, 0], [1, 1], [0, 0]]
    assert label_space([table(y=["0.5", "1.25", "3"])], "y").kind == "regression"


@pytest.mark.parametrize("bad", ["", "nan", "NA"])
def test_missing_label_names_the_row(bad):
    with pytest.raises(TableError, match=r"1 row\(s\) have no label in column 'y' \(e.g. my.csv, row 3\)"):
        label_space([table(y=["0", "1", bad])], "y")


def test_zero_and_zero_point_zero_are_one_class_and_noted():
    space = label_space([table(y=["0", "0.0", "1", "1.0"])], "y")
    assert space.classes == ["0", "1"] and any("rewritten" in n for n in space.notes)


def test_positive_label_and_one_class():
    assert label_space([table(y=["yes", "no"])], "y", positive="no").classes == ["yes", "no"]
    with pytest.raises(TableError, match="one class"):
        label_space([table(y=["a", "a"])], "y")
    with pytest.raises(TableError, match="not a class"):
        label_space([table(y=["a", "b"])], "y", positive="c")


# -- FASTA and side tables -----------------------------------------------------------------------

def test_fasta_labels_from_the_header(tmp_path):
    (tmp_path / "pipe.fa").write_text(">s1|1\nACGT\nAC\n>s2|0\nGGCC\n")
    df = read_fasta_table(tmp_path / "pipe.fa")
    assert df["id"].to_list() == ["s1", "s2"] and df["label"].to_list() == ["1", "0"]
    assert df["sequence"].to_list() == ["ACGTAC", "GGCC"] and df[ROW].to_list() == [1, 2]
    (tmp_path / "key.fa").write_text(">s1 cell=K562 label=bound\nACGT\n>s2 label=unbound\nGG\n")
    assert read_fasta_table(tmp_path / "key.fa")["label"].to_list() == ["bound", "unbound"]
    assert file_format(str(tmp_path / "key.fa")) == "fasta"


def test_fasta_without_labels_and_a_side_table(tmp_path):
    (tmp_path / "x.fa").write_text(">s1\nACGT\n>s2\nGGCC\n")
    df = read_fasta_table(tmp_path / "x.fa")
    assert "label" not in df.columns
    (tmp_path / "labels.csv").write_text("id,label\ns2,0\ns1,1\ns9,1\n")
    joined, notes = attach_labels(df, read_table(tmp_path / "labels.csv"), key="id", column="label", where="x")
    assert joined["label"].to_list() == ["1", "0"] and notes == ["1 row(s) of data.labels_path match no record and "
                                                                 "were not used"]
    (tmp_path / "short.csv").write_text("id,label\ns1,1\n")
    with pytest.raises(TableError, match=r"x.fa, row 2: id 's2' has no row in data.labels_path"):
        attach_labels(df, read_table(tmp_path / "short.csv"), key="id", column="label", where="x")


def test_fasta_header_missing_its_label(tmp_path):
    (tmp_path / "x.fa").write_text(">s1|1\nACGT\n>s2\nGG\n")
    with pytest.raises(TableError, match=r"record 2 \('s2'\): no label in the header"):
        read_fasta_table(tmp_path / "x.fa", header_label="pipe")
    (tmp_path / "e.fa").write_text("")
    with pytest.raises(TableError, match="is empty"):
        read_fasta_table(tmp_path / "e.fa")


# -- regions -------------------------------------------------------------------------------------

GENOME = data_path(SLICE_FILE)  # contig '20', 400,000 bp


def bed(tmp_path, *lines) -> pl.DataFrame:
    (tmp_path / "r.bed").write_text("".join(line + "\n" for line in lines))
    return read_region_table(tmp_path / "r.bed")


def test_region_windows_strand_and_flank(tmp_path):
    df = bed(tmp_path, "chr20\t100000\t100010\ta\t0\t+\t1", "chr20\t100000\t100010\tb\t0\t-\t0")
    out, info = region_sequences(df, GENOME, window=20, flank=None)
    plus, minus = out["sequence"].to_list()
    assert len(plus) == 20 and minus == reverse_complement(plus) and info["minus_strand_reverse_complemented"] == 1
    out, _ = region_sequences(df, GENOME, window=None, flank=5)
    assert [len(s) for s in out["sequence"]] == [20, 20]
    assert out["label"].to_list() == ["1", "0"]


@pytest.mark.parametrize("line, message", [
    ("20\t100.5\t300", r"r.bed, row 2: start '100.5' / end '300' must be whole numbers"),
    ("20\t399990\t400100", r"r.bed, row 2: end 400,100 is past the end of contig 20"),
    ("chr7\t10\t20", r"r.bed, row 2: unknown contig 'chr7'"),
    ("20\t50\t40", r"r.bed, row 2: start 50 must be >= 0 and below end 40"),
])
def test_bad_region_names_the_row_or_is_counted(tmp_path, line, message):
    df = bed(tmp_path, "20\t1000\t1100", line)
    with pytest.raises(TableError, match=message):
        region_sequences(df, GENOME, window=50, flank=None)
    out, info = region_sequences(df, GENOME, window=50, flank=None, on_invalid="skip")
    assert out.height == 1 and sum(info["dropped"].values()) == 1


# -- baselines -----------------------------------------------------------------------------------

def motif_data(n=60, length=30, seed=0):
    rng = np.random.default_rng(seed)
    seqs, y = [], []
    for i in range(n):
        s = "".join(rng.choice(list("ACGT"), length))
        if i % 2:
            s = s[:10] + "TATAAT" + s[16:]
        seqs.append(s)
        y.append(i % 2)
    return seqs, np.asarray(y)


def test_kmer_k_chosen_by_inner_cv_and_one_hot():
    seqs, y = motif_data()
    model, chosen, score = tuned_baseline("kmer", "binary", seqs, y, ks=(2, 3), Cs=(0.1,))
    assert chosen["k"] in (2, 3) and 0 <= score <= 1
    assert baseline_scores(model, "binary", seqs[:4]).shape == (4, 2)
    model, chosen, score = tuned_baseline("onehot", "binary", seqs, y, Cs=(0.1, 1.0))
    assert score > 0.9  # the motif sits at a fixed place: one-hot finds it
    reg, _, _ = tuned_baseline("kmer", "regression", seqs, y.astype(float) * 2.5, ks=(2,), Cs=(0.1,))
    assert baseline_scores(reg, "regression", seqs[:3]).shape == (3,)


def test_one_hot_refuses_mixed_lengths():
    seqs, y = motif_data()
    with pytest.raises(ValueError, match="one-hot features need sequences of one length"):
        tuned_baseline("onehot", "binary", seqs[:-1] + ["ACGT"], y, Cs=(0.1,))


def test_multilabel_and_regression_metrics():
    y = np.asarray([[1, 0], [0, 1], [1, 1], [0, 0]])
    m = multilabel_metrics(y, y * 0.8 + 0.1, n_boot=10)
    assert m["auroc_macro"] == 1 and m["exact_match"] == 1 and "f1_micro_ci" in m
    r = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.1, 2.0, 2.9, 4.2], n_boot=10)
    assert r["pearson"] > 0.99 and r["mse"] < 0.02


# -- the tokenizer beside the weights ------------------------------------------------------------

def test_tokenizer_json_round_trip_and_format(tmp_path):
    DNATokenizer(3).save(tmp_path)
    spec = json.loads((tmp_path / "tokenizer.json").read_text())
    assert (spec["format"], spec["kind"], spec["k"]) == ("mambatune-tokenizer", "dna", 3)
    assert spec["vocab"]["A"] == 5 and spec["vocab"]["AAA"] == 10
    assert DNATokenizer.load(tmp_path).k == 3 and DNATokenizer.load(tmp_path / "none") is None


def test_a_saved_tokenizer_that_does_not_fit_is_an_error(tmp_path):
    DNATokenizer(1).save(tmp_path)
    with pytest.raises(TokenizerMismatchError, match=r"k=1 .* asks for k=2: set data.k=1"):
        checkpoint_tokenizer(tmp_path, 2)
    assert checkpoint_tokenizer(tmp_path, 1).k == 1
    (tmp_path / "tokenizer.json").write_text(json.dumps({"format": "mambatune-tokenizer", "kind": "byte", "k": 1,
                                                         "vocab": {}}))
    with pytest.raises(TokenizerMismatchError, match="'byte' tokenizer, not DNA tokens"):
        checkpoint_tokenizer(tmp_path, 1)
    vocab = DNATokenizer().get_vocab() | {"A": 6, "C": 5}
    (tmp_path / "tokenizer.json").write_text(json.dumps({"format": "mambatune-tokenizer", "kind": "dna", "k": 1,
                                                         "vocab": vocab}))
    with pytest.raises(TokenizerMismatchError, match="not remapped"):
        checkpoint_tokenizer(tmp_path, 1)


def test_shipped_models_carry_their_tokenizer():
    from mambatune.pipelines.genomics import SHIPPED_DNA_MODEL

    for folder in SHIPPED_DNA_MODEL.parent.iterdir():
        if (folder / "model.safetensors").is_file():
            assert DNATokenizer.load(folder).get_vocab() == DNATokenizer().get_vocab(), folder
