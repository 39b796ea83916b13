"""Loaders: JSONL / CSV / parquet / HF datasets / text folders, and every bad-input case."""
import json

import polars as pl
import pytest

from mambatune.domains.documents.data import decode_utf8, read_hf_dataset, read_table, read_text_folder

ROWS = [{"text": "MIT permission notice", "label": "Permissive", "id": 1},
        {"text": "GNU GPL copyleft", "label": "Copyleft", "id": 2},
        {"text": "   ", "label": "Copyleft", "id": 3},
        {"text": "BSD three clause", "label": "Permissive", "id": 4}]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_read_each_format(tmp_path, suffix):
    path = tmp_path / f"docs{suffix}"
    frame = pl.DataFrame(ROWS)
    {".jsonl": lambda: write_jsonl(path, ROWS), ".csv": lambda: frame.write_csv(path),
     ".parquet": lambda: frame.write_parquet(path)}[suffix]()
    table = read_table(path, keep_columns=["id"])
    assert table.texts == ["MIT permission notice", "GNU GPL copyleft", "BSD three clause"]
    assert table.labels == ["Permissive", "Copyleft", "Permissive"]
    assert table.frame["id"].to_list() == [1, 2, 4]
    assert not table.multi_label
    assert table.report.n_read == 4 and table.report.n_empty_dropped == 1 and table.report.n_kept == 3


def test_empty_documents_error_option(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(ValueError, match=r"1 empty documents \(first rows \[2\]\).*empty='drop'"):
        read_table(path, empty="error")


def test_null_text_counts_as_empty(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": None, "label": "a"}, {"text": "x", "label": "b"}])
    assert read_table(path).report.n_empty_dropped == 1


def test_missing_label_column_names_the_columns(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(KeyError, match=r"no label column 'category'.*\['text', 'label', 'id'\]"):
        read_table(path, label_column="category")
    with pytest.raises(KeyError, match="no text column 'body'"):
        read_table(path, text_column="body")


def test_missing_label_values_are_an_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": None}, {"text": "b", "label": "x"}])
    with pytest.raises(ValueError, match="no value in label column"):
        read_table(path)


def test_unlabelled_table(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a"}, {"text": "b"}])
    assert read_table(path, label_column=None).labels == [None, None]


def test_non_utf8_bytes_replaced_and_counted(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,label\nLizenz f\xfcr alle,a\nclean,b\nzwei \xff\xfe,a\n")
    table = read_table(path)
    assert table.report.n_replacement_chars == 3 and table.report.n_non_utf8_docs == 2
    assert table.texts[0] == "Lizenz f\ufffdr alle"
    assert "replaced 3 invalid UTF-8" in table.report.notes[0]
    with pytest.raises(ValueError, match="not valid UTF-8.*encoding_errors='replace'"):
        read_table(path, encoding_errors="error")


def test_decode_utf8_does_not_count_genuine_replacement_chars():
    assert decode_utf8("already \ufffd".encode()) == ("already \ufffd", 0)
    assert decode_utf8(b"\xc3\x28")[1] == 1


def test_multi_label_and_paragraph_lists(tmp_path):
    rows = [{"text": ["para one", "para two"], "labels": ["3", "6"]},
            {"text": ["only"], "labels": []}]
    table = read_table(write_jsonl(tmp_path / "d.jsonl", rows), label_column="labels")
    assert table.multi_label
    assert table.texts == ["para one\n\npara two", "only"]
    assert table.labels == [["3", "6"], []]


def test_bad_suffix_and_missing_file(tmp_path):
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(ValueError, match="unknown suffix"):
        read_table(tmp_path / "d.xlsx")
    with pytest.raises(FileNotFoundError):
        read_table(tmp_path / "none.jsonl")


def test_text_folder_labels_from_subfolders(tmp_path):
    (tmp_path / "permissive").mkdir()
    (tmp_path / "copyleft").mkdir()
    (tmp_path / "permissive" / "mit.txt").write_text("Permission is hereby granted")
    (tmp_path / "permissive" / "empty.txt").write_text("\n")
    (tmp_path / "copyleft" / "gpl.txt").write_bytes(b"GNU \xe9 GPL")
    table = read_text_folder(tmp_path)
    assert sorted(zip(table.labels, table.frame["path"])) == [("copyleft", "copyleft/gpl.txt"),
                                                              ("permissive", "permissive/mit.txt")]
    assert table.report.n_empty_dropped == 1
    assert table.report.n_non_utf8_docs == 1 and table.report.n_replacement_chars == 1


def test_text_folder_refuses_unlabelled_files(tmp_path):
    (tmp_path / "loose.txt").write_text("x")
    with pytest.raises(ValueError, match="sub-folder named after its label"):
        read_text_folder(tmp_path)


def test_hf_saved_dataset_with_class_labels(tmp_path):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    ds = datasets.Dataset.from_dict({"text": ["good", "", "bad"], "label": [1, 0, 0]}, features=features)
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "saved"))
    table = read_hf_dataset(tmp_path / "saved", split="train")
    assert table.labels == ["pos", "neg"] and table.report.n_empty_dropped == 1
    assert read_hf_dataset(tmp_path / "saved", label_names=False).labels == [1, 0]
    with pytest.raises(KeyError, match=r"no split 'test'.*\['train'\]"):
        read_hf_dataset(tmp_path / "saved", split="test")
    with pytest.raises(KeyError, match=r"no label column 'category'.*\['text', 'label'\]"):
        read_hf_dataset(tmp_path / "saved", label_column="category")


def test_hf_local_data_file(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    assert read_hf_dataset(path, split="train").report.n_kept == 3


def test_hf_hub_name_offline_is_a_clear_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(OSError, match="offline.*save_to_disk"):
        read_hf_dataset("coastalcph/lex_glue", config="scotus")
