"""Documents recipes on a user's own files with recipe keys alone: a JSON-lines file without a split,
a gzipped CSV with ';'-separated labels, a folder of text files with a label table, a separate test
file, K-fold cross-validation, and the bad inputs each loader must name (file, row, key) instead of a
traceback."""
import csv
import gzip
import json
import random

import pytest

from mambatune.pipelines.cli import main

TINY = ["model.pretrained=null", "model.config.d_model=8", "model.config.n_layer=1", "model.config.d_state=4",
        "data.max_length=64", "train.batch_size=8", "train.epochs=1", "train.eval_every=4", "train.log_every=1",
        "train.progress=false", "train.monitor_every=0", "train.tensorboard=false"]
TOPICS = {"permissive": "permission granted free charge copy modify merge publish",
          "copyleft": "source code must remain under same license share alike",
          "commercial": "fee payment subscription commercial terms vendor invoice"}


def words(topic: str, rng: random.Random, n: int) -> str:
    common = "the licensee shall agreement software party notice".split()
    return " ".join(rng.choice(TOPICS[topic].split() + common) for _ in range(n))


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def run(out, *extra, code=0) -> dict | None:
    assert main(["run", "documents/license_full", f"train.output_dir={out}", *TINY, *extra]) == code
    return json.loads((out / "results.json").read_text()) if code == 0 else None


@pytest.fixture(scope="module")
def no_split(tmp_path_factory):
    """A user's JSON-lines file: its own column names, an id per document, two labels, no split."""
    rng = random.Random(0)
    rows = [{"doc_id": f"doc-{i:02d}", "body": words(t, rng, rng.randint(5, 40)), "licence": t}
            for i, t in enumerate(["permissive", "copyleft"] * 20)]
    path = tmp_path_factory.mktemp("user") / "licences.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


COLUMNS = ["data.text_column=body", "data.label_column=licence", "data.id_column=doc_id"]


def test_jsonl_without_split_gets_a_recorded_stratified_split(tmp_path, no_split):
    out = tmp_path / "run"
    results = run(out, f"data.path={no_split}", *COLUMNS)
    assert results["sizes"] == {"train": 29, "val": 3, "test": 8}  # test 0.2, then val 0.1 of the other 32
    assert "seeded ratio" in results["data"]["split"] and "stratified" in results["data"]["split"]
    assert any("validation split carved" in n for n in results["data"]["notes"])
    splits = read_rows(out / "splits.csv")
    assert len(splits) == 40 and {r["split"] for r in splits} == {"train", "val", "test"}
    test_rows = {int(r["row"]) for r in splits if r["split"] == "test"}
    preds = read_rows(out / "predictions_test.csv")
    assert {int(r["row"]) for r in preds} == test_rows  # ids, file rows and the true label reach predictions
    assert all(r["id"] == f"doc-{int(r['row']) - 1:02d}" and r["file"] == "licences.jsonl" for r in preds)
    assert sorted(r["label"] for r in preds) == ["copyleft"] * 4 + ["permissive"] * 4  # stratified
    assert all(abs(float(r["p_copyleft"]) + float(r["p_permissive"]) - 1) < 1e-4 for r in preds)
    for name, m in results["test"].items():  # a binary task: ranking metrics for ours and the baselines
        assert 0 <= m["auroc"] <= 1 and 0 <= m["auprc"] <= 1 and m["positive_label"] == "permissive", name
    report = (out / "report.md").read_text()
    assert "AUROC" in report and "splits.csv" in report and "'permissive' is the positive class" in report
    assert json.loads((out / "model" / "tokenizer.json").read_text())["offset"] == 4  # travels with the model


def test_gzipped_csv_with_separated_multilabels_and_counts(tmp_path):
    rng = random.Random(1)
    lines = [["text", "labels", "split"]]
    for i in range(36):
        topics = [t for j, t in enumerate(TOPICS) if (i >> j) & 1] or ["permissive"]
        text = " ".join(words(t, rng, 10) for t in topics)
        labels = " ; ".join(topics + topics[:1]) if i % 5 == 0 else ";".join(topics)  # spaces and a repeat
        lines.append([text, labels, "test" if i % 4 == 0 else "train"])
    lines.append(["the licensee shall notice", "", "train"])  # no label at all: kept, counted
    path = tmp_path / "docs.csv.gz"
    with gzip.open(path, "wt", newline="") as fh:
        csv.writer(fh).writerows(lines)
    results = run(tmp_path / "ml", f"data.path={path}", "data.label_column=labels", "data.multi_label=true",
                  "eval.baselines=false")
    assert results["multi_label"] and results["labels"] == sorted(TOPICS)
    notes = " ".join(results["data"]["notes"])
    assert "';'-separated" in notes and "1 with none" in notes and "repeated label(s) in a row removed" in notes
    assert "the data's 'split' column" in results["data"]["split"] and results["sizes"]["val"] > 0


def test_folder_of_text_files_with_a_label_table(tmp_path):
    rng = random.Random(2)
    folder = tmp_path / "texts"
    (folder / "more").mkdir(parents=True)
    rows = [["file", "category"]]
    for i in range(30):
        topic = list(TOPICS)[i % 3]
        name = f"more/doc{i}.txt" if i % 2 else f"doc{i}.txt"
        (folder / name).write_text(words(topic, rng, 20))
        rows.append([name, topic])
    (folder / "README.txt").write_text("not a document")
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    out = tmp_path / "run"
    results = run(out, f"data.path={folder}", f"data.labels_path={labels}", "data.label_column=category",
                  "eval.baselines=false")
    assert sum(results["sizes"].values()) == 30
    assert any("1 text file(s)" in n and "README.txt" in n for n in results["data"]["notes"])
    preds = read_rows(out / "predictions_test.csv")
    assert all(r["id"].endswith(".txt") and (folder / r["id"]).is_file() for r in preds)
    assert "auroc" not in results["test"]["mamba from scratch (full)"]  # three classes


def test_test_file_and_k_fold_in_one_command(tmp_path, no_split):
    test = tmp_path / "held_out.tsv"
    test.write_text("doc_id\tbody\tlicence\nx1\tpermission granted free charge\tpermissive\n"
                    "x2\tsource code must remain under same license\tcopyleft\n")
    results = run(tmp_path / "tf", f"data.path={no_split}", f"data.test_path={test}", *COLUMNS,
                  "eval.baselines=false")
    assert results["sizes"] == {"train": 36, "val": 4, "test": 2}
    assert [r["id"] for r in read_rows(tmp_path / "tf" / "predictions_test.csv")] == ["x1", "x2"]
    out = tmp_path / "cv"
    assert main(["run", "documents/license_full", f"train.output_dir={out}", *TINY, f"data.path={no_split}",
                 *COLUMNS, "data.cv_folds=2", "eval.baselines=false"]) == 0
    folds = [json.loads((out / f"fold-{k}" / "results.json").read_text()) for k in range(2)]
    assert all("fold" in f["data"]["split"] and f["sizes"]["test"] == 20 for f in folds)
    tested = [{r["id"] for r in read_rows(out / f"fold-{k}" / "predictions_test.csv")} for k in range(2)]
    assert not tested[0] & tested[1] and len(tested[0] | tested[1]) == 40  # every document tested once
    assert (out / "cv.json").is_file() and (out / "cv_results.csv").is_file()


def test_checkpoint_tokenizer_must_match_the_recipe(tmp_path, no_split, capsys):
    from mambatune.core import MambaConfig, MambaForTask
    from mambatune.core.checkpoints import save_pretrained

    model = tmp_path / "model"
    save_pretrained(MambaForTask(MambaConfig(d_model=8, n_layer=1, d_state=4, vocab_size=260)), model)
    (model / "tokenizer.json").write_text(json.dumps({"format": "mambatune-tokenizer", "kind": "byte", "offset": 1}))
    args = ["run", "documents/license_full", f"train.output_dir={tmp_path / 'x'}", *TINY, f"data.path={no_split}",
            *COLUMNS, f"model.pretrained={model}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "offset 1" in err and "offset 4" in err and "never remapped" in err


# -- bad input: one each, a clear error naming the file / row / key, or a count ------------------

def bad_run(tmp_path, capsys, *extra) -> str:
    assert main(["run", "documents/license_full", f"train.output_dir={tmp_path / 'bad'}", *TINY, "eval.baselines=false",
                 *extra]) == 2
    return capsys.readouterr().err


def test_empty_file(tmp_path, capsys):
    (tmp_path / "e.jsonl").write_text("")
    assert "e.jsonl is empty" in bad_run(tmp_path, capsys, f"data.path={tmp_path / 'e.jsonl'}")


def test_latin1_file_error_hint_then_decoded(tmp_path, capsys):
    path = tmp_path / "latin.csv"
    rows = "".join(f"Licence {'é' if i % 2 else 'à'} numéro {i},{'a' if i % 2 else 'b'}\n" for i in range(30))
    path.write_bytes(("text,label\n" + rows).encode("latin-1"))
    err = bad_run(tmp_path, capsys, f"data.path={path}")
    assert "latin.csv, line 2" in err and "data.encoding=latin-1" in err
    results = run(tmp_path / "ok", f"data.path={path}", "data.encoding=latin-1", "eval.baselines=false")
    assert sum(results["sizes"].values()) == 30


def test_bad_json_line(tmp_path, capsys):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    assert "d.jsonl, line 2: not valid JSON" in bad_run(tmp_path, capsys, f"data.path={path}")


def test_empty_texts_counted_or_refused(tmp_path, capsys, no_split):
    rows = [json.loads(line) for line in no_split.read_text().splitlines()]
    rows[3]["body"], rows[7]["body"] = "   ", None
    path = tmp_path / "gaps.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    err = bad_run(tmp_path, capsys, f"data.path={path}", *COLUMNS, "data.empty_texts=error")
    assert "2 empty document(s)" in err and "gaps.jsonl, row 4" in err and "data.empty_texts=drop" in err
    from mambatune.pipelines.documents.data import DataConfig, load_data
    data = load_data(DataConfig(path=str(path), text_column="body", label_column="licence", id_column="doc_id"))
    assert sum(len(t) for t in data.tables.values()) == 38 and data.tables["train"].report.n_empty_dropped == 2
    assert any("2 empty document(s) left out" in n and "gaps.jsonl, row 8" in n for n in data.notes)


def test_missing_label_column(tmp_path, capsys, no_split):
    err = bad_run(tmp_path, capsys, f"data.path={no_split}", "data.text_column=body")
    assert "no column 'label' (data.label_column)" in err and "doc_id, body, licence" in err


@pytest.mark.parametrize("missing", ["", "nan"])
def test_missing_labels(tmp_path, capsys, missing):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nfirst licence,a\nsecond licence,b\nthird licence," + missing + "\n")
    err = bad_run(tmp_path, capsys, f"data.path={path}")
    assert "1 row(s) have no label" in err and "d.csv, row 3" in err


def test_path_that_does_not_exist(tmp_path, capsys):
    err = bad_run(tmp_path, capsys, f"data.path={tmp_path / 'nope.jsonl'}")
    assert "nope.jsonl" in err and "not found" in err and "data.path" in err


def test_your_data_documents_page_runs(tmp_path, monkeypatch):
    import re
    from pathlib import Path
    from helpers import python_blocks
    page = Path(__file__).resolve().parents[2] / "docs" / "your-data.md"
    code = python_blocks(page, section="Long documents")
    assert code, "the long-documents section of docs/your-data.md has no python example"
    monkeypatch.chdir(tmp_path)
    for i, block in enumerate(code):
        exec(compile(block, f"your-data.md[long documents, python block {i}]", "exec"), {"__name__": f"docs_{i}"})
    assert (tmp_path / "runs" / "contracts" / "splits.csv").is_file()
    predicted = read_rows(tmp_path / "new_predictions.csv")  # the page's predict step: a row per input
    assert [r["id"] for r in predicted] == ["n1", "n2", "n3"] and predicted[1]["note"].startswith("empty document")
    assert predicted[2]["flag"].startswith("long:") and predicted[2]["flag"].endswith("cut to 128")
