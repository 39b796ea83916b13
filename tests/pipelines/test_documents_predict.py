"""`mambatune predict` on documents runs: tables of texts (CSV / TSV / JSON lines / parquet) with the run's
own column names or named ones, a row for every input (a note for what could not be scored), and a flag
for inputs far outside the training lengths; and the model section of a pretrained run (config.yaml
records the model as built, unused shape keys are noted, a contradicting override is an error)."""
import csv
import json
import random

import polars as pl
import pytest
import yaml

from mambatune.pipelines import documents
from mambatune.pipelines.cli import main
from mambatune.pipelines.recipe import RECIPES_DIR, load_resolved

TINY = ["model.pretrained=null", "model.config.d_model=8", "model.config.n_layer=1", "model.config.d_state=4",
        "data.max_length=96", "train.batch_size=8", "train.max_steps=3", "train.eval_every=3",
        "train.progress=false", "train.monitor_every=0", "train.tensorboard=false", "eval.baselines=false"]
TOPICS = {"permissive": "permission granted free charge copy modify merge publish",
          "copyleft": "source code must remain under same license share alike",
          "commercial": "fee payment subscription commercial terms vendor invoice"}


def words(topic: str, rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(TOPICS[topic].split() + ["the", "licensee", "software"]) for _ in range(n))


def read_rows(path, delimiter=","):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A user's JSON-lines file with its own column names: ``doc`` (id), ``body`` (text), ``kind`` (label)."""
    rng = random.Random(0)
    rows = [{"doc": f"d{i}", "body": words(t, rng, rng.randint(8, 30)), "kind": t}
            for i in range(36) for t in [list(TOPICS)[i % 3]]]
    path = tmp_path_factory.mktemp("corpus") / "contracts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "classify"
    assert main(["run", "documents/license_full", f"train.output_dir={out}", f"data.path={corpus}",
                 "data.text_column=body", "data.label_column=kind", "data.id_column=doc", *TINY]) == 0
    return out


def inputs_frame() -> pl.DataFrame:
    """Five inputs: two ordinary, one without text, one without an id, one very long."""
    long_text = "permission granted to copy and modify " * 120  # 4,560 bytes, cut to 96
    return pl.DataFrame({"doc": ["n1", "n2", "n3", None, "n5"],
                         "body": ["fee payment subscription invoice for the vendor terms",
                                  "source code must remain under the same license",
                                  None, "permission granted free of charge to copy", long_text]})


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl", "parquet"])
def test_predict_reads_a_table_of_texts_with_the_runs_columns(trained, tmp_path, capsys, kind):
    frame = inputs_frame()
    source = tmp_path / f"new.{kind}"
    {"csv": lambda: frame.write_csv(source), "tsv": lambda: frame.write_csv(source, separator="\t"),
     "jsonl": lambda: frame.write_ndjson(source), "parquet": lambda: frame.write_parquet(source)}[kind]()
    out = tmp_path / "predictions.tsv"
    assert main(["predict", str(trained), str(source), "-o", str(out)]) == 0
    rows = read_rows(out, delimiter="\t")
    labels = json.loads((trained / "labels.json").read_text())
    assert len(rows) == 5  # a row for every input, in input order
    assert [r["id"] for r in rows] == ["n1", "n2", "n3", "4", "n5"]  # the missing id: its row number
    for r in (rows[0], rows[1], rows[3], rows[4]):
        assert r["label"] in labels and sum(float(r[f"p_{n}"]) for n in labels) == pytest.approx(1, abs=1e-5)
    assert rows[2]["label"] == "" and rows[2]["note"] == "empty document: not classified"
    assert "no 'doc': named by its row" in rows[3]["note"]
    assert rows[4]["flag"] == "long: 4,560 tokens, cut to 96" and int(rows[4]["tokens"]) == 4560
    assert rows[0]["flag"] == rows[1]["flag"] == ""
    err = capsys.readouterr().err
    assert "empty_not_classified: 1" in err and "flagged_length: 1" in err and "rows_without_id: 1" in err


def test_predict_takes_other_column_names_and_names_missing_ones(trained, tmp_path, capsys):
    source = tmp_path / "other.csv"
    source.write_text("key,content\nk1,fee payment subscription invoice\nk2,copy modify merge publish\n")
    recipe = load_resolved(trained)
    out = tmp_path / "other-predictions.csv"
    assert main(["predict", str(trained), str(source), "--text-column", "content", "--id-column", "key",
                 "-o", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [r["id"] for r in rows] == ["k1", "k2"] and all(r["label"] for r in rows)
    capsys.readouterr()
    assert main(["predict", str(trained), str(source), "--genome", "hg38.fa"]) == 2  # a flag of another domain
    assert "--genome applies to genomics runs" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"no column 'text_body' \(the text column \(--text-column\)\); its "
                                         r"columns are key, content"):
        documents.read_inputs(str(source), recipe, text_column="text_body")
    # neither the run's column ('body') nor 'text': the error names the columns and what to do
    assert main(["predict", str(trained), str(source)]) == 2
    err = capsys.readouterr().err
    assert "no text column: the run read 'body'" in err and "its columns are key, content" in err
    assert main(["predict", str(trained), str(tmp_path / "missing.csv")]) == 2
    assert "not found" in capsys.readouterr().err


def test_predict_flags_inputs_far_outside_the_training_lengths(corpus, tmp_path, capsys):
    out = tmp_path / "chunked"  # chunks: nothing is cut, so lengths are compared with the training documents'
    assert main(["run", "documents/license_full", f"train.output_dir={out}", f"data.path={corpus}",
                 "data.text_column=body", "data.label_column=kind", "data.id_column=doc", *TINY,
                 "data.overflow=chunk", "data.max_length=64"]) == 0
    trained = json.loads((out / "results.json").read_text())["train_lengths"]
    assert trained["min"] <= trained["p05"] <= trained["median"] <= trained["p95"] <= trained["max"]
    source = tmp_path / "lengths.jsonl"
    texts = {"tiny": "fee", "usual": "fee payment subscription invoice for the vendor and the licensee",
             "huge": "copy modify merge publish " * 200}
    source.write_text("".join(json.dumps({"id": k, "body": v}) + "\n" for k, v in texts.items()))
    assert main(["predict", str(out), str(source), "-o", str(tmp_path / "p.csv")]) == 0
    rows = {r["id"]: r for r in read_rows(tmp_path / "p.csv")}
    assert rows["tiny"]["flag"] == f"short: 3 tokens; 95% of training documents had at least {trained['p05']}"
    assert rows["huge"]["flag"] == f"long: 5,200 tokens; 95% of training documents had at most {trained['p95']}"
    assert rows["usual"]["flag"] == "" and "chunks of 64" in rows["huge"]["note"]
    assert all(r["label"] for r in rows.values())  # flagged inputs are scored all the same


# -- the model section of a pretrained run --------------------------------------------------------

def test_pretrained_run_records_the_model_as_built(corpus, tmp_path, capsys):
    """The recipe file's shape keys (d_model 32, n_layer 2) do not apply to the shipped text-mamba-140k
    (64, 4): they are noted in config.yaml and the report, and config.yaml records the model trained."""
    out = tmp_path / "pretrained"
    assert main(["run", "documents/license_lora", f"train.output_dir={out}", f"data.path={corpus}",
                 "data.text_column=body", "data.label_column=kind", "data.id_column=doc", "model.pretrained=default",
                 *[o for o in TINY if not o.startswith("model.")]]) == 0
    assert "model: model.config.n_layer=2 of the recipe not used" in capsys.readouterr().out
    shipped = json.loads((documents.SHIPPED_TEXT_MODEL / "config.json").read_text())["model"]
    text = (out / "config.yaml").read_text()
    record = yaml.safe_load(text)["model"]["config"]
    assert record["n_layer"] == shipped["n_layer"] == 4 and record["d_model"] == shipped["d_model"] == 64
    assert "# model.config: the model as built (the pretrained model default)" in text
    assert "n_layer=2 of the recipe not used: the pretrained model has n_layer=4" in text
    assert "n_layer=2 of the recipe not used" in (out / "report.md").read_text()
    raw = yaml.safe_load((RECIPES_DIR / "documents" / "license_lora.yaml").read_text())
    assert raw["model"]["config"]["n_layer"] == 2  # what the notes say the recipe file asked for
    assert main(["eval", str(out)]) == 0  # the record reads back as a recipe, and the verbs work from it
    rows_out = tmp_path / "p.csv"
    (tmp_path / "one.txt").write_text("fee payment subscription invoice")
    assert main(["predict", str(out), str(tmp_path / "one.txt"), "-o", str(rows_out)]) == 0
    assert read_rows(rows_out)[0]["label"]


def test_override_that_contradicts_the_pretrained_model_is_an_error(corpus, tmp_path, capsys):
    out = tmp_path / "contradiction"
    assert main(["run", "documents/license_full", f"train.output_dir={out}", f"data.path={corpus}",
                 "data.text_column=body", "data.label_column=kind", "model.pretrained=text-mamba-140k",
                 "model.config.d_model=8", "train.max_steps=1", "train.progress=false"]) == 2
    err = capsys.readouterr().err
    assert "model.config.d_model=8 contradicts the pretrained model 'text-mamba-140k', which has d_model=64" in err
    assert "Traceback" not in err and not (out / "results.json").exists()
