"""Ensembles on a user's genomics data, tiny and on CPU: ``data.ensemble=2`` on a CSV of sequences (the
members' files give the ensemble's probabilities, eval / predict / export on the folder), ``mambatune
ensemble`` on two runs trained apart (the same numbers as ``data.ensemble=2``), the refusals of runs on
other data, a regression ensemble, K-fold with an ensemble, and a VCF (vep finetune) ensemble."""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml

from mambatune.core import peft
from mambatune.core.checkpoints import load_pretrained
from mambatune.domains.genomics import DNATokenizer
from mambatune.domains.genomics.sequence_data import DNAWindowDataset, predict_logits
from mambatune.pipelines.cli import main
from helpers import check_combined_folder

from .test_genomics_user_data import GENOME, TINY, sequences, write_vcf

NAME = "mamba from scratch (lora)"
ENSEMBLE = f"{NAME}, ensemble of 2"
MEMBERS = [f"{NAME} member 0", f"{NAME} member 1"]
BASELINES = ["k-mer logistic regression (k by inner CV)", "one-hot logistic regression"]
QUICK = [*TINY, "train.plots=false"]  # no training curves: each member's would cost ~0.5 s


def run(recipe: str, out: Path, *extra) -> dict:
    assert main(["run", recipe, f"train.output_dir={out}", *QUICK, *extra]) == 0
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """A user's CSV: id, 32 bp sequence, a binary label and a number."""
    path = tmp_path_factory.mktemp("data") / "sites.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "sequence", "label", "signal"])
        for i, (s, y) in enumerate(sequences(40, 32)):
            w.writerow([f"s{i}", s, y, y + (i % 7) / 10])
    return path


@pytest.fixture(scope="module")
def ensemble_run(table, tmp_path_factory):
    out = tmp_path_factory.mktemp("ens") / "run"
    return out, run("genomics/promoter_lora", out, f"data.path={table}", "data.ensemble=2")


@pytest.fixture(scope="module")
def seed_runs(table, tmp_path_factory):
    """The members of ``ensemble_run``, each trained in a run of its own (model and train seeds k)."""
    root = tmp_path_factory.mktemp("seeds")
    for k in (0, 1):
        run("genomics/promoter_lora", root / f"s{k}", f"data.path={table}", f"model.seed={k}", f"train.seed={k}",
            *(["eval.baselines=false"] if k else []))
    return root / "s0", root / "s1"


def sequences_of(table: Path, ids) -> list[str]:
    rows = {r["id"]: r["sequence"] for r in pl.read_csv(table).iter_rows(named=True)}
    return [rows[i] for i in ids]


def member_probs(member: Path, seqs: list[str]) -> np.ndarray:
    """One member's class probabilities from its own files (a LoRA adapter on the initial weights in base/)."""
    model = load_pretrained(member / "base")
    peft.load_adapter(model, member / "adapter")
    data = DNAWindowDataset(seqs, tokenizer=DNATokenizer())
    return torch.softmax(predict_logits(model, data, rc_average=True), -1).numpy()


def test_data_ensemble_is_the_mean_of_its_members(ensemble_run, table):
    out, results = ensemble_run
    assert list(results["test"]) == [ENSEMBLE, *MEMBERS, *BASELINES]
    assert list(results["baselines"]) == BASELINES  # the members are not baselines
    for k in (0, 1):
        info = json.loads((out / f"member-{k}" / "member.json").read_text())
        assert (info["seed"], info["train_seed"]) == (k, k)
        assert (out / f"member-{k}" / "adapter").is_dir() and (out / f"member-{k}" / "base").is_dir()
    assert not (out / "adapter").exists() and (out / "splits.csv").is_file()
    assert results["ensemble"]["size"] == 2 and "softmax" in results["ensemble"]["combine"]
    assert len(results["training"]["members"]) == 2
    for name in (ENSEMBLE, *MEMBERS):  # the same bootstrap intervals as a single run's rows
        assert len(results["test"][name]["auroc_ci"]) == 2
    preds = pl.read_csv(out / "predictions_test.csv")
    assert preds.columns == ["id", "label", "predicted", "p_0", "p_1"] and preds.height == results["sizes"]["test"]
    seqs = sequences_of(table, preds["id"].to_list())
    probs = [member_probs(out / f"member-{k}", seqs) for k in (0, 1)]
    assert not np.allclose(probs[0], probs[1], atol=1e-4)  # other seeds, other models
    np.testing.assert_allclose(preds["p_1"].to_numpy(), (probs[0][:, 1] + probs[1][:, 1]) / 2, atol=1e-5)
    report = (out / "report.md").read_text()
    assert "Ensemble of 2 models" in report and "Predictions of the ensemble" in report


def test_eval_predict_export_on_the_ensemble(ensemble_run, table, tmp_path, capsys):
    out, results = ensemble_run
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["members"] == 2 and evaluated["model"] == ENSEMBLE
    for key in ("auroc", "auprc", "accuracy", "auroc_ci"):
        assert evaluated["metrics"][key] == pytest.approx(results["test"][ENSEMBLE][key], abs=1e-6)
    preds = pl.read_csv(out / "predictions_test.csv")
    new = tmp_path / "new.csv"
    pl.DataFrame({"id": preds["id"], "sequence": sequences_of(table, preds["id"].to_list())}).write_csv(new)
    assert main(["predict", str(out), str(new), "-o", str(tmp_path / "p.csv")]) == 0
    predicted = pl.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(predicted["p_1"].to_numpy(), preds["p_1"].to_numpy(), atol=1e-5)
    assert main(["export", str(out), str(tmp_path / "exported")]) == 0
    manifest = json.loads((tmp_path / "exported" / "export.json").read_text())
    assert manifest["ensemble"] == 2 and manifest["members"] == ["member-0", "member-1"]
    assert manifest["labels"] == ["0", "1"] and "softmax" in manifest["combine"]
    member = json.loads((tmp_path / "exported" / "member-1" / "export.json").read_text())
    assert member["ensemble_member"] == 1 and (tmp_path / "exported" / "member-1" / "model").is_dir()


def test_ensemble_verb_equals_data_ensemble(ensemble_run, seed_runs, tmp_path, capsys):
    out, results = ensemble_run
    combined = tmp_path / "combined"
    assert main(["ensemble", *map(str, seed_runs), "--out", str(combined)]) == 0
    got = json.loads((combined / "results.json").read_text())
    assert list(got["test"]) == list(results["test"])
    for name, m in results["test"].items():  # the same members (and baselines) give the same numbers
        for key in ("auroc", "auprc", "accuracy", "auroc_ci"):
            assert got["test"][name][key] == pytest.approx(m[key], abs=1e-6), (name, key)
    assert (combined / "predictions_test.csv").read_text() == (out / "predictions_test.csv").read_text()
    assert (combined / "splits.csv").is_file() and got["data"]["fingerprint"] == results["data"]["fingerprint"]
    check_combined_folder(combined, [[0], [1]])
    capsys.readouterr()
    assert main(["eval", str(combined)]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["auroc"] == pytest.approx(got["test"][ENSEMBLE]["auroc"])


def copy_run(run_dir: Path, dest: Path, data: dict | None = None, fingerprint: str | None = None) -> Path:
    """A copy of a finished run whose config.yaml's data keys (or recorded test fingerprint) are changed."""
    shutil.copytree(run_dir, dest)
    if data:
        cfg = yaml.safe_load((dest / "config.yaml").read_text())
        cfg["data"].update(data)
        (dest / "config.yaml").write_text(yaml.safe_dump(cfg))
    if fingerprint:
        res = json.loads((dest / "results.json").read_text())
        res["data"]["fingerprint"]["test"] = fingerprint
        (dest / "results.json").write_text(json.dumps(res))
    return dest


def test_ensemble_verb_refuses_runs_on_other_data(seed_runs, table, tmp_path, capsys):
    s0, s1 = seed_runs
    other = tmp_path / "other.csv"
    shutil.copyfile(table, other)
    cases = [(copy_run(s1, tmp_path / "path", {"path": str(other)}), "data.path is"),
             (copy_run(s1, tmp_path / "seed", {"seed": 3}), "data.seed is 0 in"),
             (copy_run(s1, tmp_path / "fp", fingerprint="0" * 16), "the test split's data fingerprint"),
             (copy_run(s1, tmp_path / "demo", {"path": None}), "one on the demo data")]
    for bad, message in cases:
        capsys.readouterr()
        assert main(["ensemble", str(s0), str(bad), "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert message in err and str(bad) in err, err
        assert not (tmp_path / "x").exists()
    # both runs pointed at a file whose rows have changed since they were trained
    changed = tmp_path / "changed.csv"
    changed.write_text(table.read_text().replace("s3,", "renamed,"))
    runs = [copy_run(r, tmp_path / f"moved{k}", {"path": str(changed)}) for k, r in enumerate(seed_runs)]
    assert main(["ensemble", *map(str, runs), "--out", str(tmp_path / "x")]) == 2
    assert "changed since the runs were trained" in capsys.readouterr().err


def test_regression_ensemble(table, tmp_path, capsys):
    out = tmp_path / "reg"
    results = run("genomics/promoter_full", out, f"data.path={table}", "data.label_column=signal", "data.ensemble=2",
                  "eval.baselines=false")
    name = "mamba from scratch (full), ensemble of 2"
    assert list(results["test"]) == [name, "mamba from scratch (full) member 0", "mamba from scratch (full) member 1"]
    assert "predictions" in results["ensemble"]["combine"]
    preds = pl.read_csv(out / "predictions_test.csv")
    seqs = sequences_of(table, preds["id"].to_list())
    scale = results["target_scale"]
    data = DNAWindowDataset(seqs, tokenizer=DNATokenizer())
    members = [predict_logits(load_pretrained(out / f"member-{k}" / "model"), data).reshape(-1).numpy()
               * scale["sd"] + scale["mean"] for k in (0, 1)]
    np.testing.assert_allclose(preds["prediction"].to_numpy(), np.mean(members, axis=0), atol=1e-5)
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["r2"] == pytest.approx(results["test"][name]["r2"], abs=1e-6)


def test_cross_validation_with_an_ensemble(table, tmp_path):
    out = tmp_path / "cv"
    assert main(["run", "genomics/promoter_lora", f"train.output_dir={out}", *QUICK, f"data.path={table}",
                 "data.cv_folds=2", "data.ensemble=2", "eval.baselines=false"]) == 0
    models = json.loads((out / "cv.json").read_text())["models"]
    assert list(models) == [ENSEMBLE, *MEMBERS] and models[ENSEMBLE]["auroc"]["n"] == 2
    assert all((out / f"fold-{k}" / f"member-{m}").is_dir() for k in (0, 1) for m in (0, 1))
    assert pl.read_csv(out / "predictions_cv.csv").height == 40  # each row once, by the ensemble of its fold


def test_vcf_ensemble_run_and_ensemble_verb(tmp_path, capsys):
    write_vcf(tmp_path / "v.vcf", 40)
    data = [f"data.path={tmp_path}/v.vcf", f"data.genome={GENOME}", "data.label_info=CLASS", "data.window=64",
            "eval.baselines=false", "train.max_steps=2"]
    results = run("genomics/vep_lora", tmp_path / "ens", *data, "data.ensemble=2")
    name = next(iter(results["test"]))
    assert name.endswith("ensemble of 2") and len(results["test"]) == 3
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "ens")]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["members"] == 2 and evaluated["metrics"]["auroc"] == pytest.approx(results["test"][name]["auroc"])
    run("genomics/vep_lora", tmp_path / "s2", *data, "model.seed=2", "train.seed=2")
    assert main(["ensemble", str(tmp_path / "ens"), str(tmp_path / "s2"), "--out", str(tmp_path / "three")]) == 0
    got = json.loads((tmp_path / "three" / "results.json").read_text())
    assert got["ensemble"]["size"] == 3
    preds = pl.read_csv(tmp_path / "three" / "predictions_test.csv")
    members = [preds[f"score: {m['name']}"].to_numpy() for m in got["ensemble"]["members"]]
    ensemble = preds[f"score: {next(iter(got['test']))}"].to_numpy()
    np.testing.assert_allclose(ensemble, np.mean(members, axis=0), atol=1e-6)
    for k in (0, 1):  # the members of the ensemble run score as they did there
        assert got["test"][got["ensemble"]["members"][k]["name"]]["auroc"] == \
            pytest.approx(results["test"][f"{name.split(', ensemble')[0]} member {k}"]["auroc"])
