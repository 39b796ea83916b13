"""The committed license-category dataset and the pieces that build it."""
import json
import zipfile

import polars as pl
import pytest

from mambatune.domains.documents import load_license_dataset
from mambatune.domains.documents.demo_data import build, grouped_stratified_split
from mambatune.domains.documents.licenses import license_parquet_path, parse_license_file

DATA = license_parquet_path().parent


def test_committed_file_is_small_and_complete():
    assert license_parquet_path().stat().st_size < 8e6
    frame = pl.read_parquet(license_parquet_path())
    assert frame.columns == ["text", "category", "key", "n_words", "is_deprecated", "split"]
    manifest = json.loads((DATA / "manifest.json").read_text())
    assert frame.height == manifest["documents"] and frame["key"].n_unique() == frame.height
    assert (DATA / "README.md").read_text().count("CC-BY-4.0") >= 1


def test_splits_are_stratified_and_disjoint_in_text():
    frame = pl.read_parquet(license_parquet_path())
    counts = frame.group_by("category", "split").len()
    assert counts.filter(pl.col("split") == "test")["category"].n_unique() == frame["category"].n_unique()
    norm = frame.with_columns(pl.col("text").str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
                              .alias("norm"))
    train = set(norm.filter(pl.col("split") == "train")["norm"])
    assert not train & set(norm.filter(pl.col("split") == "test")["norm"])


def test_load_license_dataset():
    test = load_license_dataset("test")
    assert set(test.frame["split"]) == {"test"} and len(test) > 300
    assert {"key", "n_words", "is_deprecated"} <= set(test.frame.columns)
    no_dep = load_license_dataset("test", include_deprecated=False)
    assert len(no_dep) == len(test) - test.frame["is_deprecated"].sum()
    assert "deprecated" in no_dep.report.notes[0]
    with pytest.raises(ValueError, match="split="):
        load_license_dataset("dev")
    with pytest.raises(FileNotFoundError, match="demo_data"):
        load_license_dataset(path="/nonexistent/licenses.parquet")


def test_parse_license_file():
    rec = parse_license_file(b"---\nkey: x-1\ncategory: Permissive\nis_deprecated: yes\n---\n\nDo what you want.\n")
    assert (rec.key, rec.category, rec.is_deprecated, rec.text) == ("x-1", "Permissive", True, "Do what you want.")
    with pytest.raises(ValueError, match="not closed"):
        parse_license_file(b"---\nkey: x\n")
    with pytest.raises(ValueError, match="does not start"):
        parse_license_file(b"plain text")
    assert parse_license_file(b"---\nkey: y\n---\nf\xfcr").n_replacement_chars == 1


def test_grouped_split_keeps_groups_together():
    categories = ["a"] * 20 + ["b"] * 10
    groups = [f"g{i // 2}" for i in range(30)]
    split = grouped_stratified_split(categories, groups, seed=3)
    for i in range(0, 30, 2):
        assert split[i] == split[i + 1]
    assert {"train", "val", "test"} <= set(split[:20])


def test_build_from_a_stand_in_wheel(tmp_path):
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for i in range(12):
            cat = "Permissive" if i % 2 else "Copyleft"
            z.writestr(f"licensedcode/data/licenses/k{i}.LICENSE",
                       f"---\nkey: k{i}\ncategory: {cat}\nis_deprecated: {'yes' if i == 3 else 'no'}\n---\n"
                       + f"text number {i} " * (i + 1))
        z.writestr("licensedcode/data/licenses/empty.LICENSE", "---\nkey: empty\ncategory: Copyleft\n---\n")
        z.writestr("licensedcode/data/licenses/rare.LICENSE", "---\nkey: rare\ncategory: CLA\n---\nsign here")
    frame, manifest = build(wheel, seed=0, min_category_size=3)
    assert frame.height == 12 and manifest["dropped_empty_text"] == 1
    assert manifest["dropped_small_categories"] == {"CLA": 1}
    assert manifest["deprecated_kept"] == 1 and frame.filter(pl.col("key") == "k3")["is_deprecated"].item()
