"""Metrics: F1s, per-class report, length buckets, confusion-matrix PNG, multi-label thresholds."""
import numpy as np
import pytest

from mambatune.domains.documents.metrics import (bucket_names, bucket_of, classification_metrics,
                                                 multilabel_metrics, save_confusion_matrix, tune_thresholds)

NAMES = ["a", "b", "c"]


def test_single_label_scores():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 1, 2, 2, 2]
    m = classification_metrics(y_true, y_pred, NAMES)
    assert m["accuracy"] == pytest.approx(5 / 6) and m["micro_f1"] == pytest.approx(5 / 6)
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 0.8) / 3)
    assert m["per_class"]["b"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["confusion_matrix"] == [[2, 0, 0], [0, 1, 1], [0, 0, 2]]


def test_absent_class_counts_in_overall_macro_f1():
    m = classification_metrics([0, 1], [0, 1], NAMES)
    assert m["macro_f1"] == pytest.approx(2 / 3) and m["per_class"]["c"]["support"] == 0


def test_unseen_true_labels_are_errors_and_reported():
    m = classification_metrics([0, -1, 1], [0, 1, 1], NAMES)
    assert m["accuracy"] == pytest.approx(2 / 3) and m["n_unseen"] == 1
    assert m["per_class"]["<unseen>"]["support"] == 1
    with pytest.raises(ValueError, match="class ids"):
        classification_metrics([0, 3], [0, 1], NAMES)


def test_length_buckets():
    assert bucket_names((0, 500, 2000)) == ["<500", "500-1999", ">=2000"]
    assert bucket_of([0, 499, 500, 1999, 2000, 10**6]).tolist() == [0, 0, 1, 1, 2, 2]
    m = classification_metrics([0, 1, 2, 2], [0, 1, 2, 0], NAMES, lengths=[10, 600, 3000, 5000])
    assert m["by_length"]["<500"] == {"n": 1, "accuracy": 1.0, "micro_f1": 1.0, "macro_f1": 1.0}
    assert m["by_length"][">=2000"]["n"] == 2 and m["by_length"][">=2000"]["accuracy"] == 0.5
    empty = classification_metrics([0], [0], NAMES, lengths=[1], length_edges=(0, 100))
    assert empty["by_length"][">=100"] == {"n": 0}


def test_confusion_matrix_png(tmp_path):
    m = classification_metrics([0, 1, 2, 2], [0, 1, 2, 0], NAMES)
    path = save_confusion_matrix(m["confusion_matrix"], NAMES, tmp_path / "plots" / "cm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_threshold_tuning_beats_the_default():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(200, 3))
    # class 0 well separated around 0.3, class 2 never positive in validation
    scores = np.clip(y * 0.3 + rng.uniform(0, 0.25, size=y.shape), 0, 1)
    y[:, 2] = 0
    t = tune_thresholds(y, scores)
    assert 0.25 < t[0] <= 0.55 and t[2] == 0.5
    assert multilabel_metrics(y, scores, NAMES, thresholds=t)["per_class"]["a"]["f1"] == 1.0
    assert multilabel_metrics(y, scores, NAMES)["per_class"]["a"]["f1"] < 0.5


def test_multilabel_metrics_shape_errors_and_buckets():
    y = np.array([[1, 0, 0], [0, 1, 1]])
    logits = np.array([[2.0, -1.0, -3.0], [-1.0, 0.5, 0.1]])
    m = multilabel_metrics(y, logits, NAMES, lengths=[100, 3000])
    assert m["accuracy"] == 1.0 and m["thresholds"] == [0.0, 0.0, 0.0]
    assert m["by_length"][">=2000"]["n"] == 1
    with pytest.raises(ValueError, match="must be"):
        multilabel_metrics(y, logits[:, :2], NAMES)
