"""TF-IDF baselines on a small subsample of the committed license data (single-label) and a stand-in multi-label set."""
import numpy as np
import polars as pl
import pytest

from mambatune.domains.documents import load_license_dataset
from mambatune.domains.documents.baselines import run_baselines


def subsample(split, per_class, seed=0):
    frame = load_license_dataset(split).frame
    frame = frame.filter(pl.col("label").is_in(["Permissive", "Copyleft", "Copyleft Limited", "Commercial"]))
    frame = frame.filter(pl.int_range(pl.len()).shuffle(seed).over("label") < per_class)
    return frame.with_columns(pl.col("text").str.slice(0, 4000))


def test_baselines_on_license_subsample():
    train, val, test = subsample("train", 30), subsample("val", 10), subsample("test", 10)
    names = sorted(set(train["label"]))
    idx = {c: i for i, c in enumerate(names)}
    res = run_baselines(train["text"].to_list(), [idx[c] for c in train["label"]],
                        test["text"].to_list(), [idx[c] for c in test["label"]], names,
                        val_texts=val["text"].to_list(), val_y=[idx[c] for c in val["label"]],
                        test_lengths=test["n_words"].to_numpy(), C_grid=(0.1, 1.0))
    assert set(res) == {"tfidf_svm", "tfidf_logreg"}
    for r in res.values():
        assert r["macro_f1"] > 0.4 and r["C"] in (0.1, 1.0)
        assert set(r["by_length"]) == {"<500", "500-1999", ">=2000"}
        assert sum(b["n"] for b in r["by_length"].values()) == test.height
        assert len(r["confusion_matrix"]) == len(names)


def test_baselines_multi_label_with_tuned_thresholds():
    rng = np.random.default_rng(0)
    words = ["privacy", "detention", "property", "trial"]
    def make(n):
        y = rng.integers(0, 2, size=(n, 4))
        texts = [" ".join([w for w, on in zip(words, row) if on] * 3 + ["the", "court", "held"]) for row in y]
        return texts, y
    (tr, ytr), (va, yva), (te, yte) = make(60), make(20), make(20)
    res = run_baselines(tr, ytr, te, yte, words, val_texts=va, val_y=yva, methods=("tfidf_svm",), min_df=1)
    assert res["tfidf_svm"]["macro_f1"] > 0.9 and len(res["tfidf_svm"]["thresholds"]) == 4


def test_baselines_need_two_classes():
    with pytest.raises(ValueError, match="two classes"):
        run_baselines(["a b", "a c"], [0, 0], ["a"], [0], ["x"])
