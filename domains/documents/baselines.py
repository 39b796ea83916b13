"""Classical baselines on the same split as the Mamba run.

* ``tfidf_svm``: TF-IDF (word 1-2 grams, sublinear tf) + linear SVM, LexGLUE's
  classical baseline;
* ``tfidf_logreg``: the same features + logistic regression.

The regularisation strength C is chosen on the validation split (macro-F1) when
one is given, then the model is refit on train only; multi-label tasks use one
classifier per label (one-vs-rest) with per-class thresholds tuned on validation.
:func:`run_baselines` returns, per method, the same dict as :mod:`.metrics`.
"""
from __future__ import annotations

import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import LinearSVC

from .metrics import classification_metrics, multilabel_metrics, tune_thresholds

METHODS = ("tfidf_svm", "tfidf_logreg")
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def tfidf_vectorizer(max_features: int | None = 200_000, ngram_range=(1, 2), min_df: int = 2) -> TfidfVectorizer:
    """The shared feature extractor (lower-cased word n-grams, sublinear tf)."""
    return TfidfVectorizer(lowercase=True, ngram_range=ngram_range, min_df=min_df, max_features=max_features,
                           sublinear_tf=True, dtype=np.float32)


def _classifier(method: str, C: float, multi_label: bool, class_weight: str | None, seed: int):
    if method == "tfidf_svm":
        clf = LinearSVC(C=C, class_weight=class_weight, max_iter=5000, random_state=seed)
    elif method == "tfidf_logreg":
        clf = LogisticRegression(C=C, class_weight=class_weight, solver="newton-cg", max_iter=1000)
    else:
        raise ValueError(f"method={method!r} is not one of {METHODS}")
    return OneVsRestClassifier(clf) if multi_label else clf


def _scores(clf, X) -> np.ndarray:
    return clf.decision_function(X)


def _fit_predict(method, C, X_train, y_train, X_eval, multi_label, class_weight, seed, n_classes=0):
    if multi_label:
        clf = _classifier(method, C, True, class_weight, seed).fit(X_train, y_train)
        return _scores(clf, X_eval)
    clf = _classifier(method, C, False, class_weight, seed).fit(X_train, y_train)
    scores = _scores(clf, X_eval)
    if scores.ndim == 1:  # two classes: sklearn gives one column
        scores = np.stack([-scores, scores], axis=1)
    full = np.full((X_eval.shape[0], max(n_classes, int(y_train.max()) + 1)), -np.inf)
    full[:, clf.classes_] = scores
    return full


def run_baselines(train_texts: list[str], train_y, test_texts: list[str], test_y, label_names: list[str],
                  val_texts: list[str] | None = None, val_y=None, test_lengths=None,
                  length_edges=(0, 500, 2000), methods=METHODS, C_grid=C_GRID,
                  class_weight: str | None = "balanced", max_features: int | None = 200_000,
                  min_df: int = 2, seed: int = 0) -> dict[str, dict]:
    """Fit each method on train (C tuned on val), evaluate on test.

    train_y / val_y / test_y: (docs,) int class ids, or (docs, classes) 0/1 for
    multi-label. test_lengths: per test document (e.g. words) for ``by_length``.
    Returns ``{method: metrics dict + "C", "seconds"}``.
    """
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    multi_label = train_y.ndim == 2
    k = len(label_names)
    if not multi_label and len(np.unique(train_y)) < 2:
        raise ValueError("the training split has fewer than two classes; a classifier needs at least two")
    vectorizer = tfidf_vectorizer(max_features=max_features, min_df=min_df)
    X_train = vectorizer.fit_transform(train_texts)
    X_test = vectorizer.transform(test_texts)
    X_val = vectorizer.transform(val_texts) if val_texts is not None else None
    results = {}
    for method in methods:
        start = time.perf_counter()
        best_C, thresholds = C_grid[len(C_grid) // 2], None
        if X_val is not None and len(C_grid) > 1:
            val_y_arr = np.asarray(val_y)
            best_f1 = -1.0
            for C in C_grid:
                s = _fit_predict(method, C, X_train, train_y, X_val, multi_label, class_weight, seed, k)
                if multi_label:
                    f1 = multilabel_metrics(val_y_arr, s, label_names)["macro_f1"]
                else:
                    f1 = classification_metrics(val_y_arr, s.argmax(1), label_names)["macro_f1"]
                if f1 > best_f1:
                    best_C, best_f1 = C, f1
        if multi_label and X_val is not None:
            thresholds = tune_thresholds(
                np.asarray(val_y), _fit_predict(method, best_C, X_train, train_y, X_val, True, class_weight, seed))
        scores = _fit_predict(method, best_C, X_train, train_y, X_test, multi_label, class_weight, seed, k)
        if multi_label:
            out = multilabel_metrics(test_y, scores, label_names, thresholds=thresholds,
                                     lengths=test_lengths, length_edges=length_edges)
        else:
            out = classification_metrics(test_y, scores.argmax(1), label_names, lengths=test_lengths,
                                         length_edges=length_edges, scores=scores)
        out["C"] = best_C
        out["seconds"] = round(time.perf_counter() - start, 2)
        results[method] = out
    return results
