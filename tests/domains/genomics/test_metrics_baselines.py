import numpy as np
import pytest

from mambatune.domains.genomics.baselines import KmerLogisticRegression
from mambatune.domains.genomics.metrics import binary_metrics, multiclass_metrics, plot_roc_pr


def test_binary_metrics_and_intervals():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = y + rng.normal(0, 0.6, 400)
    m = binary_metrics(y, good, threshold=0.5, n_boot=200)
    lo, hi = m["auroc_ci"]
    assert 0.8 < m["auroc"] < 1 and lo < m["auroc"] < hi
    rand = binary_metrics(y, rng.random(400), n_boot=200)
    assert rand["auroc_ci"][0] < 0.5 < rand["auroc_ci"][1]  # a random scorer's interval covers 0.5
    with pytest.raises(ValueError, match="NaN"):
        binary_metrics([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        binary_metrics([0, 1], [0.1, 0.2, 0.3])


def test_multiclass_metrics():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    p = np.eye(3)[y] * 2 + rng.random((300, 3))
    m = multiclass_metrics(y, p / p.sum(1, keepdims=True), n_boot=50)
    assert m["accuracy"] > 0.9 and m["auroc_macro"] > 0.9 and "macro_f1_ci" in m


def test_plots_are_written(tmp_path):
    y = np.array([0, 1, 0, 1, 1, 0])
    paths = plot_roc_pr(y, {"a": np.array([0.1, 0.9, 0.2, 0.8, 0.7, 0.3]), "b": np.linspace(0, 1, 6)}, tmp_path)
    assert [p.name for p in paths] == ["roc.png", "pr.png"] and all(p.stat().st_size > 1000 for p in paths)


def test_kmer_baseline_learns_a_motif_and_is_strand_invariant():
    rng = np.random.default_rng(2)
    seqs, labels = [], []
    for i in range(120):
        s = "".join(rng.choice(list("ACGT"), 200))
        if i % 2:
            s = s[:60] + "TATAAAAGGC" * 3 + s[90:]
        seqs.append(s)
        labels.append(i % 2)
    from mambatune.domains.genomics.tokenizer import reverse_complement

    m = KmerLogisticRegression(k=4).fit(seqs[:80], labels[:80])
    p = m.predict_proba(seqs[80:])[:, 1]
    assert binary_metrics(labels[80:], p, n_boot=0)["auroc"] > 0.9
    p_rc = m.predict_proba([reverse_complement(s) for s in seqs[80:]])[:, 1]
    assert np.allclose(p, p_rc)


def test_kmer_counts_match_a_direct_count_on_both_strands():
    from collections import Counter

    from mambatune.domains.genomics.baselines import KmerCounts
    from mambatune.domains.genomics.tokenizer import reverse_complement

    rng = np.random.default_rng(3)
    seqs = ["".join(rng.choice(list("ACGTN"), size=n, p=[0.24, 0.24, 0.24, 0.24, 0.04])) for n in (50, 7, 3, 120)]
    kc = KmerCounts(k=3).fit(seqs)
    rows = kc.transform(seqs).toarray()
    alphabet = "ACGTN?"
    names = ["".join(alphabet[(c // 6 ** (2 - j)) % 6] for j in range(3)) for c in kc.columns_]
    for seq, row in zip(seqs, rows):
        direct = Counter(t[i:i + 3] for t in (seq, reverse_complement(seq)) for i in range(len(t) - 2))
        assert {n: int(v) for n, v in zip(names, row) if v} == dict(direct)
    assert rows[2].sum() == 2  # a 3 bp sequence: one k-mer per strand
