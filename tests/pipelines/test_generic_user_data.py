"""The generic recipe on a user's own table: DNA models with their own ids, K-fold in one command,
AUROC and every class's probability, counted truncation, clear errors."""
import csv
import json
import random
import re

import pytest

from mambatune.pipelines.cli import main

TINY = ["model.config.d_model=8", "model.config.n_layer=1", "model.config.d_state=4", "train.epochs=1",
        "train.batch_size=8", "train.progress=false", "train.eval_every=2", "train.monitor_every=2"]


def dna_csv(path, n=36, length=30):
    rng = random.Random(0)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "seq", "y"])
        for i in range(n):
            s = "".join(rng.choice("ACGT") for _ in range(length))
            w.writerow([f"s{i}", s if i % 2 else "GGGG" + s[4:], "bound" if i % 2 else "unbound"])
    return path


def test_kfold_in_one_command_with_a_shipped_dna_model(tmp_path, capsys):
    data = dna_csv(tmp_path / "sites.csv")
    out = tmp_path / "cv"
    args = ["run", "generic/sequence_classification_full", f"data.path={data}", "data.text_column=seq",
            "data.label_column=y", "data.id_column=name", "model.pretrained=dna-mamba-120k", "data.cv_folds=3",
            f"train.output_dir={out}", "train.epochs=1", "train.batch_size=8", "train.progress=false",
            "eval.baselines=true"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "3-fold cross-validation" in text and "tokenizer: dna, from the pretrained model" in text
    cv = json.loads((out / "cv.json").read_text())
    assert cv["folds"] == 3 and {"mamba", "majority_class", "char_ngram_logreg"} <= set(cv["models"])
    assert len(cv["models"]["mamba"]["auroc"]["values"]) == 3
    preds = list(csv.DictReader(open(out / "predictions_cv.csv")))
    assert sorted(r["id"] for r in preds) == sorted(f"s{i}" for i in range(36))  # each row predicted once
    assert {"prob_bound", "prob_unbound", "fold"} <= set(preds[0])
    assert json.loads((out / "fold-1" / "results.json").read_text())["tokenizer"] == "dna"
    # the fine-tuned model carries the DNA tokenizer: A is id 5, as the pretrained model learnt it
    spec = json.loads((out / "fold-0" / "model" / "tokenizer.json").read_text())
    assert spec["kind"] == "dna" and spec["vocab"]["A"] == 5
    # a rerun keeps the finished folds instead of training them again
    assert main(args) == 0
    assert capsys.readouterr().out.count("already finished") == 3
    assert main(["eval", str(out)]) == 2
    assert "cross-validation folder" in capsys.readouterr().err


def test_a_tokenizer_other_than_the_checkpoints_is_refused(tmp_path, capsys):
    data = dna_csv(tmp_path / "sites.csv")
    assert main(["run", "generic/sequence_classification_lora", f"data.path={data}", "data.text_column=seq",
                 "data.label_column=y", "model.pretrained=dna-mamba-120k", "data.tokenizer=char",
                 f"train.output_dir={tmp_path / 'r'}"]) == 2
    assert "trained on dna tokens" in capsys.readouterr().err


def test_test_file_truncation_auroc_and_predict(tmp_path, capsys):
    train = dna_csv(tmp_path / "train.csv")
    test = dna_csv(tmp_path / "test.csv", n=10, length=40)
    run = tmp_path / "run"
    assert main(["run", "generic/sequence_classification_lora", f"data.path={train}", f"data.test_path={test}",
                 "data.text_column=seq", "data.label_column=y", "data.max_length=32", f"train.output_dir={run}",
                 *TINY]) == 0
    results = json.loads((run / "results.json").read_text())
    assert {"auroc", "auprc", "accuracy", "macro_f1"} <= set(results["test"]) and results["sizes"]["test"] == 10
    assert results["truncated"] == {"test": 10}
    assert "auroc" in results["baselines"]["char_ngram_logreg"]
    assert "cut to it: test 10" in (run / "report.md").read_text()
    assert (run / "splits.csv").is_file()
    capsys.readouterr()
    assert main(["predict", str(run), str(test)]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert len(rows) == 10 and {"prob_bound", "prob_unbound"} <= set(rows[0])
    assert rows[0]["note"] == "cut from 40 to 32 tokens"
    assert main(["predict", str(run), "missing/file.csv"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["run", "generic/sequence_classification_lora", f"data.path={train}", "data.text_column=seq",
                 "data.label_column=y", "data.max_length=10", "data.overflow=error",
                 f"train.output_dir={tmp_path / 'r2'}", *TINY]) == 2
    assert "more than data.max_length=10" in capsys.readouterr().err


@pytest.mark.parametrize("content, match", [
    ("seq,y\nACGT,a\nACGT,\n", r"have no label in column 'y'"),
    ("seq,label\nACGT,a\n", r"no column 'y' \(data.label_column\)"),
    ("", "is empty"),
])
def test_bad_tables_are_clear_errors(tmp_path, capsys, content, match):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(["run", "generic/sequence_classification_lora", f"data.path={path}", "data.text_column=seq",
                 "data.label_column=y", f"train.output_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and re.search(match, err), err


def test_a_shape_override_that_contradicts_the_pretrained_model_is_refused(tmp_path, capsys):
    data = dna_csv(tmp_path / "sites.csv")
    base = ["run", "generic/sequence_classification_lora", f"data.path={data}", "data.text_column=seq",
            "data.label_column=y", "model.pretrained=dna-mamba-120k", "train.epochs=1", "train.progress=false"]
    assert main(base + ["model.config.d_model=32", f"train.output_dir={tmp_path / 'a'}"]) == 2
    assert "model.config.d_model=32 contradicts the pretrained model" in capsys.readouterr().err
    # the recipe file's own shape keys (for a new model) are noted, not applied
    assert main(base + [f"train.output_dir={tmp_path / 'b'}"]) == 0
    notes = json.loads((tmp_path / "b" / "results.json").read_text())["notes"]
    assert any("model.config.d_model=32 of the recipe not used: the pretrained model has d_model=64" in n
               for n in notes)


def test_config_yaml_records_the_model_as_built(tmp_path, capsys):
    """A recipe file's shape keys do not apply to a pretrained model; the run's config.yaml says what was trained."""
    import yaml

    from mambatune.pipelines.recipe import RECIPES_DIR
    data = dna_csv(tmp_path / "sites.csv", n=24)
    raw = yaml.safe_load((RECIPES_DIR / "generic" / "sequence_classification_full.yaml").read_text())
    raw.setdefault("model", {}).setdefault("config", {})["n_layer"] = 2  # the shipped DNA model has 4
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    assert main(["run", str(recipe), f"data.path={data}", "data.text_column=seq", "data.label_column=y",
                 "model.pretrained=dna-mamba-120k", f"train.output_dir={out}", "train.max_steps=2",
                 "train.batch_size=8", "train.progress=false", "eval.baselines=false"]) == 0
    capsys.readouterr()
    text = (out / "config.yaml").read_text()
    record = yaml.safe_load(text)
    assert record["model"]["config"]["n_layer"] == 4 and record["model"]["config"]["d_model"] == 64
    assert "# model.config: the model as built (the pretrained model dna-mamba-120k)" in text
    assert "n_layer=2 of the recipe not used: the pretrained model has n_layer=4" in text
    # the record reads back as a recipe, and the verbs work from it
    assert main(["eval", str(out)]) == 0
