"""The zero-shot VEP recipe on a user's VCF scores indels, MNVs and complex variants on equal-length haplotype
windows, under the pretrained LM and the Markov LM alike, with metrics over all variants and per kind group."""
import json
import random

import numpy as np
import polars as pl
import pytest
import torch

from mambatune.core.checkpoints import save_pretrained
from mambatune.core.config import MambaConfig
from mambatune.core.heads import MambaForTask
from mambatune.domains.genomics import DNATokenizer, reverse_complement
from mambatune.domains.genomics.vep import MarkovLM, haplotype_windows, sequence_log_likelihood
from mambatune.pipelines.cli import main
from mambatune.pipelines.genomics.scoring import load_lm, open_run
from mambatune.pipelines.genomics.user_vep import metrics_by_kind

WINDOW = 64
QUICK = ["data.window=64", "data.n_boot=10", "data.kmer_choices=[2]", "train.progress=false",
         "train.tensorboard=false"]


def write_fasta(path, length: int = 6000) -> str:
    rng = random.Random(7)
    seq = "".join(rng.choice("ACGT") for _ in range(length))
    path.write_text(">t1\n" + "\n".join(seq[i:i + 60] for i in range(0, length, 60)) + "\n")
    return seq


def variants(seq: str, start: int, n_snv: int, n_other: int) -> list[tuple[int, str, str]]:
    """(1-based pos, ref, alt), already normalised: SNVs, then insertions, deletions, MNVs and complex ones in turn,
    80 bp apart from ``start``."""
    out = []
    for i in range(n_snv + n_other):
        p = start + 80 * i  # 0-based
        b = seq[p]
        if i < n_snv:
            out.append((p + 1, b, "A" if b != "A" else "C"))
            continue
        kind = (i - n_snv) % 4
        if kind == 0:
            out.append((p + 1, b, b + "GA"))
        elif kind == 1:
            out.append((p + 1, seq[p:p + 3], b))
        elif kind == 2:
            out.append((p + 1, seq[p:p + 2], "".join("A" if c != "A" else "C" for c in seq[p:p + 2])))
        else:
            out.append((p + 1, seq[p:p + 2], ("A" if b != "A" else "C") + "TTT"))
    return out


def write_vcf(path, rows, labelled: bool = True) -> None:
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for i, (pos, ref, alt) in enumerate(rows):
        lines.append(f"t1\t{pos}\tv{i}\t{ref}\t{alt}\t.\tPASS\t{f'CLASS={i % 2}' if labelled else '.'}")
    path.write_text("\n".join(lines) + "\n")


def windows(seq: str, pos: int, ref: str, alt: str) -> tuple[str, str]:
    return haplotype_windows(seq, pos - 1, ref, alt, WINDOW)


def llr_by_hand(lm, ref: str, alt: str) -> float:
    """log p(alt) - log p(ref) summed over each window's tokens, the mean over both strands."""
    tok = DNATokenizer()
    total = 0.0
    for r, a in ((ref, alt), (reverse_complement(ref), reverse_complement(alt))):
        ids = torch.tensor([tok.encode(a), tok.encode(r)])
        lp = sequence_log_likelihood(lm.eval(), ids, tok.vocab_size)
        total += float(lp[0] - lp[1])
    return total / 2


def test_unlabelled_indels_scored_on_haplotype_windows_like_predict(tmp_path, capsys):
    seq = write_fasta(tmp_path / "g.fa")
    rows = variants(seq, 600, 4, 8)
    write_vcf(tmp_path / "u.vcf", rows, labelled=False)
    out = tmp_path / "zs"
    assert main(["run", "genomics/vep_zeroshot", f"train.output_dir={out}", f"data.path={tmp_path}/u.vcf",
                 f"data.genome={tmp_path}/g.fa", *QUICK]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["scored"] == {"scored_snv": 4, "scored_not_snv": 8, "scored_complex": 2, "scored_deletion": 2,
                                 "scored_insertion": 2, "scored_mnv": 2}
    assert results["data"]["variants"]["read_insertion"] == 2
    preds = pl.read_csv(out / "predictions_test.csv")
    assert preds["kind"].to_list() == ["snv"] * 4 + ["insertion", "deletion", "mnv", "complex"] * 2
    lm_score, markov_score = preds["score: pretrained LM (-LLR)"], preds["score: order-5 Markov LM (-LLR)"]
    # the LM's and the Markov LM's -LLR by hand on the haplotype windows (an SNV's are its centred windows)
    pairs = [windows(seq, *r) for r in rows]
    markov = MarkovLM(5).fit([r for r, _ in pairs])
    lm = load_lm(*open_run(out))
    for i in (0, 4, 5, 6, 7):
        assert lm_score[i] == pytest.approx(-llr_by_hand(lm, *pairs[i]), abs=1e-4)
        assert markov_score[i] == pytest.approx(-markov.log_likelihood_ratio([pairs[i][0]], [pairs[i][1]])[0])
    assert markov_score[4] != 0 and lm_score[4] != 0
    # ... and what `mambatune predict` gives for the same variants
    assert main(["predict", str(out), f"{tmp_path}/u.vcf", "--genome", f"{tmp_path}/g.fa",
                 "-o", str(tmp_path / "p.csv")]) == 0
    predicted = pl.read_csv(tmp_path / "p.csv")
    assert predicted["score"].to_list() == pytest.approx(lm_score.to_list(), abs=1e-4)
    report = (out / "report.md").read_text()
    assert "haplotype windows" in report and "scored_not_snv" in report


def test_labelled_metrics_over_all_and_per_kind(tmp_path):
    seq = write_fasta(tmp_path / "g.fa")
    write_vcf(tmp_path / "train.vcf", variants(seq, 100, 24, 4))
    write_vcf(tmp_path / "test.vcf", variants(seq, 2500, 12, 12))
    out = tmp_path / "zs"
    assert main(["run", "genomics/vep_zeroshot", f"train.output_dir={out}", f"data.path={tmp_path}/train.vcf",
                 f"data.test_path={tmp_path}/test.vcf", f"data.genome={tmp_path}/g.fa", "data.label_info=CLASS",
                 *QUICK]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["scored"]["scored_snv"] == 12 and results["scored"]["scored_not_snv"] == 12
    models = set(results["test"])
    assert {"pretrained LM (-LLR)", "order-5 Markov LM (-LLR)"} <= models
    for group in ("snv", "not_snv"):
        assert set(results["test_by_kind"][group]) == models
        for m in results["test_by_kind"][group].values():
            assert 0 <= m["auroc"] <= 1 and len(m["auroc_ci"]) == 2 and m["n"] == 12
    preds = pl.read_csv(out / "predictions_test.csv")
    assert preds.height == 24 and preds["kind"].to_list().count("snv") == 12
    report = (out / "report.md").read_text()
    assert "### SNVs" in report and "### Other kinds" in report
    assert main(["eval", str(out)]) == 0  # eval rescores the same variants, every kind, as the run did
    evaluated = json.loads((out / "eval_test.json").read_text())
    assert evaluated["examples"] == 24
    assert evaluated["metrics"]["auroc"] == pytest.approx(results["test"]["pretrained LM (-LLR)"]["auroc"], abs=1e-6)


def test_a_kind_group_too_small_or_of_one_class_says_so():
    y = np.array([0, 1] * 6 + [1, 1, 1])
    kinds = ["snv"] * 12 + ["deletion"] * 3
    out = metrics_by_kind(y, {"m (-LLR)": np.linspace(-1, 1, 15)}, kinds, n_boot=0, seed=0)
    assert "auroc" in out["snv"]["m (-LLR)"]
    assert out["not_snv"] == {"n": 3, "note": "no metric: too few variants (3 < 10)"}
    out = metrics_by_kind(np.ones(12, dtype=int), {"m (-LLR)": np.zeros(12)}, ["insertion"] * 12, n_boot=0, seed=0)
    assert out["not_snv"]["note"] == "no metric: one class only (12 variants)" and "note" in out["snv"]


def test_a_masked_lm_scores_the_snvs_and_counts_the_rest(tmp_path):
    """A bidirectional (masked) LM's marginal is defined for one base: the other kinds are left out, with a note."""
    seq = write_fasta(tmp_path / "g.fa")
    write_vcf(tmp_path / "u.vcf", variants(seq, 600, 3, 4), labelled=False)
    torch.manual_seed(0)
    tok = DNATokenizer()
    model = MambaForTask(MambaConfig(d_model=8, n_layer=1, d_state=4, vocab_size=tok.vocab_size, bidirectional=True))
    save_pretrained(model, tmp_path / "masked")
    tok.save(tmp_path / "masked")
    out = tmp_path / "zs"
    assert main(["run", "genomics/vep_zeroshot", f"train.output_dir={out}", f"data.path={tmp_path}/u.vcf",
                 f"data.genome={tmp_path}/g.fa", f"model.pretrained={tmp_path}/masked", "model.config.d_model=8",
                 "model.config.n_layer=1", "model.config.d_state=4", *QUICK]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["scored"] == {"scored_snv": 3, "scored_not_snv": 0}
    assert pl.read_csv(out / "predictions_test.csv")["kind"].to_list() == ["snv"] * 3
    assert "4 other variant(s)" in (out / "report.md").read_text()

    # labelled, then `mambatune eval`: the masked LM's run scored SNVs only, and so does its evaluation
    write_vcf(tmp_path / "train.vcf", variants(seq, 100, 24, 4))
    write_vcf(tmp_path / "test.vcf", variants(seq, 2500, 12, 12))
    out = tmp_path / "zs_labelled"
    assert main(["run", "genomics/vep_zeroshot", f"train.output_dir={out}", f"data.path={tmp_path}/train.vcf",
                 f"data.test_path={tmp_path}/test.vcf", f"data.genome={tmp_path}/g.fa", "data.label_info=CLASS",
                 f"model.pretrained={tmp_path}/masked", "model.config.d_model=8", "model.config.n_layer=1",
                 "model.config.d_state=4", *QUICK]) == 0
    results = json.loads((out / "results.json").read_text())
    assert main(["eval", str(out)]) == 0
    evaluated = json.loads((out / "eval_test.json").read_text())
    assert evaluated["examples"] == 12
    assert evaluated["metrics"]["auroc"] == pytest.approx(results["test"]["pretrained LM (-LLR)"]["auroc"], abs=1e-6)
