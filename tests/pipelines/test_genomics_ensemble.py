"""Ensembles of genomics classifiers, tiny and on CPU: a promoter ``data.ensemble`` run (layout, results
order, the ensemble's probabilities = the mean of the members' loaded on their own), eval / predict /
export on it, a supervised vep ensemble, ``mambatune ensemble`` on separately trained runs (the same numbers
as ``data.ensemble`` with the same members), incompatible runs, and the docs example."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mambatune.core.checkpoints import load_pretrained
from mambatune.domains.genomics import DNATokenizer
from mambatune.domains.genomics.sequence_data import DNAWindowDataset, predict_logits
from mambatune.pipelines.genomics.data import promoter_splits
from helpers import check_combined_folder
from mambatune.pipelines.cli import main
from mambatune.pipelines.recipe import load_recipe, load_resolved, save_resolved

from .test_genomics import TINY, read_rows, write_genome, write_vcf

NAME = "mamba from scratch (full)"
ENSEMBLE = f"{NAME}, ensemble of 2"
MEMBERS = [f"{NAME} member 0", f"{NAME} member 1"]
KMER = "6-mer logistic regression"


def run(recipe: str, out: Path, *extra) -> dict:
    assert main(["run", recipe, f"train.output_dir={out}", *TINY, "train.epochs=1", *extra]) == 0
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ens") / "run"
    return out, run("genomics/promoter_full", out, "data.ensemble=2")


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory):
    """Member k of ``ensemble_run``, trained on its own: model and train seeds k."""
    root = tmp_path_factory.mktemp("seeds")
    for k in (0, 1):
        run("genomics/promoter_full", root / f"s{k}", f"model.seed={k}", f"train.seed={k}",
            *(["eval.baselines=false"] if k else []))
    return root / "s0", root / "s1"


def member_probabilities(folder: Path, windows) -> np.ndarray:
    """One member, loaded on its own (not through the verbs), RC-averaged as the recipe scores."""
    model = load_pretrained(folder / "model")
    logits = predict_logits(model, DNAWindowDataset(list(windows), tokenizer=DNATokenizer()), rc_average=True)
    return torch.softmax(logits, -1).numpy()


def test_data_ensemble_layout_and_results(ensemble_run):
    out, results = ensemble_run
    for k in (0, 1):
        member = out / f"member-{k}"
        assert (member / "model" / "model.safetensors").is_file() and (member / "metrics.jsonl").is_file()
        info = json.loads((member / "member.json").read_text())
        assert info["seed"] == k and info["train_seed"] == k
    assert not (out / "model").exists() and not (out / "adapter").exists()
    assert list(results["test"]) == [ENSEMBLE, *MEMBERS, KMER]
    assert list(results["baselines"]) == [KMER]
    assert [m["seed"] for m in results["ensemble"]["members"]] == [0, 1]
    assert [m["seed"] for m in results["training"]["members"]] == [0, 1]
    assert len(results["test"][ENSEMBLE]["auroc_ci"]) == 2
    report = (out / "report.md").read_text()
    assert all(name in report for name in results["test"]) and "Ensemble of 2 models" in report
    assert "mean of the members' softmax" in report
    assert (out / "plots" / "roc.png").is_file() and (out / "plots" / "pr.png").is_file()


def test_ensemble_is_the_mean_of_its_members_eval_predict_export(ensemble_run, tmp_path):
    out, results = ensemble_run
    windows, y = promoter_splits(load_resolved(out).data)["test"]
    mean = np.mean([member_probabilities(out / f"member-{k}", windows) for k in (0, 1)], axis=0)
    assert results["test"][ENSEMBLE]["auroc"] == pytest.approx(roc_auc_score(y, mean[:, 1]))
    for k in (0, 1):
        alone = member_probabilities(out / f"member-{k}", windows)[:, 1]
        assert results["test"][MEMBERS[k]]["auroc"] == pytest.approx(roc_auc_score(y, alone))

    fasta = tmp_path / "test.fa"
    fasta.write_text("".join(f">w{i}\n{w}\n" for i, w in enumerate(windows)))
    assert main(["predict", str(out), str(fasta), "-o", str(tmp_path / "p.csv")]) == 0
    rows = read_rows(tmp_path / "p.csv")
    predicted = np.array([[float(r["p_non_promoter"]), float(r["p_promoter"])] for r in rows])
    np.testing.assert_allclose(predicted, mean, atol=2e-6)
    assert [r["predicted"] for r in rows] == [["non_promoter", "promoter"][i] for i in mean.argmax(1)]

    assert main(["eval", str(out)]) == 0
    evaluated = json.loads((out / "eval_test.json").read_text())
    assert evaluated["model"] == ENSEMBLE and evaluated["members"] == 2
    for key in ("auroc", "auprc", "accuracy"):
        assert evaluated["metrics"][key] == pytest.approx(results["test"][ENSEMBLE][key], abs=1e-6)

    assert main(["export", str(out), str(tmp_path / "exported")]) == 0
    manifest = json.loads((tmp_path / "exported" / "export.json").read_text())
    assert manifest["ensemble"] == 2 and manifest["members"] == ["member-0", "member-1"]
    assert (tmp_path / "exported" / "member-1" / "model").is_dir()
    assert json.loads((tmp_path / "exported" / "member-1" / "export.json").read_text())["ensemble_member"] == 1


def test_vep_supervised_ensemble(tmp_path):
    out = tmp_path / "vep"
    results = run("genomics/vep_lora", out, "data.ensemble=2", "train.max_steps=2", "eval.baselines=false",
                  "data.n_boot=0")
    name = "mamba from scratch (lora)"
    assert list(results["test"]) == [f"{name}, ensemble of 2", f"{name} member 0", f"{name} member 1"]
    assert (out / "member-0" / "adapter").is_dir() and (out / "member-1" / "adapter").is_dir()
    # eval rebuilds each member on its own seeded architecture + its adapter: the same numbers as the run
    assert main(["eval", str(out)]) == 0
    evaluated = json.loads((out / "eval_test.json").read_text())
    assert evaluated["metrics"]["auroc"] == pytest.approx(results["test"][f"{name}, ensemble of 2"]["auroc"], abs=1e-6)
    genome, seq = write_genome(tmp_path / "genome.fa")
    vcf = write_vcf(tmp_path / "v.vcf", seq)
    assert main(["predict", str(out), str(vcf), "--genome", str(genome), "-o", str(tmp_path / "v.csv")]) == 0
    rows = read_rows(tmp_path / "v.csv")
    assert 0 <= float(rows[0]["p_deleterious"]) <= 1 and rows[2]["p_deleterious"] == ""


def test_ensemble_verb_equals_data_ensemble(ensemble_run, seed_runs, tmp_path, capsys):
    out, results = ensemble_run
    combined = tmp_path / "combined"
    assert main(["ensemble", *map(str, seed_runs), "--out", str(combined)]) == 0
    made = json.loads((combined / "results.json").read_text())
    assert list(made["test"]) == list(results["test"]) and list(made["baselines"]) == [KMER]
    for name, m in results["test"].items():  # the same members give the same ensemble
        for key in ("auroc", "auprc", "accuracy"):
            assert made["test"][name][key] == pytest.approx(m[key], abs=1e-6), (name, key)
    check_combined_folder(combined, [[0], [1]])
    assert (combined / "plots" / "roc.png").is_file()
    fasta = tmp_path / "one.fa"
    fasta.write_text(">a\n" + "ACGTTGCAAT" * 8 + "\n")
    for folder, csv in ((combined, "a.csv"), (out, "b.csv")):
        assert main(["predict", str(folder), str(fasta), "-o", str(tmp_path / csv)]) == 0
    assert read_rows(tmp_path / "a.csv") == read_rows(tmp_path / "b.csv")
    capsys.readouterr()
    # an ensemble run and a single run: three members (seed 1 twice)
    assert main(["ensemble", str(out), str(seed_runs[1]), "--out", str(tmp_path / "three")]) == 0
    assert len(json.loads((tmp_path / "three" / "results.json").read_text())["ensemble"]["members"]) == 3
    assert "share their model and train seeds" in capsys.readouterr().err


def test_incompatible_runs_are_clear_errors(seed_runs, tmp_path, capsys):
    other = tmp_path / "narrow"
    run("genomics/promoter_full", other, "data.window=48", "eval.baselines=false", "data.n_boot=0")
    assert main(["ensemble", str(seed_runs[0]), str(other), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "data.window" in err and str(seed_runs[0]) in err and str(other) in err
    assert not (tmp_path / "x").exists()
    assert main(["ensemble", str(seed_runs[0]), "--out", str(tmp_path / "x")]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["ensemble", *map(str, seed_runs), "--out", str(other)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    documents = tmp_path / "documents"  # a documents run folder (its config.yaml is what dispatch reads)
    save_resolved(load_recipe("documents/license_full", [f"train.output_dir={documents}"]), documents)
    assert main(["ensemble", str(seed_runs[0]), str(documents), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "one pipeline" in err and "documents" in err and "genomics" in err
    assert not (tmp_path / "x").exists()
    for extra, message in ((["data.ensemble=0"], "ensemble must be a whole number >= 1"),
                           (["data.ensemble=2", "data.task=vep_zeroshot"], "data.ensemble is for promoter and vep"),
                           (["data.ensemble=2", "data.task=vep", "data.vep_method=embedding"],
                            "data.ensemble needs vep_method=finetune")):
        assert main(["run", "genomics/promoter_full", *extra, "--dry-run"]) == 2
        assert message in capsys.readouterr().err


def test_genomics_doc_ensemble_example_runs(tmp_path, monkeypatch):
    page = Path(__file__).resolve().parents[2] / "docs" / "genomics.md"
    section = page.read_text().split("## Ensembles", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert code, "docs/genomics.md has no python example under Ensembles"
    monkeypatch.chdir(tmp_path)
    exec(compile(code[0], "genomics.md[Ensembles]", "exec"), {"__name__": "docs_ensembles"})
