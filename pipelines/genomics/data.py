"""The demo tasks' data: promoter windows (the demo's, or ``data.window`` bp read from ``data.genome``),
the combivep variants' ref / alt windows, and DNA LM pretraining windows, per split."""
from __future__ import annotations

from typing import Sequence

import polars as pl

from mambatune.domains.genomics import load_promoters, load_variants
from mambatune.domains.genomics.sequence_data import GenomeWindows, center_crop
from mambatune.domains.genomics.vep import variant_pairs

from .config import DataConfig
from .windows import genome_windows, long_promoter_table

def subsample(df, n: int | None, seed: int):
    return df if n is None or len(df) <= n else df.sample(n, seed=seed, shuffle=True)


def promoter_splits(cfg: DataConfig) -> dict[str, tuple[Sequence[str], list[int]]]:
    """{split: (windows, labels)}: see :func:`promoter_windows`."""
    return promoter_windows(cfg)[0]


def promoter_windows(cfg: DataConfig) -> tuple[dict[str, tuple[Sequence[str], list[int]]], dict | None]:
    """The promoter windows of each split and, with ``genome``, how the long windows were made.

    Without ``genome``: the demo's 2,000 bp windows cropped to their central ``window`` bp.
    With ``genome``: ``window`` bp (any length) read lazily from the FASTA (:class:`GenomeWindows`),
    centred where each demo window is centred, strand-aware, N beyond contig ends. The demo split
    keeps its regions apart at 2,000 bp only, so a training window that at this length overlaps a
    validation or test window is dropped, before subsampling; the second value counts them
    (``dropped_train_overlap``), with validation windows that overlap test windows (kept) and
    windows that reach past a contig end."""
    table = load_promoters(cfg.promoter_classes)
    info = None
    demo_length = int((table["end"] - table["start"]).max())
    if not cfg.genome and cfg.window and cfg.window > demo_length:
        raise ValueError(f"data.window={cfg.window} is longer than the demo's {demo_length:,} bp windows: set "
                         "data.genome=<a GRCh37 chr20 FASTA> to read windows of that length around their centres")
    if cfg.genome:
        table, info = long_promoter_table(table, cfg)
    out = {}
    for split in ("train", "val", "test"):
        df = subsample(table.filter(pl.col("split") == split), cfg.max_train if split == "train" else cfg.max_eval,
                       cfg.seed)
        if cfg.genome:
            windows = GenomeWindows(cfg.genome, df["chrom"].to_list(), df["_centre"].to_list(), cfg.window,
                                    df["strand"].to_list() if "strand" in df.columns else None)
        else:
            windows = [center_crop(s, cfg.window) for s in df["sequence"].to_list()]
        out[split] = (windows, df["label"].to_list())
    return out, info


def variant_splits(cfg: DataConfig) -> dict[str, dict]:
    """{split: {"ref", "alt" (windows), "labels", "n_skipped" (not SNVs)}} of the combivep variants."""
    out = {}
    for split in ("train", "val", "test"):
        df = load_variants(split)
        snv = df.filter((df["ref"].str.len_chars() == 1) & (df["alt"].str.len_chars() == 1))
        snv = subsample(snv, cfg.max_train if split == "train" else cfg.max_eval, cfg.seed)
        ref, alt = variant_pairs(snv["ref_seq"].to_list(), snv["ref"].to_list(), snv["alt"].to_list(), cfg.window)
        out[split] = {"ref": ref, "alt": alt, "labels": snv["label"].to_list(), "n_skipped": len(df) - len(snv)}
    return out


def lm_corpus(cfg: DataConfig, split: str) -> list[str]:
    """Pretraining windows of ``window`` bp (default 1,000): a FASTA's windows (training split only:
    ``genome`` set) or the demo windows of ``split`` (promoters of every class and variant windows)
    cut into non-overlapping pieces. Only windows of one split, so evaluation windows stay unseen."""
    length = cfg.window or 1000
    if cfg.genome and split == "train":
        return genome_windows(cfg, length)
    seqs = load_promoters("multiclass", split)["sequence"].to_list() + load_variants(split)["ref_seq"].to_list()
    pieces = [s[i:i + length] for s in seqs for i in range(0, len(s) - length + 1, length)]
    pieces = [p for p in pieces if p.upper().count("N") <= 0.1 * length]
    if split != "train" and cfg.max_eval:
        pieces = pieces[: cfg.max_eval]
    if split == "train" and cfg.max_train:
        pieces = pieces[: cfg.max_train]
    return pieces
