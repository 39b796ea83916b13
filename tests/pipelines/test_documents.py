"""The documents pipeline end to end with tiny overrides: classify (full / LoRA / head-only, chunked,
multi-label on an ECtHR-shaped stand-in, the built-in licence data), pretrain_text then classify from
it, and bad inputs that must give clear errors."""
import json
import random

import pytest

from mambatune.pipelines.cli import main

TINY = ["model.pretrained=null", "model.config.d_model=8", "model.config.n_layer=1", "model.config.d_state=4", "data.max_length=96",
        "train.batch_size=4", "train.epochs=1", "train.eval_every=3", "train.log_every=1", "train.progress=false",
        "train.monitor_every=0", "train.tensorboard=false"]
TOPICS = {"permissive": "permission granted free charge copy modify merge publish",
          "copyleft": "source code must remain under same license share alike",
          "commercial": "fee payment subscription commercial terms vendor invoice"}


def words(topic: str, rng: random.Random, n: int) -> str:
    common = "the licensee shall agreement software party notice".split()
    return " ".join(rng.choice(TOPICS[topic].split() + common) for _ in range(n))


@pytest.fixture(scope="module")
def single_label(tmp_path_factory):
    """A .jsonl with text, label and split columns; three classes told apart by their words."""
    rng = random.Random(0)
    rows = []
    for split, n in (("train", 24), ("val", 9), ("test", 9)):
        for i in range(n):
            topic = list(TOPICS)[i % 3]
            rows.append({"text": words(topic, rng, rng.randint(5, 60)), "label": topic, "split": split})
    path = tmp_path_factory.mktemp("docs") / "docs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def ecthr_like(tmp_path_factory):
    """LexGLUE ECtHR's layout: ``text`` a list of paragraphs, ``labels`` a list of articles (or none)."""
    rng = random.Random(1)
    folder = tmp_path_factory.mktemp("ecthr")
    arts = {"3": "torture inhuman treatment", "6": "fair trial hearing court delay", "8": "private family life home"}
    for split, n in (("train", 24), ("validation", 9), ("test", 9)):
        rows = []
        for i in range(n):
            labels = [a for j, a in enumerate(arts) if (i >> j) & 1]
            paras = [" ".join(rng.choice((arts[a] + " applicant").split()) for _ in range(12)) for a in labels]
            rows.append({"text": paras or ["the applicant complained generally"], "labels": labels})
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def run(out, *extra) -> dict:
    assert main(["run", "documents/license_full", f"train.output_dir={out}", *TINY, *extra]) == 0
    for name in ("config.yaml", "results.json", "report.md", "metrics.jsonl", "labels.json"):
        assert (out / name).is_file(), name
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("method", ["full", "lora", "head_only"])
def test_classify_each_method(tmp_path, single_label, method):
    peft = {"full": [], "lora": [{"method": "lora", "targets": ["in_proj"], "rank": 2}],
            "head_only": [{"method": "head_only"}]}[method]
    out = tmp_path / method
    results = run(out, f"data.source={single_label}", f"peft.methods={json.dumps(peft)}")
    assert set(results["test"]) == {f"mamba from scratch ({method})", "TF-IDF + linear SVM",
                                    "TF-IDF + logistic regression"}
    for m in results["test"].values():
        assert 0 <= m["macro_f1"] <= 1 and set(m["by_length"]) == {"<500", "500-1999", ">=2000"}
    assert results["length_handling"]["train"]["n_truncated"] > 0  # 96 bytes cut most documents
    assert (out / ("model" if method == "full" else "adapter")).is_dir()
    assert len(list((out / "plots").glob("confusion_*.png"))) == 3
    report = (out / "report.md").read_text()
    assert "TF-IDF + linear SVM" in report and ">=2000 words" in report and "truncated" in report


def test_classify_chunk_and_pool_with_class_weights(tmp_path, single_label):
    results = run(tmp_path / "chunk", f"data.source={single_label}", "data.overflow=chunk", "data.max_length=48",
                  "data.chunk_pool=max", "data.class_weights=inverse_sqrt", "eval.baselines=false",
                  "model.head.pooling=attention")
    assert results["length_handling"]["train"]["n_chunked"] > 0
    assert json.loads((tmp_path / "chunk" / "model" / "config.json").read_text())["head"]["pooling"] == "attention"
    assert results["length_handling"]["train"]["n_truncated"] == 0
    assert len(results["test"]) == 1


def test_multilabel_ecthr_shaped(tmp_path, ecthr_like):
    results = run(tmp_path / "ml", f"data.source={ecthr_like}", "data.label_column=labels",
                  "data.class_weights=balanced", "train.metric_for_best=macro_f1")
    assert results["multi_label"] and results["labels"] == ["3", "6", "8"]
    ours = results["test"]["mamba from scratch (full)"]
    assert len(ours["thresholds"]) == 3 and 0 <= ours["micro_f1"] <= 1
    assert "TF-IDF + linear SVM" in results["test"]


def test_licenses_source_with_unseen_labels_mapped(tmp_path):
    results = run(tmp_path / "lic", "data.max_train=40", "data.max_eval=20", "data.unseen_labels=map",
                  "data.max_length=64", "eval.baselines=false")
    assert results["sizes"] == {"train": 40, "val": 20, "test": 20}
    preds = read_rows(tmp_path / "lic" / "predictions_test.csv")
    assert len(preds) == 20 and all(r["id"] for r in preds)  # the licence key names each document


def test_pretrain_text_then_classify_from_it(tmp_path, single_label, monkeypatch):
    lm_out = tmp_path / "lm"
    assert main(["run", "documents/pretrain_text", f"train.output_dir={lm_out}", f"data.source={single_label}",
                 "data.max_length=64", "data.max_train=32", "data.max_eval=8", "train.max_steps=3",
                 *[o for o in TINY if not o.startswith(("data.max_length", "train.epochs"))]]) == 0
    results = json.loads((lm_out / "results.json").read_text())
    assert results["test"]["mamba LM"]["bits_per_byte"] > 0 and (lm_out / "model" / "model.safetensors").is_file()
    assert results["sizes"]["train_windows"] <= 32
    monkeypatch.setenv("MAMBATUNE_TEXT_MODEL", str(lm_out / "model"))
    out = run(tmp_path / "from_lm", f"data.source={single_label}", "model.pretrained=default",
              'peft.methods=[{"method": "lora", "targets": ["in_proj"], "rank": 2}]', "eval.baselines=false")
    assert "mamba pretrained (lora)" in out["test"]


def test_missing_pretrained_model_says_how_to_make_one(tmp_path, single_label, monkeypatch, capsys):
    monkeypatch.setenv("MAMBATUNE_TEXT_MODEL", str(tmp_path / "nothing"))
    assert main(["run", "documents/license_full", f"train.output_dir={tmp_path / 'x'}", *TINY,
                 f"data.source={single_label}", "model.pretrained=default"]) == 2
    assert "mambatune run documents/pretrain_text" in capsys.readouterr().err


def test_missing_label_column_is_a_clear_error(tmp_path, single_label, capsys):
    assert main(["run", "documents/license_full", f"train.output_dir={tmp_path / 'x'}", *TINY,
                 f"data.source={single_label}", "data.label_column=category"]) == 2
    err = capsys.readouterr().err
    assert "no column 'category' (data.label_column)" in err and "its columns are text, label, split" in err


def test_unseen_test_label_is_a_clear_error(tmp_path, capsys):
    rows = [{"text": f"alpha {i}", "label": "a" if i % 2 else "b", "split": "train"} for i in range(8)]
    rows += [{"text": "alpha", "label": "a", "split": "val"}, {"text": "gamma", "label": "c", "split": "test"}]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["run", "documents/license_full", f"train.output_dir={tmp_path / 'x'}", *TINY,
                 f"data.source={path}"]) == 2
    err = capsys.readouterr().err
    assert "never seen in training" in err and "'c'" in err and "unseen" in err


def test_bad_data_options_are_errors(tmp_path, capsys):
    assert main(["run", "documents/license_full", "data.overflow=drop", "--dry-run"]) == 2
    assert "overflow must be one of truncate, chunk" in capsys.readouterr().err
    assert main(["run", "documents/license_full", f"data.source={tmp_path / 'none.jsonl'}",
                 f"train.output_dir={tmp_path / 'x'}"]) == 2
    assert "not found" in capsys.readouterr().err


def test_long_documents_doc_python_blocks_run(tmp_path, monkeypatch):
    import re
    from pathlib import Path
    page = Path(__file__).resolve().parents[2] / "docs" / "long-documents.md"
    code = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert code, "docs/long-documents.md has no python example"
    monkeypatch.chdir(tmp_path)
    for i, block in enumerate(code):
        exec(compile(block, f"long-documents.md[python block {i}]", "exec"), {"__name__": f"docs_{i}"})


# -- eval / predict / export on finished runs ----------------------------------------------------

def read_rows(path):
    import csv
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("method", ["lora", "full"])
def test_classify_eval_predict_export(tmp_path, single_label, method, capsys):
    peft = [{"method": "lora", "targets": ["in_proj"], "rank": 2}] if method == "lora" else []
    out = tmp_path / "run"
    results = run(out, f"data.source={single_label}", f"peft.methods={json.dumps(peft)}", "eval.baselines=false",
                  "data.overflow=chunk", "data.max_length=48")
    main_model = next(iter(results["test"]))
    preds = read_rows(out / "predictions_test.csv")  # one row per test document, as scored in results.json
    assert len(preds) == 9 and [int(r["row"]) for r in preds] == list(range(34, 43))  # the file's test lines
    accuracy = sum(r["correct"] == "true" for r in preds) / len(preds)
    assert accuracy == pytest.approx(results["test"][main_model]["accuracy"])
    for r in preds:
        probs = {n: float(v) for n, v in ((k[2:], v) for k, v in r.items() if k.startswith("p_"))}
        assert sum(probs.values()) == pytest.approx(1, abs=1e-4) and r["predicted"] == max(probs, key=probs.get)
    assert main(["eval", str(out)]) == 0
    evaluated = json.loads((out / "eval_test.json").read_text())
    for key in ("accuracy", "macro_f1"):
        assert evaluated["metrics"][key] == pytest.approx(results["test"][main_model][key])

    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("permission granted free charge copy modify merge publish " * 5)
    (folder / "sub" / "b.txt").write_text("fee payment subscription")
    (folder / "empty.txt").write_text("  \n")
    (folder / "scan.pdf").write_bytes(b"%PDF-1.4")  # not a text file: not an input, counted on stderr
    assert main(["predict", str(out), str(folder), "-o", str(tmp_path / "p.csv")]) == 0
    rows = read_rows(tmp_path / "p.csv")
    assert [r["id"] for r in rows] == ["a.txt", "empty.txt", "sub/b.txt"]
    labels = json.loads((out / "labels.json").read_text())
    for r in (rows[0], rows[2]):
        assert sum(float(r[f"p_{n}"]) for n in labels) == pytest.approx(1, abs=1e-5) and r["label"] in labels
    assert "chunks of 48" in rows[0]["note"] and rows[1]["label"] == "" and "empty" in rows[1]["note"]
    err = capsys.readouterr().err
    assert "empty_not_classified: 1" in err and "other_files_not_read (not .txt / .md / .text): 1" in err

    table = tmp_path / "t.csv"
    table.write_text("id,text\nx1,source code must remain under same license\nx2,\n")
    assert main(["predict", str(out), str(table), "-o", str(tmp_path / "t_out.csv")]) == 0
    assert [r["id"] for r in read_rows(tmp_path / "t_out.csv")] == ["x1", "x2"]

    assert main(["export", str(out), str(tmp_path / "exported")]) == 0
    manifest = json.loads((tmp_path / "exported" / "export.json").read_text())
    assert set(manifest["written"]) == {"model", "head", "hf"} and manifest["labels"] == labels
    assert json.loads((tmp_path / "exported" / "model" / "tokenizer.json").read_text())["kind"] == "byte"


def test_multilabel_predict_uses_tuned_thresholds(tmp_path, ecthr_like):
    out = tmp_path / "ml"
    results = run(out, f"data.source={ecthr_like}", "data.label_column=labels", "eval.baselines=false")
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert thresholds == results["test"]["mamba from scratch (full)"]["thresholds"]
    for r in read_rows(out / "predictions_test.csv"):  # predicted = every label over its tuned threshold
        chosen = [n for n, t in zip(["3", "6", "8"], thresholds) if float(r[f"p_{n}"]) >= t]
        assert r["predicted"] == ";".join(chosen) and (r["correct"] == "true") == (r["predicted"] == r["label"])
    assert main(["eval", str(out), "--split", "test"]) == 0
    evaluated = json.loads((out / "eval_test.json").read_text())
    assert evaluated["metrics"]["micro_f1"] == pytest.approx(results["test"]["mamba from scratch (full)"]["micro_f1"])
    docs = tmp_path / "d.jsonl"
    docs.write_text(json.dumps({"text": ["torture inhuman", "fair trial"]}) + "\n" + json.dumps({"text": []}) + "\n")
    assert main(["predict", str(out), str(docs), "-o", str(tmp_path / "p.csv")]) == 0
    rows = read_rows(tmp_path / "p.csv")
    first = rows[0]
    expected = [n for n, t in zip(["3", "6", "8"], thresholds) if float(first[f"p_{n}"]) >= t]
    assert first["label"] == ";".join(expected) and "empty" in rows[1]["note"]


def test_pretrain_text_eval_and_bad_inputs(tmp_path, single_label, capsys):
    lm_out = tmp_path / "lm"
    assert main(["run", "documents/pretrain_text", f"train.output_dir={lm_out}", f"data.source={single_label}",
                 "data.max_length=64", "data.max_train=16", "data.max_eval=8", "train.max_steps=2",
                 *[o for o in TINY if not o.startswith(("data.max_length", "train.epochs"))]]) == 0
    results = json.loads((lm_out / "results.json").read_text())
    assert main(["eval", str(lm_out)]) == 0
    bits = json.loads((lm_out / "eval_test.json").read_text())["metrics"]["bits_per_byte"]
    assert bits == pytest.approx(results["test"]["mamba LM"]["bits_per_byte"], rel=1e-5)
    text = tmp_path / "one.txt"
    text.write_text("the licensee shall notice")
    assert main(["predict", str(lm_out), str(text), "-o", str(tmp_path / "b.csv")]) == 0
    assert float(read_rows(tmp_path / "b.csv")[0]["bits_per_byte"]) > 0
    assert main(["export", str(lm_out), str(tmp_path / "x")]) == 0 and (tmp_path / "x" / "hf").is_dir()
    assert main(["predict", str(lm_out), str(tmp_path / "missing.txt")]) == 2
    assert "not found" in capsys.readouterr().err
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    assert main(["predict", str(lm_out), str(empty_dir)]) == 2
    assert "has no" in capsys.readouterr().err


def test_pretrain_text_refuses_a_bidirectional_model(tmp_path, capsys):
    from mambatune.pipelines.cli import main

    assert main(["run", "documents/pretrain_text", "model.config.bidirectional=true",
                 f"train.output_dir={tmp_path / 'lm'}", "train.max_steps=1", "train.progress=false"]) == 2
    assert "bidirectional" in capsys.readouterr().err
