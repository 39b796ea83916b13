"""The genomics pipeline end to end with tiny overrides: promoter, vep_zeroshot, vep, pretrain_dna,
then promoter from the pretrained checkpoint (with its scratch baseline)."""
import csv
import json
import random

import pytest
import yaml

from mambatune.pipelines.cli import main
from mambatune.pipelines.recipe import load_recipe, load_resolved

TINY = ["model.pretrained=null", "model.config.d_model=8", "model.config.n_layer=1", "model.config.d_state=4", "data.window=64",
        "data.max_train=32", "data.max_eval=24", "data.n_boot=20", "train.batch_size=8", "train.eval_every=2",
        "train.log_every=1", "train.progress=false", "train.monitor_every=2", "train.tensorboard=false"]


def run(recipe: str, out, *extra) -> dict:
    assert main(["run", recipe, f"train.output_dir={out}", *TINY, *extra]) == 0
    for name in ("config.yaml", "results.json", "report.md"):
        assert (out / name).is_file(), name
    assert (out / "metrics.jsonl").is_file() or (out / "lm" / "metrics.jsonl").is_file()
    return json.loads((out / "results.json").read_text())


def check_binary(results: dict, n_models: int) -> None:
    assert len(results["test"]) == n_models
    for metrics in results["test"].values():
        assert 0 <= metrics["auroc"] <= 1 and len(metrics["auroc_ci"]) == 2


def test_promoter_lora(tmp_path):
    out = tmp_path / "promoter"
    results = run("genomics/promoter_lora", out, "train.epochs=1")
    check_binary(results, 2)  # the model and the 6-mer baseline
    assert (out / "plots" / "roc.png").is_file() and (out / "plots" / "pr.png").is_file()
    assert (out / "adapter").is_dir() and (out / "base").is_dir()
    assert "6-mer" in (out / "report.md").read_text()


def pretrained_run(recipe: str, out, pretrained: str, *extra) -> dict:
    """``run`` on a pretrained model: TINY without its shape keys, which a pretrained model does not take."""
    args = [a for a in TINY if not a.startswith(("model.config.", "model.pretrained="))]
    assert main(["run", recipe, f"train.output_dir={out}", *args, f"model.pretrained={pretrained}", *extra]) == 0
    return json.loads((out / "results.json").read_text())


def test_promoter_lora_from_the_shipped_default_model(tmp_path):
    out = tmp_path / "shipped"
    results = pretrained_run("genomics/promoter_lora", out, "default", "train.epochs=1")
    check_binary(results, 3)  # shipped model + LoRA, the same model from scratch, 6-mer
    report = (out / "report.md").read_text()
    assert "dna-mamba-120k" in report
    # config.yaml records the model as trained: the shipped model's 4 layers, not the recipe file's 2 (noted)
    from mambatune.pipelines.genomics import SHIPPED_DNA_MODEL
    shipped = json.loads((SHIPPED_DNA_MODEL / "config.json").read_text())["model"]
    saved = (out / "config.yaml").read_text()
    config = yaml.safe_load(saved)["model"]["config"]
    assert config["n_layer"] == shipped["n_layer"] == 4 and config["d_model"] == shipped["d_model"]
    note = "model.config.n_layer=2 of the recipe not used: the pretrained model has n_layer=4"
    assert f"# note: {note}" in saved and note in report and note in results["notes"]
    assert load_resolved(out).model.config["n_layer"] == 4


def test_a_shape_override_that_contradicts_the_pretrained_model_is_an_error(tmp_path, capsys):
    args = [a for a in TINY if not a.startswith(("model.config.", "model.pretrained="))]
    assert main(["run", "genomics/promoter_lora", f"train.output_dir={tmp_path}", *args, "model.pretrained=default",
                 "model.config.d_model=256"]) == 2
    err = capsys.readouterr().err
    assert "model.config.d_model=256 contradicts the pretrained model 'default', which has d_model=64" in err


def test_promoter_multiclass(tmp_path):
    results = run("genomics/promoter_full", tmp_path / "mc", "train.epochs=1", "data.promoter_classes=multiclass",
                  "train.metric_for_best=accuracy")
    for metrics in results["test"].values():
        assert "macro_f1_ci" in metrics


def test_vep_zeroshot(tmp_path):
    out = tmp_path / "zs"
    results = run("genomics/vep_zeroshot", out, "train.max_steps=3")
    check_binary(results, 3)  # LM, Markov LM, k-mer
    assert (out / "lm" / "model" / "model.safetensors").is_file()


def test_vep_zeroshot_on_more_splits(tmp_path):
    out = tmp_path / "zs_all"
    results = run("genomics/vep_zeroshot", out, "train.max_steps=2", "data.zeroshot_splits=[train,val,test]")
    check_binary(results, 3)  # test alone: LM, Markov LM, k-mer as before
    more = results["more_splits"]
    sizes = results["sizes"]
    assert more["splits"] == ["test", "train", "val"] and more["n"] == sizes["train"] + sizes["val"] + sizes["test"]
    # zero-shot models only: the supervised k-mer baseline learns from the training split
    assert set(more["pooled"]) == {"LM pretrained in this run (-LLR)", "order-5 Markov LM (-LLR)"}
    assert set(more["by_split"]) == {"train", "val"}
    for metrics in more["pooled"].values():
        assert 0 <= metrics["auroc"] <= 1 and len(metrics["auroc_ci"]) == 2
    report = (out / "report.md").read_text()
    assert f"## Zero-shot scores on test + train + val ({more['n']} SNVs" in report
    assert "read the training-split windows" in report


@pytest.mark.parametrize("extra, message", [(["data.zeroshot_splits=[test,dev]"], "zeroshot_splits lists splits"),
                                            (["data.task=vep", "data.zeroshot_splits=[val]"], "for vep_zeroshot runs")])
def test_zeroshot_splits_checked(capsys, extra, message):
    assert main(["run", "genomics/vep_zeroshot", *extra, "--dry-run"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("method", ["finetune", "embedding"])
def test_vep_supervised(tmp_path, method):
    results = run("genomics/vep_lora", tmp_path / method, "train.epochs=1", f"data.vep_method={method}",
                  "train.max_steps=3")
    check_binary(results, 2)


def test_pretrain_then_promoter_from_it(tmp_path):
    pre = tmp_path / "pre"
    results = run("genomics/pretrain_dna", pre, "train.max_steps=4")
    bits = results["test"]["mamba LM"]["bits_per_base"]
    assert 0 < bits < 10
    model_dir = pre / "model"
    assert (model_dir / "model.safetensors").is_file()
    out = tmp_path / "ft"
    results = run("genomics/promoter_full", out, "train.epochs=1", f"model.pretrained={model_dir}")
    check_binary(results, 3)  # pretrained, the same model from scratch, k-mer
    assert "same model from scratch (full)" in results["test"]
    assert (out / "scratch" / "metrics.jsonl").is_file()


def test_missing_pretrained_says_how_to_make_it(tmp_path, capsys):
    code = main(["run", "genomics/promoter_lora", "model.pretrained=nowhere/model", f"train.output_dir={tmp_path}"])
    assert code == 2
    assert "mambatune run genomics/pretrain_dna" in capsys.readouterr().err


def test_bad_task_is_an_error():
    from mambatune.pipelines.recipe import RecipeError
    with pytest.raises(RecipeError, match="task must be one of"):
        load_recipe("genomics/promoter_lora", ["data.task=promotor"])


# -- eval / predict / export on finished runs ----------------------------------------------------

def write_genome(path, length: int = 3000, seed: int = 0):
    """A one-contig FASTA (``chr1``) of random bases; returns (path, sequence)."""
    rng = random.Random(seed)
    seq = "".join(rng.choice("ACGT") for _ in range(length))
    path.write_text(">chr1\n" + "\n".join(seq[i:i + 60] for i in range(0, length, 60)) + "\n")
    return path, seq


def write_vcf(path, seq: str):
    """Three records: an SNV matching the genome, one with REF/ALT swapped (fixed and counted), an insertion."""
    other = {"A": "C", "C": "A", "G": "A", "T": "C"}  # never the complement: no strand-flip ambiguity
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
             f"chr1\t1001\trs1\t{seq[1000]}\t{other[seq[1000]]}\t.\t.\t.",
             f"chr1\t1501\trs2\t{other[seq[1500]]}\t{seq[1500]}\t.\t.\t.",
             f"chr1\t2001\trs3\t{seq[2000]}\t{seq[2000]}AC\t.\t.\t."]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t" if str(path).endswith(".tsv") else ","))


def test_promoter_eval_predict_export(tmp_path, capsys):
    out = tmp_path / "promoter"
    results = run("genomics/promoter_lora", out, "train.epochs=1", "eval.baselines=false", "data.n_boot=0")
    main_model = next(iter(results["test"]))
    assert main(["eval", str(out)]) == 0
    evaluated = json.loads((out / "eval_test.json").read_text())
    for key in ("auroc", "auprc", "accuracy"):
        assert evaluated["metrics"][key] == pytest.approx(results["test"][main_model][key], abs=1e-6)
    assert main(["eval", str(out), "--split", "val"]) == 0 and (out / "eval_val.json").is_file()

    genome, seq = write_genome(tmp_path / "genome.fa")
    fasta = tmp_path / "seqs.fa"
    fasta.write_text(f">long\n{seq[:200]}\n>short\n{seq[300:340]}\n>empty\n>bad\nACGTXXXX\n")
    assert main(["predict", str(out), str(fasta), "-o", str(tmp_path / "p.csv")]) == 0
    rows = read_rows(tmp_path / "p.csv")
    assert [r["id"] for r in rows] == ["long", "short", "empty", "bad"]
    for r in rows[:2]:
        assert float(r["p_non_promoter"]) + float(r["p_promoter"]) == pytest.approx(1, abs=1e-5)
    assert "cropped to the central 64 bp" in rows[0]["note"] and "shorter" in rows[1]["note"]
    assert rows[2]["p_promoter"] == "" and "empty" in rows[2]["note"] and "not scored" in rows[3]["note"]
    assert "skipped_empty: 1" in capsys.readouterr().err

    bed = tmp_path / "regions.bed"
    bed.write_text("chr1\t100\t400\tr1\t0\t+\nchr1\t500\t600\tr2\t0\t-\nchr9\t1\t50\tr3\t0\t+\n")
    assert main(["predict", str(out), str(bed), "-o", str(tmp_path / "r.tsv")]) == 2  # no --genome
    assert "--genome" in capsys.readouterr().err
    assert main(["predict", str(out), str(bed), "--genome", str(genome), "-o", str(tmp_path / "r.tsv")]) == 0
    rows = read_rows(tmp_path / "r.tsv")
    # every region keeps its row: the one on a contig the genome lacks is not scored, and says why
    assert [r["id"] for r in rows] == ["r1", "r2", "r3"] and "regions_unknown_contig: 1" in capsys.readouterr().err
    assert rows[0]["p_promoter"] != "" and rows[2]["p_promoter"] == "" and rows[2]["predicted"] == ""
    assert rows[2]["note"].startswith("not scored") and "chr9" in rows[2]["note"] and rows[2]["chrom"] == "chr9"
    # the region's central window is the same sequence as the FASTA record of it
    fasta.write_text(f">r1\n{seq[100:400]}\n")
    assert main(["predict", str(out), str(fasta), "-o", str(tmp_path / "f.csv")]) == 0
    assert float(read_rows(tmp_path / "f.csv")[0]["p_promoter"]) == pytest.approx(float(rows[0]["p_promoter"]))
    # a table of sequences is read as sequences (no --genome); a 24 bp input is flagged as out of range
    (tmp_path / "seqs.csv").write_text(f"id,sequence\nr1,{seq[100:400]}\ntiny,{seq[500:524]}\n")
    assert main(["predict", str(out), str(tmp_path / "seqs.csv"), "-o", str(tmp_path / "t.csv")]) == 0
    table = read_rows(tmp_path / "t.csv")
    assert [r["id"] for r in table] == ["r1", "tiny"]
    assert float(table[0]["p_promoter"]) == pytest.approx(float(rows[0]["p_promoter"]))
    assert table[0]["flag"] == "" and table[1]["flag"] == "short: 24 bp, trained on 64 bp"
    assert table[1]["p_promoter"] != "" and "shorter than the trained window" in table[1]["note"]
    assert "flagged_short: 1" in capsys.readouterr().err
    # a table of coordinates needs --genome, and with it is read as regions
    (tmp_path / "coords.tsv").write_text("name\tchrom\tstart\tend\nr1\tchr1\t100\t400\n")
    assert main(["predict", str(out), str(tmp_path / "coords.tsv")]) == 2 and "--genome" in capsys.readouterr().err
    assert main(["predict", str(out), str(tmp_path / "coords.tsv"), "--genome", str(genome), "-o",
                 str(tmp_path / "c.csv")]) == 0
    assert float(read_rows(tmp_path / "c.csv")[0]["p_promoter"]) == pytest.approx(float(rows[0]["p_promoter"]))

    assert main(["export", str(out), str(tmp_path / "exported")]) == 0
    manifest = json.loads((tmp_path / "exported" / "export.json").read_text())
    assert set(manifest["written"]) == {"model", "head", "hf"}
    from mambatune.core.checkpoints import load_pretrained
    merged = load_pretrained(tmp_path / "exported" / "model")
    assert not any("lora" in k for k in merged.state_dict())
    hf = json.loads((tmp_path / "exported" / "hf" / "config.json").read_text())
    assert hf["model_type"] == "mamba" and hf["hidden_size"] == 8


def test_vep_zeroshot_eval_and_vcf_predict(tmp_path, capsys):
    out = tmp_path / "zs"
    results = run("genomics/vep_zeroshot", out, "train.max_steps=2", "eval.baselines=false", "data.n_boot=0")
    assert main(["eval", str(out)]) == 0
    evaluated = json.loads((out / "eval_test.json").read_text())
    assert evaluated["metrics"]["auroc"] == pytest.approx(results["test"][evaluated["model"]]["auroc"], abs=1e-6)
    genome, seq = write_genome(tmp_path / "genome.fa")
    vcf = write_vcf(tmp_path / "v.vcf", seq)
    assert main(["predict", str(out), str(vcf), "-o", str(tmp_path / "v.csv")]) == 2  # coordinates need --genome
    assert main(["predict", str(out), str(vcf), "--genome", str(genome), "-o", str(tmp_path / "v.csv")]) == 0
    err = capsys.readouterr().err
    assert "ref_alt_swap: 1" in err and "scored_not_snv: 1" in err
    rows = read_rows(tmp_path / "v.csv")
    assert [r["id"] for r in rows] == ["rs1", "rs2", "rs3"]
    assert rows[1]["fix"] == "ref_alt_swap"
    # the insertion is scored on equal-length haplotype windows (a zero-shot LM reads any variant)
    assert "insertion" in rows[2]["note"] and "haplotype" in rows[2]["note"]
    for r in rows:
        assert float(r["score"]) == pytest.approx(-float(r["llr"]))
    # the same LLR by hand: the run's windows (data.window=64) under the run's LM
    from mambatune.domains.genomics.vep import haplotype_windows
    from mambatune.pipelines.genomics.scoring import load_lm, open_run
    from mambatune.domains.genomics import DNATokenizer
    from mambatune.domains.genomics.vep import lm_log_likelihood_ratio
    run_dir, recipe, res = open_run(out)
    ins = seq[2000]
    ref_w, alt_w = haplotype_windows(seq, 2000, ins, ins + "AC", 64)
    llr = lm_log_likelihood_ratio(load_lm(run_dir, recipe, res), [ref_w], [alt_w], DNATokenizer())[0]
    assert float(rows[2]["llr"]) == pytest.approx(llr, abs=1e-5)
    assert main(["export", str(out), str(tmp_path / "lm")]) == 0
    assert (tmp_path / "lm" / "hf" / "model.safetensors").is_file()


def test_masked_lm_run_leaves_indels_unscored(tmp_path, capsys):
    """A bidirectional (masked) LM scores the masked marginal, defined for SNVs only: an indel keeps its row."""
    out = tmp_path / "zs_bi"
    run("genomics/vep_zeroshot", out, "train.max_steps=2", "eval.baselines=false", "data.n_boot=0",
        "model.config.bidirectional=true")
    genome, seq = write_genome(tmp_path / "genome.fa")
    vcf = write_vcf(tmp_path / "v.vcf", seq)
    capsys.readouterr()
    assert main(["predict", str(out), str(vcf), "--genome", str(genome), "-o", str(tmp_path / "v.csv")]) == 0
    rows = read_rows(tmp_path / "v.csv")
    assert rows[0]["score"] != "" and rows[2]["score"] == ""
    assert "masked LM scores SNVs only" in rows[2]["note"]
    assert "1 non-SNV variants not scored" in capsys.readouterr().err


def test_vep_embedding_predict_and_bad_inputs(tmp_path, capsys):
    out = tmp_path / "emb"
    run("genomics/vep_lora", out, "data.vep_method=embedding", "train.max_steps=2", "eval.baselines=false",
        "data.n_boot=0")
    assert (out / "embedding_classifier.json").is_file()
    genome, seq = write_genome(tmp_path / "genome.fa")
    vcf = write_vcf(tmp_path / "v.vcf", seq)
    assert main(["predict", str(out), str(vcf), "--genome", str(genome), "-o", str(tmp_path / "v.csv")]) == 0
    rows = read_rows(tmp_path / "v.csv")
    assert 0 <= float(rows[0]["p_deleterious"]) <= 1
    # a supervised model was trained on SNVs: the insertion keeps its row, unscored
    assert rows[2]["p_deleterious"] == "" and "not scored" in rows[2]["note"]
    assert "skipped_not_snv: 1" in capsys.readouterr().err
    fasta = tmp_path / "s.fa"
    fasta.write_text(">a\nACGT\n")
    assert main(["predict", str(out), str(fasta)]) == 2  # a vep run scores variants
    assert "give a VCF" in capsys.readouterr().err
    (tmp_path / "empty.fa").write_text("")
    assert main(["predict", str(out), str(vcf), "--genome", str(tmp_path / "empty.fa")]) == 2
    assert main(["eval", str(tmp_path / "nowhere")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_vep_finetune_and_pretrain_eval(tmp_path):
    out = tmp_path / "ft"
    results = run("genomics/vep_lora", out, "train.max_steps=2", "eval.baselines=false", "data.n_boot=0")
    assert main(["eval", str(out)]) == 0
    evaluated = json.loads((out / "eval_test.json").read_text())
    assert evaluated["metrics"]["auroc"] == pytest.approx(results["test"][evaluated["model"]]["auroc"], abs=1e-6)
    assert main(["export", str(out), str(tmp_path / "x")]) == 0
    assert (tmp_path / "x" / "head" / "head.safetensors").is_file()
    pre = tmp_path / "pre"
    results = run("genomics/pretrain_dna", pre, "train.max_steps=2", "eval.baselines=false")
    assert main(["eval", str(pre)]) == 0
    bits = json.loads((pre / "eval_test.json").read_text())["metrics"]["bits_per_base"]
    assert bits == pytest.approx(results["test"]["mamba LM"]["bits_per_base"], rel=1e-5)
    fasta = tmp_path / "s.fa"
    fasta.write_text(">a\nACGTACGTTTGACCA\n")
    assert main(["predict", str(pre), str(fasta), "-o", str(tmp_path / "b.csv")]) == 0
    assert 0 < float(read_rows(tmp_path / "b.csv")[0]["bits_per_base"]) < 10
