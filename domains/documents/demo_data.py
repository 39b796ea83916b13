"""Build the committed license-category dataset from the licensedcode-data wheel.

Run::

    python -m mambatune.domains.documents.demo_data --out domains/documents/data

It downloads the wheel into a cache outside the repository
(``~/.cache/mambatune-data``, or ``--cache``), skipped when it is there::

    python -m pip download --no-deps licensedcode-data==32.1.0 -d ~/.cache/mambatune-data

and reads its ``licensedcode/data/licenses/*.LICENSE`` files from the zip
(nothing is installed or imported). It writes:

* ``licenses.parquet`` (zstd): text, category, key, n_words, is_deprecated, split;
* ``manifest.json``: every count and parameter of the build;
* ``README.md``: source, licence, counts per category and split, and the
  TF-IDF baselines' test scores (``--skip-baselines`` leaves them out).

Choices, all counted in the manifest:

* files with an empty text (generic placeholders such as ``unknown``) are dropped;
* deprecated entries are **kept** and flagged (``is_deprecated``): they are real
  license texts with a category. Many repeat a current entry's text word for
  word, so the split puts identical texts (after lower-casing and collapsing
  white space) in the same split: no test text is ever seen in training;
* categories with fewer than ``--min-category-size`` (10) documents are
  dropped (only ``Unstated License`` after the empty texts go: 2 documents,
  too few to train on and test);
* the split is stratified by category (70/15/15 by default, seeded), with at
  least one document per category in val and test when a category has three
  or more.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl

from .licenses import PARQUET_NAME, WHEEL_NAME, read_license_wheel

DEFAULT_CACHE = Path.home() / ".cache" / "mambatune-data"
SPLIT_FRACTIONS = {"val": 0.15, "test": 0.15}


def fetch_wheel(cache: Path) -> Path:
    """The licensedcode-data wheel in ``cache``, downloaded with pip if missing."""
    wheel = cache / WHEEL_NAME
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "licensedcode-data==32.1.0",
                        "-d", str(cache)], check=True)
    return wheel


def grouped_stratified_split(categories: list[str], groups: list[str], seed: int,
                             fractions: dict[str, float] = SPLIT_FRACTIONS) -> list[str]:
    """A split name per document: stratified by category, members of a group kept together.

    A group takes the category of its first member. Within each category the
    groups are shuffled, then test and val are filled to their share of
    documents (at least one each when the category has >= 3), the rest is train.
    """
    rng = np.random.default_rng(seed)
    group_members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        group_members[g].append(i)
    by_category: dict[str, list[str]] = defaultdict(list)
    for g, members in group_members.items():
        by_category[categories[members[0]]].append(g)
    split = ["train"] * len(categories)
    for category in sorted(by_category):
        cat_groups = sorted(by_category[category])
        cat_groups = [cat_groups[i] for i in rng.permutation(len(cat_groups))]
        n = sum(len(group_members[g]) for g in cat_groups)
        targets = {name: max(int(round(frac * n)), 1 if n >= 3 else 0) for name, frac in fractions.items()}
        filled = {name: 0 for name in fractions}
        for g in cat_groups:
            name = next((s for s in fractions if filled[s] < targets[s]), "train")
            for i in group_members[g]:
                split[i] = name
            if name != "train":
                filled[name] += len(group_members[g])
    return split


def build(wheel: Path, seed: int = 0, min_category_size: int = 10) -> tuple[pl.DataFrame, dict]:
    """The dataset frame and the manifest of counts."""
    raw, counts = read_license_wheel(wheel)
    empty = raw["text"].str.strip_chars() == ""
    no_category = raw["category"].is_null()
    frame = raw.filter(~empty & ~no_category)
    sizes = frame.group_by("category").len()
    small = sizes.filter(pl.col("len") < min_category_size)
    frame = frame.filter(~pl.col("category").is_in(small["category"].implode()))
    normalized = frame["text"].map_elements(lambda t: " ".join(t.lower().split()), return_dtype=pl.String)
    frame = frame.with_columns(normalized.alias("_group"))
    dup_groups = frame.group_by("_group").len().filter(pl.col("len") > 1)
    split = grouped_stratified_split(frame["category"].to_list(), frame["_group"].to_list(), seed)
    frame = frame.with_columns(pl.Series("split", split)).drop("_group")
    frame = frame.select("text", "category", "key", "n_words", "is_deprecated", "split").sort("key")
    manifest = {
        "source": "PyPI licensedcode-data 32.1.0 (" + WHEEL_NAME + ")",
        "seed": seed, "fractions": SPLIT_FRACTIONS,
        "files_in_wheel": counts["files"],
        "dropped_empty_text": int(empty.sum()),
        "dropped_empty_text_keys": sorted(raw.filter(empty)["key"].to_list()),
        "dropped_no_category": int((no_category & ~empty).sum()),
        "min_category_size": min_category_size,
        "dropped_small_categories": dict(small.sort("category").iter_rows()),
        "non_utf8_files": counts["non_utf8_files"],
        "documents": frame.height,
        "deprecated_kept": int(frame["is_deprecated"].sum()),
        "duplicate_text_groups": dup_groups.height,
        "documents_in_duplicate_groups": int(dup_groups["len"].sum()),
        "per_category_split": _counts(frame),
        "n_words": {"median": float(frame["n_words"].median()), "max": int(frame["n_words"].max()),
                    ">=1000": int((frame["n_words"] >= 1000).sum()),
                    ">=2000": int((frame["n_words"] >= 2000).sum())},
    }
    return frame, manifest


def _counts(frame: pl.DataFrame) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for row in frame.group_by("category", "split").len().iter_rows(named=True):
        out.setdefault(row["category"], {"train": 0, "val": 0, "test": 0})[row["split"]] = row["len"]
    return dict(sorted(out.items(), key=lambda kv: -sum(kv[1].values())))


def run_license_baselines(frame: pl.DataFrame) -> dict[str, dict]:
    """TF-IDF + SVM / logistic regression on the frame's split; C tuned on val."""
    from .baselines import run_baselines

    labels = sorted(frame["category"].unique().to_list())
    index = {c: i for i, c in enumerate(labels)}
    parts = {s: frame.filter(pl.col("split") == s) for s in ("train", "val", "test")}
    ys = {s: [index[c] for c in p["category"]] for s, p in parts.items()}
    return run_baselines(parts["train"]["text"].to_list(), ys["train"], parts["test"]["text"].to_list(),
                         ys["test"], labels, val_texts=parts["val"]["text"].to_list(), val_y=ys["val"],
                         test_lengths=parts["test"]["n_words"].to_numpy())


def _small(manifest: dict) -> str:
    small = manifest["dropped_small_categories"]
    return ", ".join(f"{c} ({n} documents)" for c, n in small.items()) or "none"


def readme(manifest: dict, baselines: dict | None) -> str:
    rows = "\n".join(f"| {c} | {v['train']} | {v['val']} | {v['test']} | {sum(v.values())} |"
                     for c, v in manifest["per_category_split"].items())
    totals = {s: sum(v[s] for v in manifest["per_category_split"].values()) for s in ("train", "val", "test")}
    text = f"""# License-category dataset

`licenses.parquet`: {manifest['documents']:,} legal license texts labelled with one of
{len(manifest['per_category_split'])} license categories, for long-document classification.
Columns: `text`, `category` (the label), `key` (ScanCode license key), `n_words`,
`is_deprecated`, `split` (`train` / `val` / `test`). Load it with
`mambatune.domains.documents.load_license_dataset(split)`.

## Source and licence

The texts and categories come from ScanCode toolkit's *licensedcode* license
database by nexB Inc. and others, distributed as the PyPI wheel
`licensedcode-data` 32.1.0 (`licensedcode/data/licenses/*.LICENSE`, YAML front
matter + text). That data is licensed under **CC-BY-4.0**
(https://creativecommons.org/licenses/by/4.0/); attribution: "ScanCode
licensedcode data, Copyright (c) nexB Inc. and others,
https://github.com/aboutcode-org/scancode-toolkit". Changes made here: front
matter reduced to `key`, `category`, `is_deprecated`; word counts and a split
added; empty texts dropped. The license texts themselves keep their own terms.

Rebuild (deterministic for a seed; downloads the wheel into `~/.cache/mambatune-data`):

```bash
python -m mambatune.domains.documents.demo_data --out domains/documents/data
```

## Counts

{manifest['files_in_wheel']:,} files in the wheel; {manifest['dropped_empty_text']} with an empty text
(generic placeholders such as `unknown`, `proprietary`) dropped;
{manifest['dropped_no_category']} without a category dropped; {manifest['non_utf8_files']} with non-UTF-8 bytes.
Categories with fewer than {manifest['min_category_size']} documents left are dropped, too few to
train on and test: {_small(manifest)}.
**Deprecated entries are kept** and flagged (`is_deprecated`, {manifest['deprecated_kept']} documents);
pass `include_deprecated=False` to leave them out. Identical texts (after
lower-casing and collapsing white space: {manifest['duplicate_text_groups']} groups,
{manifest['documents_in_duplicate_groups']} documents, mostly a deprecated key and its
replacement) always share a split. Split: stratified by category,
{int(100 * (1 - sum(manifest['fractions'].values())))}/{int(100 * manifest['fractions']['val'])}/{int(100 * manifest['fractions']['test'])}, seed {manifest['seed']}.

Words per document: median {manifest['n_words']['median']:.0f}, max {manifest['n_words']['max']:,};
{manifest['n_words']['>=1000']} documents of ≥ 1,000 words, {manifest['n_words']['>=2000']} of ≥ 2,000.

| category | train | val | test | total |
|---|---|---|---|---|
{rows}
| **total** | {totals['train']} | {totals['val']} | {totals['test']} | {sum(totals.values())} |
"""
    if baselines:
        n_long = next(iter(baselines.values()))["by_length"][">=2000"]["n"]
        lines = "\n".join(
            f"| {m} | {r['C']} | {r['accuracy']:.3f} | {r['micro_f1']:.3f} | {r['macro_f1']:.3f} | "
            f"{r['by_length']['>=2000']['macro_f1']:.3f} | {r['by_length']['>=2000']['accuracy']:.3f} |"
            for m, r in baselines.items())
        text += f"""
## Baselines (test split)

TF-IDF (word 1-2 grams, sublinear tf, min_df 2, ≤ 200k features) fitted on
train; C chosen on val by macro-F1 from {{0.01, 0.1, 1, 10, 100}}; class-balanced weights
(`mambatune.domains.documents.baselines.run_baselines`). Macro-F1 over all
{len(manifest['per_category_split'])} categories; in the ≥ 2,000-word bucket ({n_long} test documents)
over the categories present there.

| method | C | accuracy | micro-F1 | macro-F1 | macro-F1, ≥ 2,000 words | accuracy, ≥ 2,000 words |
|---|---|---|---|---|---|---|
{lines}
"""
    return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (domains/documents/data)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the wheel is downloaded")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-category-size", type=int, default=10,
                        help="drop categories with fewer documents (counted in the manifest)")
    parser.add_argument("--skip-baselines", action="store_true", help="leave the baseline table out")
    args = parser.parse_args(argv)
    frame, manifest = build(fetch_wheel(args.cache), seed=args.seed, min_category_size=args.min_category_size)
    args.out.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(args.out / PARQUET_NAME, compression="zstd", compression_level=22)
    baselines = None if args.skip_baselines else run_license_baselines(frame)
    if baselines:
        manifest["baselines"] = {m: {k: r[k] for k in ("C", "accuracy", "micro_f1", "macro_f1", "by_length", "seconds")}
                                 for m, r in baselines.items()}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (args.out / "README.md").write_text(readme(manifest, baselines))
    print(f"wrote {frame.height} documents to {args.out / PARQUET_NAME} "
          f"({(args.out / PARQUET_NAME).stat().st_size / 1e6:.2f} MB)")
    if baselines:
        for m, r in baselines.items():
            print(f"{m}: macro-F1 {r['macro_f1']:.3f}, >=2000 words {r['by_length']['>=2000']['macro_f1']:.3f}")


if __name__ == "__main__":
    main()
