"""domains.tables on the awkward files a new user brings: each is a clear TableError naming the file, row or
column and the fix, or is read with what was changed counted."""
import json

import polars as pl
import pytest

from mambatune.domains.tables import TableError, read_table, require_columns, to_labels, to_numbers


def write(path, text):
    path.write_text(text)
    return path


def test_a_column_name_typo_suggests_the_column(tmp_path):
    df = read_table(write(tmp_path / "s.csv", "item_id,timestamp,target\nA,2024-01-01,1\n"))
    with pytest.raises(TableError, match=r"no column 'targt' \(data.target_column\); its columns are item_id, "
                                         r"timestamp, target. Did you mean 'target'\? Set data.target_column=target"):
        require_columns(df, {"data.target_column": "targt"}, "s.csv")
    with pytest.raises(TableError, match=r"Did you mean 'target'\?"):  # another case
        require_columns(df, {"data.target_column": "Target"}, "s.csv")
    with pytest.raises(TableError, match=r"its columns are item_id, timestamp, target. Set data.target_column=<"):
        require_columns(df, {"data.target_column": "sales"}, "s.csv")  # nothing close: no guess


@pytest.mark.parametrize("name, header, match", [
    ("semi.csv", "item_id;timestamp;target", r"semi.csv, line 1: the header is one column .* separated by ';', but "
                                             r"this file is read with commas .*decimal points"),
    ("tabs.csv", "item_id\ttimestamp\ttarget", r"tabs.csv, line 1: .* separated by tabs, .* name the file .tsv"),
])
def test_a_file_with_another_separator_says_so(tmp_path, name, header, match):
    body = header + "\n" + header.replace("item_id", "A").replace("timestamp", "2024-01-01").replace("target", "1,5")
    with pytest.raises(TableError, match=match):
        read_table(write(tmp_path / name, body + "\n"))


def test_a_decimal_comma_gets_its_own_advice(tmp_path):
    df = read_table(write(tmp_path / "d.csv", 'v\n1.5\n"2,5"\n'))
    with pytest.raises(TableError, match=r"d.csv, row 2: column 'v' holds '2,5', not a number .*decimal comma"
                                         r".*\(2\.5\)"):
        to_numbers(df, "v", where="d.csv")
    df = read_table(write(tmp_path / "t.csv", 'v\n1.5\n"1,234.5"\n'))
    with pytest.raises(TableError, match=r"thousands separator"):
        to_numbers(df, "v", where="t.csv")


def test_a_csv_field_longer_than_128_kib_is_read(tmp_path):
    text = "word " * 60_000  # one long document: csv's default field limit is 131072 characters
    df = read_table(write(tmp_path / "long.csv", f"text,label\n{text},a\nshort,b\n"))
    assert df["text"].to_list() == [text, "short"]


@pytest.mark.parametrize("second, match", [
    ({"text": ["para", "graph"], "label": "a"}, r"m.jsonl, line 2: field 'text' is a list, but line 1 has a str"),
    ({"text": {"a": 1}, "label": "a"}, r"m.jsonl, line 2: field 'text' is a dict, but line 1 has a str"),
    ({"text": "x", "label": ["a", "b"]}, r"m.jsonl, line 2: field 'label' is a list, but line 1 has a str"),
])
def test_json_lines_mixing_types_in_a_field_name_the_line_and_field(tmp_path, second, match):
    rows = [{"text": "t", "label": "a"}, second, {"text": "u", "label": "b"}]
    with pytest.raises(TableError, match=match) as err:
        read_table(write(tmp_path / "m.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n"))
    assert "\n" not in str(err.value)  # one line, not polars' paragraph


def test_spaces_around_labels_are_stripped_and_counted():
    df = pl.DataFrame({"label": ["a", "  a ", "b", "b "]})
    labels, notes = to_labels(df, "label", where="x")
    assert labels == ["a", "a", "b", "b"]
    assert any("2 label(s) with spaces around them, stripped" in n for n in notes)
    assert to_labels(pl.DataFrame({"label": ["a", "b"]}), "label", where="x")[1] == []


def test_a_missing_file_names_the_key_that_gave_it(tmp_path):
    with pytest.raises(TableError, match=r"not found .*check data.test_path"):
        read_table(tmp_path / "nothere.csv", key="data.test_path")
    with pytest.raises(TableError, match=r"check data.path"):
        read_table(tmp_path / "nothere.csv")


def test_an_empty_json_lines_file_says_what_it_needs(tmp_path):
    with pytest.raises(TableError, match=r"e.jsonl is empty: it needs one JSON object per line"):
        read_table(write(tmp_path / "e.jsonl", "\n\n"))
