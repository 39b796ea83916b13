"""data_source.split_rows: each way of splitting a user's table, recorded, with the carve noted."""
import numpy as np
import polars as pl
import pytest

from mambatune.domains.tables import FILE, ROW, TableError
from mambatune.pipelines.data_source import DataSource, split_rows


def table(n=60, classes=("a", "b", "c"), **extra):
    rows = {"text": [f"t{i}" for i in range(n)], "label": [classes[i % len(classes)] for i in range(n)], **extra}
    return pl.DataFrame(rows).with_columns(pl.Series(ROW, range(1, n + 1)), pl.lit("t.csv").alias(FILE))


def rows_of(splits, name):
    return set(splits.frames[name][ROW].to_list())


def test_ratio_split_is_stratified_seeded_and_recorded(tmp_path):
    s = split_rows(table(), DataSource(), label_column="label")
    sizes = s.sizes()
    assert sizes == {"train": 43, "val": 5, "test": 12}
    assert sorted(s.frames["test"]["label"].value_counts()["count"].to_list()) == [4, 4, 4]
    assert not rows_of(s, "train") & rows_of(s, "test") and not rows_of(s, "val") & rows_of(s, "test")
    again = split_rows(table(), DataSource(), label_column="label")
    assert rows_of(again, "test") == rows_of(s, "test")
    assert any("validation split carved" in n for n in s.notes)
    record = pl.read_csv(s.write(tmp_path))
    assert record.height == 60 and set(record["split"]) == {"train", "val", "test"}


def test_split_column_without_val_carves_val_from_train():
    split = ["test" if i % 5 == 0 else "train" for i in range(60)]
    s = split_rows(table(split=split), DataSource(split_column="split"), label_column="label")
    assert s.sizes()["test"] == 12 and s.sizes()["val"] > 0
    assert "carved from the rows marked train" in s.notes[0]


def test_bad_split_values_name_the_row():
    split = ["train"] * 59 + ["holdout"]
    with pytest.raises(TableError, match=r"t.csv, row 60: 'holdout'"):
        split_rows(table(split=split), DataSource(split_column="split"), label_column="label")


def test_test_file_keeps_all_main_rows_for_train_and_val():
    s = split_rows(table(), DataSource(test_path="x"), label_column="label", test_df=table(9))
    assert s.sizes()["test"] == 9 and s.sizes()["train"] + s.sizes()["val"] == 60


def test_group_column_keeps_groups_together():
    groups = [f"g{i // 4}" for i in range(60)]
    s = split_rows(table(group=groups), DataSource(group_column="group"), label_column="label")
    seen = {}
    for name, frame in s.frames.items():
        for g in frame["group"].to_list():
            seen.setdefault(g, set()).add(name)
    assert all(len(v) == 1 for v in seen.values())


@pytest.mark.parametrize("k", [3, 10])
def test_kfold_test_folds_partition_the_rows(k):
    tests = []
    for fold in range(k):
        s = split_rows(table(), DataSource(cv_folds=k, fold=fold), label_column="label")
        assert not rows_of(s, "test") & (rows_of(s, "train") | rows_of(s, "val"))
        assert len(rows_of(s, "train") | rows_of(s, "val") | rows_of(s, "test")) == 60
        tests.append(rows_of(s, "test"))
    assert sorted(r for t in tests for r in t) == list(range(1, 61))


def test_key_checks():
    with pytest.raises(ValueError, match="cv_folds must be >= 2"):
        DataSource(cv_folds=1)
    with pytest.raises(ValueError, match="leave split_column and test_path unset"):
        DataSource(cv_folds=5, split_column="s")
    with pytest.raises(ValueError, match="val_fraction"):
        DataSource(val_fraction=1.5)
