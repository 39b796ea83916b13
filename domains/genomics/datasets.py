"""The committed demo datasets (built by :mod:`.demo_data`), loaded with no genome needed.

* :func:`load_promoters`: chr20 windows of 2,000 bp around TSSs and GC-matched
  non-promoter windows, strand-aware, with a region-based ``split``;
* :func:`load_variants`: chr20 variants with ``ref_seq`` windows (``2 * flank + 1`` bp,
  variant at index ``flank``) and ``label`` (1 = deleterious);
* :func:`demo_genome`: the first 400 kb of chr20 (contig ``20``, GRCh37 coordinates).

Counts and build parameters are in ``data/manifest.json``; sources and licenses
in ``data/README.md``.
"""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from .fasta import Genome

DATA_DIR = Path(__file__).resolve().parent / "data"
PROMOTER_FILE = "promoter_chr20.parquet"
VARIANT_FILE = "vep_chr20.parquet"
SLICE_FILE = "chr20_0-400k.fa.gz"
PROMOTER_CLASSES = ("non_promoter", "protein_coding", "lncRNA")


def data_path(name: str) -> Path:
    """Path of a committed data file; a clear error says how to rebuild a missing one."""
    path = DATA_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; rebuild the demo data with "
            "`python -m mambatune.domains.genomics.demo_data --out domains/genomics/data`"
        )
    return path


def manifest() -> dict:
    """Every count and parameter of the demo-data build."""
    return json.loads(data_path("manifest.json").read_text())


def demo_genome() -> Genome:
    """The bundled chr20 slice (0-400,000, contig '20'; 'chr20' resolves to it)."""
    return Genome(data_path(SLICE_FILE), rebuild_index=False)


def _splits(df: pl.DataFrame, split: str | list[str] | None) -> pl.DataFrame:
    if split is None:
        return df
    wanted = [split] if isinstance(split, str) else list(split)
    known = sorted(df["split"].unique().to_list())
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; this dataset has {known}")
    return df.filter(pl.col("split").is_in(wanted))


def load_promoters(task: str = "binary", split: str | list[str] | None = None) -> pl.DataFrame:
    """Promoter windows with ``sequence`` and ``label``.

    ``task="binary"``: protein-coding TSS windows (label 1) vs non-promoter
    windows (label 0). ``task="multiclass"``: every row, ``label`` = ``class_id``
    (0 non-promoter, 1 protein-coding TSS, 2 lncRNA TSS; see PROMOTER_CLASSES).
    """
    df = pl.read_parquet(data_path(PROMOTER_FILE))
    if task == "binary":
        df = df.filter(pl.col("class_id") <= 1)
    elif task == "multiclass":
        df = df.with_columns(pl.col("class_id").alias("label"))
    else:
        raise ValueError(f"task must be 'binary' or 'multiclass', got {task!r}")
    return _splits(df, split)


def load_variants(split: str | list[str] | None = None, sources: list[str] | None = None) -> pl.DataFrame:
    """Variants with ``ref_seq`` windows; ``split`` is train / val / test (combivep, region
    split) or ``extra`` (common SNPs, label 0); ``sources`` filters on ``source``."""
    df = pl.read_parquet(data_path(VARIANT_FILE))
    if sources is not None:
        known = sorted(df["source"].unique().to_list())
        unknown = [s for s in sources if s not in known]
        if unknown:
            raise ValueError(f"unknown source(s) {unknown}; this dataset has {known}")
        df = df.filter(pl.col("source").is_in(sources))
    return _splits(df, split)
