"""Genomics recipes on a user's files with recipe keys alone (data.path and friends): CSV / JSON lines /
parquet tables, FASTA with a side table, BED regions, VCF; binary, multi-label and regression; K-fold;
and one clear error per bad input."""
import csv
import json
import random
import re

import polars as pl
import pytest
import yaml

from mambatune.domains.genomics.datasets import SLICE_FILE, data_path
from mambatune.domains.genomics.fasta import Genome
from mambatune.pipelines.cli import main
from mambatune.pipelines.genomics import SHIPPED_DNA_MODEL

TINY = ["model.pretrained=null", "model.config.d_model=8", "model.config.n_layer=1", "model.config.d_state=4",
        "train.epochs=1", "train.batch_size=16", "train.eval_every=2", "train.log_every=1", "train.progress=false",
        "train.monitor_every=0", "train.tensorboard=false", "data.n_boot=10", "data.kmer_choices=[2,3]"]
GENOME = str(data_path(SLICE_FILE))  # contig '20', the first 400 kb of GRCh37 chr20
MOTIF = "TATAAT"


def sequences(n: int, length: int, seed: int = 0, mixed: bool = False) -> list[tuple[str, int]]:
    """(sequence, class): class 1 holds MOTIF at a fixed place."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        size = length + (rng.randint(-5, 5) if mixed else 0)
        s = "".join(rng.choice("ACGT") for _ in range(size))
        if i % 2:
            s = s[:10] + MOTIF + s[16:]
        out.append((s, i % 2))
    return out


def run(recipe: str, out, *extra) -> dict:
    assert main(["run", recipe, f"train.output_dir={out}", *TINY, *extra]) == 0
    return json.loads((out / "results.json").read_text())


def fails(capsys, recipe: str, *extra) -> str:
    assert main(["run", recipe, *TINY, *extra]) == 2
    return capsys.readouterr().err


def test_binary_csv_with_the_shipped_model_by_name(tmp_path):
    rows = sequences(40, 32)
    with open(tmp_path / "my.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "dna", "bound"])
        for i, (s, y) in enumerate(rows):
            s = s.lower() if i == 0 else (s[:3] + "R" + s[4:] if i == 1 else s)
            w.writerow([f"seq{i}", s, y])
    out = tmp_path / "run"
    shape = [a for a in TINY if a.startswith(("model.config.", "model.pretrained="))]  # a pretrained model keeps its own
    assert main(["run", "genomics/promoter_lora", f"train.output_dir={out}", *[a for a in TINY if a not in shape],
                 "model.pretrained=dna-mamba-120k", f"data.path={tmp_path}/my.csv", "data.sequence_column=dna",
                 "data.label_column=bound", "data.id_column=name"]) == 0
    results = json.loads((out / "results.json").read_text())
    # config.yaml records the shipped model's shape (4 layers), the recipe file's n_layer: 2 noted as not used
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["config"]["n_layer"] == 4
    assert any("model.config.n_layer=2 of the recipe not used" in n for n in results["notes"])
    models = list(results["test"])
    assert models == ["mamba pretrained (lora)", "same model from scratch (full)",
                      "k-mer logistic regression (k by inner CV)", "one-hot logistic regression"]
    for m in results["test"].values():
        assert 0 <= m["auroc"] <= 1 and 0 <= m["auprc"] <= 1
    assert results["baseline_settings"]["k-mer logistic regression (k by inner CV)"]["k"] in (2, 3)
    seqs = results["data"]["sequences"]
    assert seqs["lower_case_upper_cased"] == 1 and seqs["non_acgtn_mapped_to_n"] == {"R": 1}
    preds = pl.read_csv(out / "predictions_test.csv")
    assert preds.columns == ["id", "label", "predicted", "p_0", "p_1"]
    assert preds.height == results["sizes"]["test"] and preds["id"].str.starts_with("seq").all()
    assert ((preds["p_0"] + preds["p_1"] - 1).abs() < 1e-5).all()
    assert pl.read_csv(out / "splits.csv").height == 40
    assert json.loads((out / "adapter" / "tokenizer.json").read_text())["kind"] == "dna"
    assert (out / "plots" / "roc.png").is_file() and "'R' x1" in (out / "report.md").read_text()


def test_multilabel_jsonl_with_mixed_lengths_then_eval_and_predict(tmp_path, capsys):
    rows = sequences(48, 30, mixed=True)
    with open(tmp_path / "tf.jsonl", "w") as fh:
        for i, (s, y) in enumerate(rows):
            fh.write(json.dumps({"sequence": s, "label": ["CTCF"] + (["YY1"] if y else []) + (["SP1"] if i % 3 else [])})
                     + "\n")
    out = tmp_path / "ml"
    results = run("genomics/promoter_full", out, f"data.path={tmp_path}/tf.jsonl")
    capsys.readouterr()
    assert results["data"]["labels"]["kind"] == "multilabel"
    assert results["data"]["labels"]["classes"] == ["CTCF", "SP1", "YY1"]
    assert "auroc_macro" in next(iter(results["test"].values()))
    assert "not fitted: one-hot features need sequences of one length" in \
        results["baseline_settings"]["one-hot logistic regression"]
    assert pl.read_csv(out / "predictions_test.csv").columns == ["id", "label", "predicted", "p_CTCF", "p_SP1", "p_YY1"]
    # eval remakes the split from the user's file and rescores the saved model: the run's test figures
    assert main(["eval", str(out)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["examples"] == results["sizes"]["test"]
    assert again["metrics"]["auroc_macro"] == pytest.approx(next(iter(results["test"].values()))["auroc_macro"])
    (tmp_path / "new.csv").write_text(f"sequence\n{rows[0][0]}\nhello world\nACGTACGTAC\n")
    assert main(["predict", str(out), str(tmp_path / "new.csv"), "-o", str(tmp_path / "p.csv")]) == 0
    pred = pl.read_csv(tmp_path / "p.csv")
    assert pred.columns == ["id", "length", "predicted", "p_CTCF", "p_SP1", "p_YY1", "flag", "note"]
    assert pred["p_CTCF"][0] is not None and pred["note"][1].startswith("not scored: new.csv, row 2")
    # trained on 25-35 bp: a 10 bp input is scored, and flagged as out of range
    seqs = results["data"]["sequences"]
    assert pred["p_CTCF"][2] is not None and pred["flag"][0] is None
    assert pred["flag"][2] == f"short: 10 bp, trained on {seqs['length_min']}-{seqs['length_max']} bp"


def test_regression_parquet_with_a_test_file(tmp_path):
    rows = sequences(50, 30, seed=1)
    frame = pl.DataFrame({"sequence": [s for s, _ in rows], "expression": [y * 2.0 + 0.25 * (i % 4)
                                                                          for i, (_, y) in enumerate(rows)]})
    frame[:40].write_parquet(tmp_path / "train.parquet")
    frame[40:].write_parquet(tmp_path / "test.parquet")
    out = tmp_path / "reg"
    results = run("genomics/promoter_full", out, f"data.path={tmp_path}/train.parquet",
                  f"data.test_path={tmp_path}/test.parquet", "data.label_column=expression", "data.k=2")
    assert results["data"]["labels"]["kind"] == "regression" and results["sizes"]["test"] == 10
    assert results["data"]["split"].startswith("test file")
    assert set(next(iter(results["test"].values()))) >= {"pearson", "spearman", "r2", "mse", "mae"}
    assert any("metric_for_best=auroc is not a regression metric" in n for n in results["notes"])
    assert pl.read_csv(out / "predictions_test.csv").columns == ["id", "label", "prediction"]
    assert json.loads((out / "model" / "tokenizer.json").read_text())["k"] == 2  # 2-mer tokens, saved with the model


def test_fasta_with_a_side_table_in_two_folds(tmp_path):
    rows = sequences(40, 30, seed=2)
    (tmp_path / "seqs.fa").write_text("".join(f">r{i} some description\n{s[:15]}\n{s[15:]}\n"
                                              for i, (s, _) in enumerate(rows)))
    (tmp_path / "labels.tsv").write_text("id\tclass\n" + "".join(f"r{i}\t{'pos' if y else 'neg'}\n"
                                                                  for i, (_, y) in enumerate(rows)))
    out = tmp_path / "cv"
    assert main(["run", "genomics/promoter_full", f"train.output_dir={out}", *TINY, f"data.path={tmp_path}/seqs.fa",
                 f"data.labels_path={tmp_path}/labels.tsv", "data.label_column=class", "data.cv_folds=2",
                 "eval.baselines=false"]) == 0
    assert pl.read_csv(out / "cv_results.csv")["fold"].n_unique() == 2
    fold = json.loads((out / "fold-1" / "results.json").read_text())
    assert fold["data"]["labels"]["classes"] == ["neg", "pos"] and fold["data"]["format"] == "fasta"
    assert pl.read_csv(out / "fold-0" / "predictions_test.csv")["id"].str.starts_with("r").all()


def test_bed_regions_on_a_reference(tmp_path):
    rng = random.Random(3)
    lines = [f"chr20\t{(s := rng.randrange(50_000, 390_000))}\t{s + 80}\tpeak{i}\t0\t{'+-'[i % 2]}\t{i % 3 == 0:d}"
             for i in range(40)]
    (tmp_path / "peaks.bed").write_text("\n".join(lines + ["chr20\t399990\t400200\tlate\t0\t+\t1"]) + "\n")
    out = tmp_path / "bed"
    results = run("genomics/promoter_full", out, f"data.path={tmp_path}/peaks.bed", f"data.genome={GENOME}",
                  "data.window=64", "data.on_invalid=skip", "eval.baselines=false")
    regions = results["data"]["regions"]["data"]
    assert regions["dropped"] == {"off_contig_end": 1} and regions["regions_kept"] == 40
    assert regions["minus_strand_reverse_complemented"] == 20
    assert results["data"]["sequences"]["length_min"] == results["data"]["sequences"]["length_max"] == 64
    assert "off contig end" in (out / "report.md").read_text()
    # predict keeps every region, the one past the contig end with a note
    assert main(["predict", str(out), str(tmp_path / "peaks.bed"), "--genome", GENOME, "-o", str(tmp_path / "p.csv")]) == 0
    pred = pl.read_csv(tmp_path / "p.csv")
    assert pred.height == 41 and pred["id"][40] == "late" and pred["predicted"][40] is None
    assert pred["note"][40].startswith("not scored") and "past the end of contig" in pred["note"][40]
    assert pred["predicted"][:40].null_count() == 0


def write_vcf(path, n: int, labelled: bool = True) -> None:
    rng = random.Random(4)
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    with Genome(GENOME) as genome:
        for i in range(n):
            pos = rng.randrange(60_000, 390_000)
            ref = genome.fetch("20", pos - 1, pos)
            alt = "A" if ref != "A" else "C"
            info = f"CLASS={i % 2}" if labelled else "."
            lines.append(f"20\t{pos}\tv{i}\t{ref}\t{alt}\t.\tPASS\t{info}")
    path.write_text("\n".join(lines) + "\n")


def test_vcf_supervised_and_unlabelled_zero_shot(tmp_path):
    write_vcf(tmp_path / "v.vcf", 40)
    results = run("genomics/vep_lora", tmp_path / "sup", f"data.path={tmp_path}/v.vcf", f"data.genome={GENOME}",
                  "data.label_info=CLASS", "data.window=64", "data.kmer_choices=[2]")
    assert results["sizes"]["test"] == 8 and 0 <= next(iter(results["test"].values()))["auroc"] <= 1
    assert results["data"]["variants"]["ref_match"] == 40
    write_vcf(tmp_path / "u.vcf", 12, labelled=False)
    out = tmp_path / "zs"
    assert main(["run", "genomics/vep_zeroshot", f"train.output_dir={out}", f"data.path={tmp_path}/u.vcf",
                 f"data.genome={GENOME}", "data.window=64", "data.n_boot=0"]) == 0
    preds = pl.read_csv(out / "predictions_test.csv")
    assert preds.height == 12 and "score: pretrained LM (-LLR)" in preds.columns
    assert "no metric" in (out / "report.md").read_text()


@pytest.fixture
def good_csv(tmp_path):
    path = tmp_path / "good.csv"
    path.write_text("sequence,label\n" + "".join(f"{s},{y}\n" for s, y in sequences(20, 20)))
    return path


@pytest.mark.parametrize("content, extra, message", [
    ("", [], "good.csv"),
    (None, ["data.sequence_column=seq"], r"no column 'seq' \(data.sequence_column\); its columns are sequence, label"),
    ("sequence,label\nACGTACGT,1\nACGTTT,\nACGAAA,0\n", [], r"have no label in column 'label' \(e.g. good.csv, row 2"),
    ("sequence,label\nACGTACGT,1\nACGTTT,nan\nACGAAA,0\n", [], "good.csv, row 2"),
    ("sequence,label\nhello world,1\nACGT,0\n", [], "good.csv, row 1: column 'sequence' does not look like DNA"),
    (None, ["data.max_length=10"], "longer than data.max_length=10; raise data.max_length, or set data.too_long=crop"),
    (None, ["data.k=2", "model.pretrained=default"], r"trained on DNA tokens of k=1 .* asks for k=2"),
    (None, ["data.label_kind=regression", "data.label_column=sequence"], "not a number"),
])
def test_bad_input_is_a_clear_error(capsys, good_csv, content, extra, message):
    if content is not None:
        good_csv.write_text(content)
    err = fails(capsys, "genomics/promoter_full", f"data.path={good_csv}", *extra)
    assert "error" in err and re.search(message, err), err


def test_bad_paths_and_recipes_are_clear_errors(capsys, tmp_path, good_csv):
    assert "not found" in fails(capsys, "genomics/promoter_full", f"data.path={tmp_path}/nope.csv")
    assert "set data.path too" in fails(capsys, "genomics/promoter_full", "data.k=2")
    text_model = SHIPPED_DNA_MODEL.parents[2] / "documents" / "pretrained" / "text-mamba-140k"
    assert "'byte' tokenizer, not DNA tokens" in fails(capsys, "genomics/promoter_full", f"data.path={good_csv}",
                                                       f"model.pretrained={text_model}")
    assert "not data.path" in fails(capsys, "genomics/pretrain_dna", f"data.path={good_csv}")
    assert "variants" in fails(capsys, "genomics/vep_lora", f"data.path={good_csv}")
    write_vcf(tmp_path / "u.vcf", 5, labelled=False)
    err = fails(capsys, "genomics/vep_lora", f"data.path={tmp_path}/u.vcf", f"data.genome={GENOME}")
    assert "no labels" in err and "genomics/vep_zeroshot" in err
    (tmp_path / "r.bed").write_text("20\t1\t50\n")
    assert "set data.genome" in fails(capsys, "genomics/promoter_full", f"data.path={tmp_path}/r.bed")
