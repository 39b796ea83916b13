"""LexGLUE ECtHR (A/B) and SCOTUS loaders on small stand-ins with the published columns."""
import json

import polars as pl
import pytest

from mambatune.domains.documents import (ECTHR_ARTICLES, SCOTUS_ISSUE_AREAS, ByteTokenizer, DocumentDataset,
                                         LabelVocabulary, read_ecthr, read_scotus)

ECTHR = [{"text": ["1. The applicant was born in 1970.", "2. He was detained."], "labels": ["5", "6"]},
         {"text": ["3. The facts."], "labels": []},
         {"text": ["4. Ill-treatment.", "5. No inquiry."], "labels": ["3", "P1-1"]}]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("variant", ["a", "b"])
def test_ecthr_article_names(tmp_path, variant):
    table = read_ecthr(write_jsonl(tmp_path / "train.jsonl", ECTHR), variant=variant)
    assert table.multi_label
    assert table.labels == [["5", "6"], [], ["3", "P1-1"]]
    assert table.texts[0] == "1. The applicant was born in 1970.\n\n2. He was detained."
    ds = DocumentDataset(table, ByteTokenizer(), vocab=LabelVocabulary(ECTHR_ARTICLES))
    assert ds.label_matrix().sum(1).tolist() == [2, 0, 2]


def test_ecthr_class_label_ids_as_in_the_hub_parquet(tmp_path):
    frame = pl.DataFrame({"text": [["a"], ["b"]], "labels": [[2, 3], [9]]})
    frame.write_parquet(tmp_path / "ecthr.parquet")
    assert read_ecthr(tmp_path / "ecthr.parquet").labels == [["5", "6"], ["P1-1"]]
    pl.DataFrame({"text": [["a"]], "labels": [[10]]}).write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"label ids \[10\] are outside 0..9"):
        read_ecthr(tmp_path / "bad.parquet")


def test_ecthr_saved_hf_dataset(tmp_path):
    import datasets

    features = datasets.Features({"text": datasets.Sequence(datasets.Value("string")),
                                  "labels": datasets.Sequence(datasets.ClassLabel(names=ECTHR_ARTICLES))})
    ds = datasets.Dataset.from_dict({"text": [["p1", "p2"], ["q"]], "labels": [[0, 9], []]}, features=features)
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "ecthr_a"))
    assert read_ecthr(tmp_path / "ecthr_a", split="test").labels == [["2", "P1-1"], []]


def test_ecthr_refuses_other_layouts(tmp_path):
    with pytest.raises(KeyError, match="no label column 'labels'"):
        read_ecthr(write_jsonl(tmp_path / "d.jsonl", [{"text": ["x"], "label": 1}]))
    with pytest.raises(ValueError, match="not ECtHR's"):
        read_ecthr(write_jsonl(tmp_path / "e.jsonl", [{"text": ["x"], "labels": ["99"]}]))
    with pytest.raises(ValueError, match="variant"):
        read_ecthr(tmp_path / "e.jsonl", variant="c")


def test_scotus(tmp_path):
    rows = [{"text": "Opinion of the Court ...", "label": 0}, {"text": "", "label": 7},
            {"text": "Dissent ...", "label": 13}]
    table = read_scotus(write_jsonl(tmp_path / "scotus.jsonl", rows))
    assert table.labels == ["1", "14"] and not table.multi_label
    assert table.report.n_empty_dropped == 1
    assert len(SCOTUS_ISSUE_AREAS) == 14


def test_scotus_missing_label_column(tmp_path):
    with pytest.raises(KeyError, match=r"no label column 'label'.*\['text', 'labels'\]"):
        read_scotus(write_jsonl(tmp_path / "s.jsonl", [{"text": "x", "labels": [1]}]))
