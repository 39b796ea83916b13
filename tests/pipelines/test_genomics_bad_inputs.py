"""Bad or awkward genomics inputs, as a new user brings them: each is a clear error naming the file, row or
key and the fix, or is read with what was changed counted. The loaders are called directly (no training)."""
import gzip
import random
import re

import pytest

from mambatune.domains.genomics.datasets import SLICE_FILE, data_path
from mambatune.domains.genomics.fasta import Genome
from mambatune.domains.tables import TableError
from mambatune.pipelines.genomics.inputs import read_inputs
from mambatune.pipelines.genomics.user_data import load_user_data
from mambatune.pipelines.genomics.user_vep import labelled_parts, read_user_variants
from mambatune.pipelines.recipe import load_recipe

GENOME = str(data_path(SLICE_FILE))  # contig '20', the first 400 kb of GRCh37 chr20


def sequences(n: int, length: int = 32, seed: int = 0) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [("".join(rng.choice("ACGT") for _ in range(length)), i % 2) for i in range(n)]


def recipe(path, *extra, name="genomics/promoter_full"):
    return load_recipe(name, [f"data.path={path}", *extra])


def load(path, *extra):
    return load_user_data(recipe(path, *extra).data)


def write_csv(path, rows, header="id,sequence,label"):
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return path


def labelled(n=40, label=None):
    return [f"s{i},{s},{y if label is None else label(i, y)}" for i, (s, y) in enumerate(sequences(n))]


@pytest.mark.parametrize("bad", ["3.5 (approx)", "inf", "1e400"])
def test_numeric_labels_with_one_bad_value_name_the_row(tmp_path, bad):
    path = write_csv(tmp_path / "reg.csv", labelled(label=lambda i, y: bad if i == 7 else i * 0.5))
    with pytest.raises(TableError, match=rf"reg.csv, row 8: column 'label' holds {re.escape(repr(bad))}, not a finite number.*"
                                         "data.label_kind=multiclass"):
        load(path)


def test_number_spellings_are_one_class_beside_text_labels(tmp_path):
    # '1' / '1.0' beside a text label: one class each, in every split (before: a KeyError in one split)
    path = write_csv(tmp_path / "mixed.csv", labelled(label=lambda i, y: "other" if i == 5 else f"{y}.0" if i % 4 else y))
    data = load(path)
    assert data.space.classes == ["0", "1", "other"]
    assert any("read as one class" in n for n in data.describe()["notes"])


def test_a_test_file_class_the_training_file_lacks_is_an_error(tmp_path):
    train = write_csv(tmp_path / "train.csv", labelled())
    test = write_csv(tmp_path / "test.csv", labelled(10, label=lambda i, y: 2 if i == 3 else y))
    with pytest.raises(TableError, match=r"test.csv, row 4: class '2' of data.test_path .* never appears in "
                                         r"data.path=.*train.csv"):
        load(train, f"data.test_path={test}")


def test_duplicate_ids_and_test_sequences_seen_in_training_are_noted(tmp_path):
    rows = labelled()
    path = write_csv(tmp_path / "dup.csv", [r.replace(f"s{i},", f"s{i % 10},", 1) for i, r in enumerate(rows)])
    notes = load(path).describe()["notes"]
    assert any("10 id(s) used by more than one row (40 rows" in n for n in notes)
    test = write_csv(tmp_path / "test.csv", [f"t{i}," + r.split(",", 1)[1] for i, r in enumerate(rows[:10])])
    notes = load(write_csv(tmp_path / "train.csv", rows), f"data.test_path={test}").describe()["notes"]
    assert any("10 of 10 test sequence(s) also appear in the training split" in n for n in notes)


def test_a_class_missing_from_a_folds_training_split_is_noted(tmp_path):
    path = write_csv(tmp_path / "one.csv", labelled(label=lambda i, y: 2 if i == 0 else y))
    notes = [n for f in range(5) for n in load(path, "data.cv_folds=5", f"data.fold={f}").describe()["notes"]
             if "have no example in the training split" in n]
    assert len(notes) == 1 and "'2'" in notes[0]


def test_rna_is_read_as_dna_and_counted(tmp_path):
    path = write_csv(tmp_path / "rna.csv", [f"s{i},{s.replace('T', 'U')},{y}" for i, (s, y) in enumerate(sequences(40))])
    data = load(path)
    assert data.counts.as_dict()["rna_u_read_as_t"] == 40 and not data.counts.replaced
    assert all("U" not in s and "N" not in s for seqs in data.sequences.values() for s in seqs)


def test_fasta_headers_partly_labelled_or_without_an_id(tmp_path):
    rows = sequences(10)
    part = tmp_path / "part.fa"
    part.write_text("".join(f">r{i}{'|' + str(y) if i != 4 else ''}\n{s}\n" for i, (s, y) in enumerate(rows)))
    with pytest.raises(TableError, match=r"part.fa, record 5 \('r4'\): no label in the header, while 9 of 10"):
        load(part)
    nameless = tmp_path / "nameless.fa"
    nameless.write_text(f">\n{rows[0][0]}\n" + "".join(f">r{i}|{y}\n{s}\n" for i, (s, y) in enumerate(rows)))
    with pytest.raises(TableError, match=r"nameless.fa, record 1: a '>' header with no id"):
        load(nameless)


def bed_lines(n=40):
    rng = random.Random(3)
    return [f"20\t{(s := rng.randrange(50_000, 390_000))}\t{s + 80}\tpeak{i}\t0\t{'+-'[i % 2]}\t{i % 2}" for i in range(n)]


def test_bed_header_line_names_the_columns(tmp_path):
    path = tmp_path / "h.bed"
    path.write_text("chrom\tstart\tend\tname\tscore\tstrand\tlabel\n" + "\n".join(bed_lines()) + "\n")
    data = load(path, f"data.genome={GENOME}", "data.window=64")
    assert sum(data.sizes().values()) == 40 and data.space.classes == ["0", "1"]


def test_bed_mistakes_are_clear(tmp_path):
    spaced = tmp_path / "spaced.bed"
    spaced.write_text("\n".join(b.replace("\t", " ") for b in bed_lines()) + "\n")
    with pytest.raises(TableError, match="separated by spaces: a BED file separates them by tabs"):
        load(spaced, f"data.genome={GENOME}", "data.window=64")
    bare = tmp_path / "bare.bed"
    bare.write_text("\n".join("\t".join(b.split("\t")[:3]) for b in bed_lines()) + "\n")
    with pytest.raises(TableError, match="regions have no column 'label'.*7th column is its label"):
        load(bare, f"data.genome={GENOME}", "data.window=64")
    other = tmp_path / "other.bed"
    other.write_text("chr7\t100\t200\tx\t0\t+\t1\n")
    with pytest.raises(TableError, match=r"other.bed, row 1: unknown contig 'chr7'.*'7' is not in it either: is it "
                                         r"the genome your coordinates refer to\? Fix the region"):
        load(other, f"data.genome={GENOME}", "data.window=64")
    table = tmp_path / "regions.csv"
    table.write_text("chrom,start,end,label\n20,100,200,1\n")
    with pytest.raises(TableError, match="chrom, start and end columns: regions. Set data.format=regions"):
        load(table, f"data.genome={GENOME}")


def test_a_genome_with_a_contig_twice_is_a_clear_error(tmp_path):
    genome = tmp_path / "dup.fa"
    genome.write_text(">20\nACGTACGTAC\n>20\nACGTACGTAC\n")
    bed = tmp_path / "r.bed"
    bed.write_text("20\t1\t5\tr\t0\t+\t1\n")
    with pytest.raises(TableError, match=r'dup.fa: two records have the name "20"'):
        load(bed, f"data.genome={genome}")


def write_vcf(path, lines):
    path.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "\n".join(lines) + "\n")
    return path


def vcf_lines(n=20, label=lambda i: i % 2):
    rng = random.Random(4)
    out = []
    with Genome(GENOME) as genome:
        for i in range(n):
            pos = rng.randrange(60_000, 390_000)
            ref = genome.fetch("20", pos - 1, pos)
            out.append(f"20\t{pos}\tv{i}\t{ref}\t{'A' if ref != 'A' else 'C'}\t.\tPASS\tCLASS={label(i)}")
    return out


def variants(path, *extra):
    cfg = recipe(path, f"data.genome={GENOME}", "data.window=64", *extra, name="genomics/vep_lora").data
    df, info = read_user_variants(cfg)
    return labelled_parts(cfg, df, info)


@pytest.mark.parametrize("edit, message", [
    (lambda l: l.replace("CLASS=1", "CLASS=benign", 1), r"line 4: INFO CLASS='benign' is not a whole number"),
    (lambda l: l.split("\t", 2)[0] + "\t12a\t" + l.split("\t", 2)[2], r"line 3: POS '12a' is not a whole number"),
])
def test_vcf_records_that_are_not_numbers(tmp_path, edit, message):
    lines = vcf_lines()
    lines[0 if "POS" in message else 1] = edit(lines[0 if "POS" in message else 1])
    with pytest.raises(TableError, match=message + r".*set data.on_invalid=skip"):
        variants(write_vcf(tmp_path / "v.vcf", lines), "data.label_info=CLASS")


def test_vcf_truncated_gzip_is_a_clear_error(tmp_path):
    raw = gzip.compress(write_vcf(tmp_path / "v.vcf", vcf_lines()).read_bytes())
    (tmp_path / "t.vcf.gz").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(TableError, match=r"t.vcf.gz: the gzip archive is truncated or corrupt"):
        variants(tmp_path / "t.vcf.gz", "data.label_info=CLASS")


def test_vcf_with_nothing_left_says_why(tmp_path):
    other = write_vcf(tmp_path / "o.vcf", [l.replace("20\t", "chr1\t", 1) for l in vcf_lines()])
    with pytest.raises(TableError, match="20 record\\(s\\) name contigs that data.genome lacks"):
        variants(other, "data.label_info=CLASS")
    wrong = write_vcf(tmp_path / "w.vcf", ["\t".join(f[:3] + ["ACGTA", "GGGGG"] + f[5:])
                                           for f in (l.split("\t") for l in vcf_lines())])
    with pytest.raises(TableError, match="have a REF that does not match data.genome"):
        variants(wrong, "data.label_info=CLASS")


def test_vcf_labels_of_three_classes_are_refused_for_what_they_are(tmp_path):
    path = write_vcf(tmp_path / "v.vcf", vcf_lines(label=lambda i: i % 3))
    with pytest.raises(TableError, match=r"are multiclass .*a VEP run learns two classes"):
        variants(path, "data.label_info=CLASS")


def test_vcf_side_table_positions_written_as_decimals_still_join(tmp_path):
    lines = vcf_lines()
    path = write_vcf(tmp_path / "v.vcf", [l.replace("CLASS=", "X=") for l in lines])
    side = tmp_path / "side.csv"
    side.write_text("chrom,pos,ref,alt,label\n" + "".join(
        f"chr20,{p}.0,{r},{a},{i % 2}\n" for i, (_, p, _, r, a, *_) in enumerate(l.split("\t") for l in lines)))
    parts, data, _ = variants(path, f"data.labels_path={side}")
    assert sum(data["sizes"].values()) == 20


@pytest.mark.parametrize("name, content, message", [
    ("t.fa.gz", None, r"t.fa.gz: the gzip archive is truncated or corrupt"),
    ("l.fa", ">caf\xe9\nACGT\n".encode("latin-1"), r"l.fa, line 1: bytes that are not utf-8"),
    ("folder", "dir", r"input .*folder is a folder; genomics predict reads one file"),
])
def test_predict_inputs_that_cannot_be_read(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        raw = gzip.compress(b"".join(b">r%d\nACGTACGTACGT\n" % i for i in range(200)))
        path.write_bytes(raw[:len(raw) // 2])
    elif content == "dir":
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_inputs(str(path), recipe(tmp_path / "x.csv"))


def test_predict_reads_rna_as_the_run_did(tmp_path):
    (tmp_path / "new.fa").write_text(">a\nACGUACGUAA\n>b\nACGTNNACGT\n")
    inputs = read_inputs(str(tmp_path / "new.fa"), recipe(tmp_path / "x.csv"))
    assert inputs.sequences == ["ACGTACGTAA", "ACGTNNACGT"] and inputs.counts["rna_u_read_as_t"] == 1
    assert inputs.notes[0] == "RNA: U read as T"


def test_predict_on_a_vcf_with_nothing_left_says_why(tmp_path):
    path = write_vcf(tmp_path / "o.vcf", [l.replace("20\t", "chr1\t", 1) for l in vcf_lines()])
    with pytest.raises(ValueError, match="20 record\\(s\\) name contigs that --genome lacks"):
        read_inputs(str(path), load_recipe("genomics/vep_zeroshot", []), GENOME)
