"""domains.tables: every format, and each bad input a clear TableError naming the file and row."""
import gzip
import json

import numpy as np
import polars as pl
import pytest

from mambatune.domains.tables import FILE, ROW, TableError, read_table, require_columns, to_labels, to_numbers


def write(path, text, mode="w"):
    path.write_text(text) if mode == "w" else path.write_bytes(text)
    return path


def test_formats_read_the_same_rows(tmp_path):
    rows = [{"text": "ACGT", "label": "a"}, {"text": "GG,CC", "label": "b"}]
    write(tmp_path / "t.csv", 'text,label\nACGT,a\n"GG,CC",b\n')
    write(tmp_path / "t.tsv", "text\tlabel\nACGT\ta\nGG,CC\tb\n")
    write(tmp_path / "t.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    write(tmp_path / "t.json", json.dumps(rows))
    pl.DataFrame(rows).write_parquet(tmp_path / "t.parquet")
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress((tmp_path / "t.csv").read_bytes()))
    for name in ("t.csv", "t.tsv", "t.jsonl", "t.json", "t.parquet", "t.csv.gz"):
        df = read_table(tmp_path / name)
        assert df["text"].to_list() == ["ACGT", "GG,CC"] and df["label"].to_list() == ["a", "b"], name
        assert df[ROW].to_list() == [1, 2] and df[FILE][0] == name


def test_folder_glob_and_search_dirs(tmp_path):
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "a.csv", "x,y\n1,2\n")
    write(tmp_path / "d" / "b.csv", "x,y\n3,4\n")
    write(tmp_path / "d" / "notes.md", "not a table")
    assert read_table(tmp_path / "d")["x"].to_list() == ["1", "3"]
    assert read_table(str(tmp_path / "d" / "*.csv"))["x"].to_list() == ["1", "3"]
    assert read_table("a.csv", search_dirs=[tmp_path / "d"]).height == 1


def test_csv_columns_stay_text_so_types_come_from_the_whole_file(tmp_path):
    body = "v\n" + "\n".join(str(i) for i in range(500)) + "\n22.1\nNA\n\n"
    df = read_table(write(tmp_path / "late.csv", body))
    values, missing = to_numbers(df, "v", where="t")
    assert values[500] == pytest.approx(22.1) and missing == 1 and np.isnan(values[-1])


@pytest.mark.parametrize("name, content, match", [
    ("empty.csv", "", "is empty"),
    ("header.csv", "a,b\n", "no rows"),
    ("ragged.csv", "a,b\n1,2\n3,4,5\n", r"data row 2 .*3 fields where the header has 2"),
    ("dup.csv", "a,a\n1,2\n", "names column 'a' twice"),
    ("bad.jsonl", '{"a": 1}\n{"a": 2\n', r"line 2: not valid JSON"),
    ("list.jsonl", '[1, 2]\n', r"line 1: expected an object"),
    ("x.xlsx", "zz", "unknown table format"),
])
def test_bad_files_name_file_and_row(tmp_path, name, content, match):
    with pytest.raises(TableError, match=match) as err:
        read_table(write(tmp_path / name, content))
    assert name in str(err.value)


def test_latin1_gets_the_encoding_hint_and_reads_with_it(tmp_path):
    path = write(tmp_path / "l1.csv", "text,label\ncaf\xe9,a\n".encode("latin-1"), mode="b")
    with pytest.raises(TableError, match=r"l1.csv, line 2: .*data.encoding=latin-1"):
        read_table(path)
    assert read_table(path, encoding="latin-1")["text"][0] == "café"


def test_truncated_gzip(tmp_path):
    data = gzip.compress(b"a,b\n" + b"1,2\n" * 1000)
    path = write(tmp_path / "t.csv.gz", data[: len(data) // 2], mode="b")
    with pytest.raises(TableError, match="truncated or corrupt"):
        read_table(path)


def test_missing_path_and_column(tmp_path):
    with pytest.raises(TableError, match="not found"):
        read_table(tmp_path / "nope.csv")
    df = read_table(write(tmp_path / "t.csv", "seq,y\nA,1\n"))
    with pytest.raises(TableError, match=r"no column 'text' \(data.text_column\); its columns are seq, y"):
        require_columns(df, {"data.text_column": "text"}, "t.csv")


def test_numbers_refuse_text_and_inf_naming_the_row(tmp_path):
    df = read_table(write(tmp_path / "n.csv", "v\n1\n2\nabc\n"))
    with pytest.raises(TableError, match=r"n.csv, row 3: column 'v' holds 'abc'"):
        to_numbers(df, "v", where="n")
    df = read_table(write(tmp_path / "i.csv", "v\n1\ninf\n"))
    with pytest.raises(TableError, match="row 2.*infinite"):
        to_numbers(df, "v", where="i")
    assert to_numbers(df, "v", where="i", allow_inf=True)[0][1] == np.inf


@pytest.mark.parametrize("bad", ["", "nan", "NA"])
def test_missing_labels_are_errors(tmp_path, bad):
    df = read_table(write(tmp_path / "l.csv", f"t,y\na,x\nb,{bad}\n"))
    with pytest.raises(TableError, match=r"1 row\(s\) have no label .*l.csv, row 2"):
        to_labels(df, "y", where="l")


def test_numeric_labels_in_two_spellings_become_one_and_are_counted(tmp_path):
    df = read_table(write(tmp_path / "l.csv", "t,y\na,0\nb,0.0\nc,1\n"))
    labels, notes = to_labels(df, "y", where="l")
    assert labels == ["0", "0", "1"] and "1 numeric label(s) rewritten" in notes[0] and "'0'" in notes[0]


def test_a_json_object_of_records_with_boxed_scalars(tmp_path):
    # the layout of R's jsonlite and of the M1 / M3 competition files: {"N1": {"period": ["YEARLY"], "x": [...]}}
    whole = {"N1": {"period": ["YEARLY"], "x": [1.0, 2.5, 3.0]}, "N2": {"period": ["MONTHLY"], "x": [4.0]}}
    df = read_table(write(tmp_path / "m.json", json.dumps(whole)))
    assert df["id"].to_list() == ["N1", "N2"] and df["period"].to_list() == ["YEARLY", "MONTHLY"]
    assert df["x"].to_list() == [[1.0, 2.5, 3.0], [4.0]]  # a list that is not boxed everywhere stays a list


def test_numbers_column_wise_keep_the_row_and_the_missing_count():
    df = pl.DataFrame({"v": [" 1.5 ", "NA", "1e3", "", "-2", "-"], ROW: [2, 3, 4, 5, 6, 7], FILE: ["a.csv"] * 6})
    values, missing = to_numbers(df, "v", where="data.target_column")
    assert missing == 3 and np.allclose(values[[0, 2, 4]], [1.5, 1000.0, -2.0]) and np.isnan(values[[1, 3, 5]]).all()
    bad = pl.DataFrame({"v": ["1", "2", "1_000"], ROW: [2, 3, 4], FILE: ["a.csv"] * 3})
    with pytest.raises(TableError, match=r"a.csv, row 4: column 'v' holds '1_000', not a number"):
        to_numbers(bad, "v", where="data.target_column")
    ints = pl.DataFrame({"v": [1, None, 3]})
    values, missing = to_numbers(ints, "v", where="x")
    assert missing == 1 and values[2] == 3.0
    with pytest.raises(TableError, match="row 2: column 'v' is empty"):
        to_numbers(ints, "v", where="x", allow_missing=False)
