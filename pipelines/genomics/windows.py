"""Genomics windows read from a reference FASTA (``data.genome``): the promoter windows at any
length around the demo windows' centres, and random pretraining windows clear of the held-out ones."""
from __future__ import annotations

import numpy as np
import polars as pl

from mambatune.domains.genomics import load_promoters, load_variants
from mambatune.domains.genomics.sequence_data import centred_intervals, overlapping


def long_promoter_table(table, cfg):
    """The demo table with ``_centre`` and the window coordinates at ``cfg.window`` bp, minus the
    training windows that overlap a validation or test window at that length; and the counts."""
    from mambatune.domains.genomics import Genome

    if not cfg.window:
        raise ValueError("data.genome reads windows of data.window bp: set data.window (e.g. 32768)")
    centre = table["center"] if "center" in table.columns else (table["start"] + table["end"]) // 2
    starts, ends = centred_intervals(centre.to_numpy(), cfg.window)
    table = table.with_columns(centre.alias("_centre"), pl.Series("_start", starts), pl.Series("_end", ends))
    with Genome(cfg.genome) as genome:
        check_genome_matches(genome, table, cfg.genome)
        lengths = np.asarray([genome.length(c) for c in table["chrom"].to_list()])
    part = {s: table.filter(pl.col("split") == s) for s in ("train", "val", "test")}

    def overlap(a, b) -> np.ndarray:
        return overlapping(a["chrom"].to_list(), a["_start"], a["_end"], b["chrom"].to_list(), b["_start"], b["_end"])

    held_out = pl.concat([part["val"], part["test"]])
    drop = overlap(part["train"], held_out) if held_out.height else np.zeros(part["train"].height, dtype=bool)
    info = {"genome": str(cfg.genome), "window": cfg.window, "train_windows_before": part["train"].height,
            "dropped_train_overlap": int(drop.sum()),
            "val_overlapping_test": int(overlap(part["val"], part["test"]).sum()) if part["test"].height else 0,
            "padded_windows": int(((starts < 0) | (ends > lengths)).sum())}
    if drop.any():
        print(f"data.window={cfg.window}: dropped {int(drop.sum())} of {part['train'].height} training windows "
              "that overlap a validation or test window at this length", flush=True)
    kept = pl.concat([part["train"].filter(pl.Series(~drop)), part["val"], part["test"]])
    if not kept.filter(pl.col("split") == "train").height:
        raise ValueError(f"no training window is left at data.window={cfg.window}: every one overlaps a held-out window")
    return kept, info


def check_genome_matches(genome, table, path: str, n: int = 8) -> None:
    """Raise when the FASTA's bases differ from the demo windows' (another assembly than GRCh37?)."""
    if "sequence" not in table.columns:
        return
    strands = table["strand"].to_list() if "strand" in table.columns else ["+"] * table.height
    for row in range(0, table.height, max(1, table.height // n)):
        demo = table["sequence"][row].upper()
        got = genome.window(table["chrom"][row], int(table["_centre"][row]), len(demo), strands[row] or "+").sequence
        if got != demo:
            raise ValueError(f"{path} does not hold the demo windows' bases (window {table['chrom'][row]}:"
                             f"{table['start'][row]}-{table['end'][row]} differs): the demo sets are GRCh37 chr20; "
                             "use that assembly (e.g. 20.fa.gz of the vt-examples package)")


def genome_windows(cfg, length: int) -> list[str]:
    """``lm_windows`` random windows (<= 10 % N) of the FASTA ``genome``, none overlapping a
    validation or test window of the demo datasets (same contig names)."""
    from mambatune.domains.genomics import Genome
    held_out = {}
    for df in (load_promoters("multiclass", ["val", "test"]), load_variants(["val", "test"])):
        starts = df["start"] if "start" in df.columns else df["window_start"]
        ends = df["end"] if "end" in df.columns else df["window_start"] + df["ref_seq"].str.len_chars()
        for c, s, e in zip(df["chrom"].to_list(), starts.to_list(), ends.to_list()):
            held_out.setdefault(str(c).removeprefix("chr"), []).append((s, e))
    rng = np.random.default_rng(cfg.seed)
    out = []
    with Genome(cfg.genome) as genome:
        contigs = {c: n for c, n in genome.contigs.items() if n > length}
        if not contigs:
            raise ValueError(f"{cfg.genome} has no contig longer than {length} bp")
        names, sizes = list(contigs), np.array(list(contigs.values()), dtype=np.float64)
        for _ in range(cfg.lm_windows * 20):
            if len(out) == cfg.lm_windows:
                break
            c = names[rng.choice(len(names), p=sizes / sizes.sum())]
            start = int(rng.integers(0, contigs[c] - length))
            if any(s < start + length and start < e for s, e in held_out.get(c.removeprefix("chr"), [])):
                continue
            seq = genome.fetch(c, start, start + length)
            if seq.upper().count("N") <= 0.1 * length:
                out.append(seq)
    if not out:
        raise ValueError(f"no usable window (<= 10 % N) found in {cfg.genome}")
    return out
