"""Promoter windows of any length read from a reference FASTA (``data.genome``): centred on the demo
windows' centres, split kept leak-free at the long length (dropped training windows counted),
read lazily, end to end through ``mambatune run``.

The demo coordinates span 63 Mb of chr20, so these tests swap the demo table for a small one on a
150 kb contig named like the demo's ("20") and write that contig to a FASTA in tmp_path."""
import json
import pickle

import numpy as np
import polars as pl
import pytest

from mambatune.domains.genomics import DNATokenizer, Genome, reverse_complement
from mambatune.domains.genomics.sequence_data import DNAWindowDataset, GenomeWindows, overlapping, predict_logits
from mambatune.pipelines.genomics import config as genomics_config
from mambatune.pipelines.genomics import data as genomics_data
from mambatune.pipelines.cli import main

CONTIG_LENGTH = 150_000
DEMO_WINDOW = 2_000


@pytest.fixture
def genome_file(tmp_path):
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGT"), CONTIG_LENGTH))
    path = tmp_path / "20.fa"
    path.write_text(">20\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n")
    return path


@pytest.fixture
def demo_table(genome_file, monkeypatch):
    """A demo-like promoter table (2,000 bp strand-aware windows, region split) on the small contig,
    served by ``load_promoters`` as the pipeline calls it."""
    centres = list(range(1_500, CONTIG_LENGTH - 1_500, 2_500))
    split = ["train" if c < 90_000 else "val" if c < 115_000 else "test" for c in centres]
    strand = ["+" if i % 3 else "-" for i in range(len(centres))]
    with Genome(genome_file) as g:
        seqs = [g.window("20", c, DEMO_WINDOW, s).sequence for c, s in zip(centres, strand)]
    table = pl.DataFrame({
        "chrom": ["20"] * len(centres), "start": [c - DEMO_WINDOW // 2 for c in centres],
        "end": [c + DEMO_WINDOW // 2 for c in centres], "strand": strand, "center": centres,
        "label": [i % 2 for i in range(len(centres))], "class_id": [i % 2 for i in range(len(centres))],
        "split": split, "sequence": seqs,
    })

    def load_promoters(task="binary", split=None):
        return table if split is None else table.filter(pl.col("split").is_in([split] if isinstance(split, str) else split))

    monkeypatch.setattr(genomics_data, "load_promoters", load_promoters)
    return table


def config(genome_file, window: int, **kw) -> genomics_config.DataConfig:
    return genomics_config.DataConfig(window=window, genome=str(genome_file), **kw)


def test_long_windows_have_the_length_and_the_demo_centre(genome_file, demo_table):
    window = 8_192
    splits, info = genomics_data.promoter_windows(config(genome_file, window))
    demo = {(row["split"], row["center"]): row["sequence"] for row in demo_table.iter_rows(named=True)}
    n = 0
    for split, (windows, labels) in splits.items():
        assert isinstance(windows, GenomeWindows) and len(windows) == len(labels)
        for i, seq in enumerate(windows):
            assert len(seq) == window
            # both strands: the demo's 2,000 bp sit at the long window's centre
            middle = seq[window // 2 - DEMO_WINDOW // 2: window // 2 + DEMO_WINDOW // 2]
            assert middle == demo[(split, int(windows.centres[i]))]
            n += 1
    assert n == demo_table.height - info["dropped_train_overlap"]
    # the first window (centre 1,500) reaches 2,596 bp before the contig start: N there
    first = GenomeWindows(genome_file, ["20"], [1_500], window)[0]
    assert first.startswith("N" * (window // 2 - 1_500)) and first[window // 2 - 1_500] != "N"
    centres = demo_table["center"].to_numpy()
    assert info["padded_windows"] == int(((centres < window // 2) | (centres + window // 2 > CONTIG_LENGTH)).sum()) > 0


def brute_overlaps(a, b) -> np.ndarray:
    return np.array([any(s < e2 and s2 < e for s2, e2 in b) for s, e in a], dtype=bool)


def test_overlapping_matches_a_brute_force_check():
    rng = np.random.default_rng(1)
    starts = rng.integers(0, 10_000, 300)
    ends = starts + rng.integers(1, 500, 300)
    o_starts = rng.integers(0, 10_000, 40)
    o_ends = o_starts + rng.integers(1, 800, 40)
    chroms, o_chroms = rng.choice(["20", "21"], 300), rng.choice(["chr20", "21"], 40)
    got = overlapping(chroms, starts, ends, o_chroms, o_starts, o_ends)
    for c in ("20", "21"):
        mine, other = chroms == c, np.array([x.removeprefix("chr") for x in o_chroms]) == c
        want = brute_overlaps(list(zip(starts[mine], ends[mine])), list(zip(o_starts[other], o_ends[other])))
        assert (got[mine] == want).all()


@pytest.mark.parametrize("window", [4_096, 32_768])
def test_training_windows_overlapping_held_out_ones_are_dropped_and_counted(genome_file, demo_table, window):
    splits, info = genomics_data.promoter_windows(config(genome_file, window))

    def spans(split):
        w = splits[split][0]
        return [(c - window // 2, c - window // 2 + window) for c in w.centres.tolist()]

    train, held = spans("train"), spans("val") + spans("test")
    assert not brute_overlaps(train, held).any()  # no training window touches a held-out one
    all_train = [(c - window // 2, c - window // 2 + window)
                 for c in demo_table.filter(pl.col("split") == "train")["center"].to_list()]
    expected = int(brute_overlaps(all_train, held).sum())
    assert expected > 0 and info["dropped_train_overlap"] == expected
    assert info["train_windows_before"] == len(all_train) == len(train) + expected
    assert info["val_overlapping_test"] == int(brute_overlaps(spans("val"), spans("test")).sum())


def test_long_window_errors(genome_file, demo_table, tmp_path):
    with pytest.raises(ValueError, match="set data.window"):
        genomics_data.promoter_windows(config(genome_file, None))
    with pytest.raises(ValueError, match="no training window is left"):
        genomics_data.promoter_windows(config(genome_file, 400_000))
    other = tmp_path / "other.fa"
    other.write_text(">20\n" + "A" * CONTIG_LENGTH + "\n")
    with pytest.raises(ValueError, match="GRCh37"):
        genomics_data.promoter_windows(config(other, 8_192))


def test_lazy_windows_tokenize_like_strings_and_cross_processes(genome_file):
    tok = DNATokenizer()
    windows = GenomeWindows(genome_file, ["20", "chr20"], [50_000, 90_000], 3_000, ["+", "-"])
    lazy = DNAWindowDataset(windows, [0, 1], tok)
    eager = DNAWindowDataset(list(windows), [0, 1], tok)
    assert lazy.ids is None and len(lazy) == 2
    for i in range(2):
        assert (lazy.token_ids(i) == eager.token_ids(i)).all()
    assert windows[1] == reverse_complement(GenomeWindows(genome_file, ["20"], [90_000], 3_000)[0])
    copy = pickle.loads(pickle.dumps(lazy))  # what a DataLoader worker gets: no open file handle
    assert copy.windows._genome is None and (copy.token_ids(0) == eager.token_ids(0)).all()
    flipped = DNAWindowDataset(windows, [0, 1], tok, rc_augment=True)
    seen = {tuple(flipped[0]["input_ids"][:20].tolist()) for _ in range(30)}
    assert len(seen) == 2  # both strands drawn

    import torch
    from mambatune.core import MambaConfig, MambaForTask, build_head
    torch.manual_seed(0)
    cfg = MambaConfig(d_model=8, n_layer=1, d_state=4, vocab_size=tok.vocab_size, pad_token_id=0)
    model = MambaForTask(cfg, build_head("classification", 8, num_labels=2))
    assert torch.allclose(predict_logits(model, lazy, 2), predict_logits(model, eager, 2), atol=1e-5)


def test_run_promoter_lora_with_long_genome_windows(genome_file, demo_table, tmp_path):
    out = tmp_path / "long"
    args = ["run", "genomics/promoter_lora", f"train.output_dir={out}", "model.pretrained=null",
            "model.config.d_model=8", "model.config.n_layer=1", "model.config.d_state=4",
            f"data.genome={genome_file}", "data.window=16384", "data.max_train=12", "data.max_eval=8",
            "data.n_boot=20", "train.batch_size=4", "train.max_steps=2", "train.eval_every=2", "train.log_every=1",
            "train.progress=false", "train.monitor_every=2", "train.tensorboard=false"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    long = results["long_windows"]
    assert long["window"] == 16_384 and long["dropped_train_overlap"] > 0
    assert results["sizes"]["train"] == 12 and results["sizes"]["test"] == 8
    assert any("6-mer" in name for name in results["test"])  # the baseline on the same long windows
    report = (out / "report.md").read_text()
    assert "16,384 bp read from" in report and f"{long['dropped_train_overlap']} of" in report
