"""Ensembles of document classifiers, tiny and on CPU: ``data.ensemble`` runs (layout, results order, the
ensemble's probabilities = the mean of the members' loaded on their own), eval / predict / export on them,
``mambatune ensemble`` on separately trained runs (the same numbers as ``data.ensemble`` with the same
members), incompatible runs, and a multi-label ensemble (thresholds tuned on the averaged probabilities)."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mambatune.core.checkpoints import load_pretrained
from mambatune.domains.documents import ByteTokenizer, DocumentDataset, LabelVocabulary, read_table
from mambatune.domains.documents.metrics import tune_thresholds
from mambatune.domains.documents.training import DocumentClassifier, predict_scores
from helpers import check_combined_folder
from mambatune.pipelines.cli import main

from .test_documents import TINY, ecthr_like, read_rows, single_label  # noqa: F401 (fixtures)

ENSEMBLE = "mamba from scratch (full), ensemble of 2"
MEMBERS = ["mamba from scratch (full) member 0", "mamba from scratch (full) member 1"]
BASELINES = ["TF-IDF + linear SVM", "TF-IDF + logistic regression"]


def run(out, *extra) -> dict:
    assert main(["run", "documents/license_full", f"train.output_dir={out}", *TINY, *extra]) == 0
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory, single_label):
    out = tmp_path_factory.mktemp("ens") / "run"
    return out, run(out, f"data.source={single_label}", "data.ensemble=2")


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory, single_label):
    """Member k of ``ensemble_run``, trained on its own: model, batch and trainer seeds k."""
    root = tmp_path_factory.mktemp("seeds")
    for k in (0, 1):
        run(root / f"s{k}", f"data.source={single_label}", f"model.seed={k}", f"data.seed={k}", f"train.seed={k}",
            *(["eval.baselines=false"] if k else []))
    return root / "s0", root / "s1"


def member_probabilities(folder: Path, table, names: list[str], sigmoid: bool = False) -> np.ndarray:
    """One member, loaded on its own (not through the verbs), scored on ``table`` as the recipe reads it."""
    model = DocumentClassifier(load_pretrained(folder / "model")).eval()
    data = DocumentDataset(table, ByteTokenizer(), vocab=LabelVocabulary(names), max_length=96, unseen="map")
    logits = torch.from_numpy(predict_scores(model, data, 4))
    return (logits.sigmoid() if sigmoid else logits.softmax(-1)).numpy()


def test_data_ensemble_run_layout_and_results(ensemble_run):
    out, results = ensemble_run
    for k in (0, 1):
        member = out / f"member-{k}"
        assert (member / "model" / "model.safetensors").is_file() and (member / "metrics.jsonl").is_file()
        assert json.loads((member / "member.json").read_text())["seed"] == k
    assert not (out / "model").exists()
    assert list(results["test"]) == [ENSEMBLE, *MEMBERS, *BASELINES]
    assert list(results["baselines"]) == BASELINES
    assert [m["seed"] for m in results["ensemble"]["members"]] == [0, 1]
    assert [m["seed"] for m in results["training"]["members"]] == [0, 1]
    report = (out / "report.md").read_text()
    assert all(name in report for name in results["test"]) and "Ensemble of 2 classifiers" in report
    assert (out / "plots" / "confusion_mamba_from_scratch_full_ensemble_of_2.png").is_file()


def test_ensemble_probabilities_are_the_mean_of_the_members(ensemble_run, single_label, tmp_path):
    out, results = ensemble_run
    names = json.loads((out / "labels.json").read_text())
    test = [json.loads(line) for line in single_label.read_text().splitlines()]
    test = [r for r in test if r["split"] == "test"]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "text": r["text"]}) + "\n"
                                                 for i, r in enumerate(test)))
    assert main(["predict", str(out), str(tmp_path / "test.jsonl"), "-o", str(tmp_path / "p.csv")]) == 0
    rows = read_rows(tmp_path / "p.csv")
    predicted = np.array([[float(r[f"p_{n}"]) for n in names] for r in rows])
    (tmp_path / "labelled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    table = read_table(tmp_path / "labelled.jsonl")
    mean = np.mean([member_probabilities(out / f"member-{k}", table, names) for k in (0, 1)], axis=0)
    np.testing.assert_allclose(predicted, mean, atol=2e-6)
    assert [r["label"] for r in rows] == [names[i] for i in mean.argmax(1)]
    saved = read_rows(out / "predictions_test.csv")  # the run's own per-document test predictions: the mean too
    np.testing.assert_allclose([[float(r[f"p_{n}"]) for n in names] for r in saved], mean, atol=2e-6)
    accuracy = np.mean([names[i] == r["label"] for i, r in zip(mean.argmax(1), test)])
    assert accuracy == pytest.approx(results["test"][ENSEMBLE]["accuracy"])

    assert main(["eval", str(out)]) == 0
    evaluated = json.loads((out / "eval_test.json").read_text())
    assert evaluated["model"] == ENSEMBLE and evaluated["members"] == 2
    for key in ("accuracy", "macro_f1"):
        assert evaluated["metrics"][key] == pytest.approx(results["test"][ENSEMBLE][key])

    assert main(["export", str(out), str(tmp_path / "exported")]) == 0
    manifest = json.loads((tmp_path / "exported" / "export.json").read_text())
    assert manifest["ensemble"] == 2 and manifest["members"] == ["member-0", "member-1"]
    assert (tmp_path / "exported" / "member-1" / "model").is_dir()


def test_ensemble_verb_equals_data_ensemble(ensemble_run, seed_runs, tmp_path, capsys):
    out, results = ensemble_run
    combined = tmp_path / "combined"
    assert main(["ensemble", *map(str, seed_runs), "--out", str(combined)]) == 0
    made = json.loads((combined / "results.json").read_text())
    assert list(made["test"]) == list(results["test"]) and list(made["baselines"]) == BASELINES
    assert read_rows(combined / "predictions_test.csv") == read_rows(out / "predictions_test.csv")
    for name, m in results["test"].items():  # the same members give the same ensemble
        assert made["test"][name]["accuracy"] == pytest.approx(m["accuracy"]), name
        assert made["test"][name]["confusion_matrix"] == m["confusion_matrix"], name
    check_combined_folder(combined, [[0], [1]])
    assert (combined / "plots" / "confusion_mamba_from_scratch_full_ensemble_of_2.png").is_file()
    text = tmp_path / "one.txt"
    text.write_text("fee payment subscription commercial terms vendor invoice")
    capsys.readouterr()
    for folder, csv in ((combined, "a.csv"), (out, "b.csv")):
        assert main(["predict", str(folder), str(text), "-o", str(tmp_path / csv)]) == 0
    a, b = read_rows(tmp_path / "a.csv")[0], read_rows(tmp_path / "b.csv")[0]
    assert a == b
    # an ensemble run and a single run: three members
    assert main(["ensemble", str(out), str(seed_runs[1]), "--out", str(tmp_path / "three")]) == 0
    assert len(json.loads((tmp_path / "three" / "results.json").read_text())["ensemble"]["members"]) == 3
    assert "share a model seed" in capsys.readouterr().err  # seed 1 twice


def test_incompatible_runs_are_clear_errors(seed_runs, single_label, tmp_path, capsys):
    other = tmp_path / "short"
    run(other, f"data.source={single_label}", "data.max_length=64", "eval.baselines=false")
    assert main(["ensemble", str(seed_runs[0]), str(other), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "data.max_length" in err and str(seed_runs[0]) in err and str(other) in err
    assert not (tmp_path / "x").exists()
    assert main(["ensemble", str(seed_runs[0]), "--out", str(tmp_path / "x")]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["ensemble", str(seed_runs[0]), str(seed_runs[0]), "--out", str(tmp_path / "x")]) == 2
    assert "more than once" in capsys.readouterr().err
    assert main(["ensemble", *map(str, seed_runs), "--out", str(other)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["run", "documents/license_full", "data.ensemble=0", "--dry-run"]) == 2
    assert "ensemble must be a whole number >= 1" in capsys.readouterr().err
    assert main(["run", "documents/pretrain_text", "data.ensemble=2", "--dry-run"]) == 2
    assert "data.ensemble is for classify runs" in capsys.readouterr().err


def test_multilabel_ensemble(tmp_path, ecthr_like):
    out = tmp_path / "ml"
    results = run(out, f"data.source={ecthr_like}", "data.label_column=labels", "data.ensemble=2",
                  "eval.baselines=false")
    name = "mamba from scratch (full), ensemble of 2"
    assert results["multi_label"] and list(results["test"]) == [name, *MEMBERS]
    names = results["labels"]
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert thresholds == results["test"][name]["thresholds"]
    val = read_table(ecthr_like / "validation.jsonl", label_column="labels")
    mean = np.mean([member_probabilities(out / f"member-{k}", val, names, sigmoid=True) for k in (0, 1)], axis=0)
    y = DocumentDataset(val, ByteTokenizer(), vocab=LabelVocabulary(names), max_length=96).label_matrix()
    np.testing.assert_allclose(tune_thresholds(y, mean), thresholds)  # tuned on the averaged val probabilities
    assert main(["eval", str(out), "--split", "test"]) == 0
    evaluated = json.loads((out / "eval_test.json").read_text())
    assert evaluated["metrics"]["micro_f1"] == pytest.approx(results["test"][name]["micro_f1"])
    docs = tmp_path / "d.jsonl"
    docs.write_text(json.dumps({"text": ["torture inhuman", "fair trial"]}) + "\n")
    assert main(["predict", str(out), str(docs), "-o", str(tmp_path / "p.csv")]) == 0
    row = read_rows(tmp_path / "p.csv")[0]
    assert row["label"] == ";".join(n for n, t in zip(names, thresholds) if float(row[f"p_{n}"]) >= t)
    # the verb on the same members (an ensemble run contributes its members) tunes the same thresholds
    assert main(["ensemble", str(out), "--out", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "thresholds.json").read_text()) == pytest.approx(thresholds)
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["test"][name]["micro_f1"] == pytest.approx(results["test"][name]["micro_f1"])


def test_documents_doc_ensemble_example_runs(tmp_path, monkeypatch):
    page = Path(__file__).resolve().parents[2] / "docs" / "documents.md"
    section = page.read_text().split("## Ensembles", 1)[1]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert code, "docs/documents.md has no python example under Ensembles"
    monkeypatch.chdir(tmp_path)
    exec(compile(code[0], "documents.md[Ensembles]", "exec"), {"__name__": "docs_ensembles"})
