"""The data keys every domain's recipe takes, and how a user's table is split.

A domain's ``DataConfig`` subclasses :class:`DataSource`, so ``data.path``, ``data.test_path``,
``data.split_column``, ``data.val_fraction`` / ``data.test_fraction``, ``data.stratify``,
``data.group_column``, ``data.cv_folds`` and ``data.encoding`` mean the same in every domain.
:func:`split_rows` turns one table into train / val / test, in this order of precedence:

1. ``fold`` (set by the K-fold driver, ``pipelines/cross_validation.py``): test is fold k of a
   stratified (or grouped) K-fold; val is carved from the other folds;
2. ``split_column``: its values (train / val / test and common aliases); when no row is val,
   val is carved from train;
3. a test table (from ``test_path``): the whole main table is train and val, val carved from it;
4. a seeded ratio: ``test_fraction`` and ``val_fraction`` of the rows, stratified on the label
   when every class has at least two rows, and grouped by ``group_column`` when set.

Every carve, fallback and count goes into ``Splits.notes`` for the report, and ``Splits.write``
records which row went where (``splits.csv``), so a run can be reproduced and audited.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from mambatune.core.atomic import atomic_write_text
from mambatune.domains.tables import FILE, ROW, TableError, require_columns, where_row

SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test", "testing": "test", "eval": "test"}
SPLITS = ("train", "val", "test")


@dataclass
class DataSource:
    """path: the user's data (a file, folder or glob of CSV / TSV / parquet / JSON lines, .gz too; null: the
    domain's built-in data); test_path: a separate test file; split_column: train / val / test per row;
    val_fraction / test_fraction: shares split off by a seeded ratio; stratify: keep class shares in each
    split; group_column: rows sharing its value stay in one split; cv_folds: K-fold cross-validation in one
    command (per-fold and mean +- sd metrics); fold: the fold a K-fold run is on (set by the driver);
    encoding: the files' text encoding; seed: the split's seed."""

    path: str | None = None
    test_path: str | None = None
    split_column: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    stratify: bool = True
    group_column: str | None = None
    cv_folds: int | None = None
    fold: int | None = None
    encoding: str = "utf-8"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0 < self.test_fraction < 1 or self.val_fraction + self.test_fraction >= 1:
            raise ValueError(f"test_fraction must be in (0, 1) and val_fraction + test_fraction below 1, got "
                             f"{self.test_fraction} and {self.val_fraction}")
        if self.cv_folds is not None:
            if self.cv_folds < 2:
                raise ValueError(f"cv_folds must be >= 2 (e.g. 5 or 10) or null, got {self.cv_folds}")
            if self.split_column or self.test_path:
                raise ValueError("cv_folds makes its own test folds: leave split_column and test_path unset")
        if self.fold is not None and (self.cv_folds is None or not 0 <= self.fold < self.cv_folds):
            raise ValueError(f"fold is set by `mambatune run ... data.cv_folds=K` (0 <= fold < K); got fold="
                             f"{self.fold} with cv_folds={self.cv_folds}")


@dataclass
class Splits:
    """``frames``: train / val / test tables (with the FILE and ROW columns of ``domains.tables``);
    ``how``: one line for the report; ``notes``: what was carved or changed."""

    frames: dict[str, pl.DataFrame]
    how: str
    notes: list[str] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        return {k: v.height for k, v in self.frames.items()}

    def record(self) -> pl.DataFrame:
        parts = []
        for name in SPLITS:
            df = self.frames[name]
            file = df[FILE] if FILE in df.columns else pl.Series(FILE, ["input"] * df.height)
            row = df[ROW] if ROW in df.columns else pl.Series(ROW, range(1, df.height + 1))
            parts.append(pl.DataFrame({"file": file, "row": row, "split": [name] * df.height}))
        return pl.concat(parts)

    def write(self, run_dir: str | Path) -> Path:
        """``run_dir/splits.csv``: which file row went to which split."""
        path = Path(run_dir) / "splits.csv"
        atomic_write_text(path, self.record().write_csv())
        return path


def stratify_labels(labels: list[str] | None, n_splits: int = 2) -> np.ndarray | None:
    """The labels to stratify on, or None when some class has fewer than ``n_splits`` rows."""
    if labels is None:
        return None
    values, counts = np.unique(np.asarray(labels, dtype=object).astype(str), return_counts=True)
    return np.asarray(labels, dtype=object).astype(str) if len(values) > 1 and counts.min() >= n_splits else None


def hashable_labels(df: pl.DataFrame, label_column: str | None) -> list[str] | None:
    """Labels as strings for stratification (a multi-label list becomes its sorted, joined set)."""
    if not label_column or label_column not in df.columns:
        return None
    out = []
    for v in df[label_column].to_list():
        if isinstance(v, (list, tuple, pl.Series)):
            v = "|".join(sorted(map(str, v)))
        out.append("" if v is None else str(v).strip())
    return out


def holdout(idx: np.ndarray, fraction: float, labels, groups, seed: int, stratify: bool,
            what: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(kept, held out, how): ``fraction`` of ``idx`` held out, grouped or stratified when asked and possible."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    if fraction <= 0 or len(idx) < 2:
        return idx, idx[:0], ""
    if groups is not None:
        g = np.asarray(groups, dtype=object)[idx].astype(str)
        if len(set(g)) < 2:
            raise TableError(f"data.group_column: every row has the same group ({g[0]!r}); {what} needs at least "
                             "two groups")
        keep, held = next(GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed).split(idx, groups=g))
        return idx[keep], idx[held], "grouped"
    strat = stratify_labels([labels[i] for i in idx], 2) if stratify and labels is not None else None
    n_held = max(1, int(round(fraction * len(idx))))
    if strat is not None and n_held < len(set(strat)):
        strat = None  # too few rows to hold one of each class
    keep, held = train_test_split(idx, test_size=n_held, random_state=seed, stratify=strat)
    note = "stratified" if strat is not None else ("not stratified: a class has fewer than 2 rows"
                                                   if stratify and labels is not None else "")
    return np.sort(keep), np.sort(held), note


def kfold_indices(n: int, k: int, labels, groups, seed: int, stratify: bool) -> list[np.ndarray]:
    """The test rows of each of ``k`` folds: stratified by label (grouped by ``groups`` when given)."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    idx = np.arange(n)
    strat = stratify_labels(labels, k) if stratify else None
    if groups is not None:
        g = np.asarray(groups, dtype=object).astype(str)
        if len(set(g)) < k:
            raise TableError(f"data.cv_folds={k} needs at least {k} groups in data.group_column; there are "
                             f"{len(set(g))}")
        splitter = (StratifiedGroupKFold(k, shuffle=True, random_state=seed) if strat is not None
                    else GroupKFold(k))
        return [test for _, test in splitter.split(idx, strat, groups=g)]
    if n < k:
        raise TableError(f"data.cv_folds={k} needs at least {k} rows; the data has {n}")
    splitter = StratifiedKFold(k, shuffle=True, random_state=seed) if strat is not None else \
        KFold(k, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(idx, strat)]


def split_column_assignments(df: pl.DataFrame, column: str, where: str) -> np.ndarray:
    out = []
    bad = []
    for i, v in enumerate(df[column].to_list()):
        name = SPLIT_NAMES.get(str(v).strip().lower()) if v is not None else None
        if name is None:
            bad.append(i)
        out.append(name)
    if bad:
        shown = "; ".join(f"{where_row(df, i)}: {df[column][i]!r}" for i in bad[:3])
        raise TableError(f"{where}: {len(bad)} row(s) of data.split_column {column!r} are not a split name ({shown}); "
                         f"use train, val or test (also accepted: {', '.join(sorted(SPLIT_NAMES))})")
    return np.asarray(out, dtype=object)


def split_rows(df: pl.DataFrame, source: DataSource, *, label_column: str | None, test_df: pl.DataFrame | None = None,
               where: str = "data") -> Splits:
    """Train / val / test tables from ``df`` (and ``test_df``), as the module docstring says."""
    require_columns(df, {"data.split_column": source.split_column, "data.group_column": source.group_column}, where)
    n = df.height
    if n == 0:
        raise TableError(f"{where}: no rows to split")
    labels = hashable_labels(df, label_column)
    groups = df[source.group_column].to_list() if source.group_column else None
    idx = np.arange(n)
    notes: list[str] = []
    test_part = None

    def carve_val(train_idx: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
        if source.val_fraction <= 0:
            notes.append("no validation split (val_fraction = 0): the last training step's model is kept")
            return train_idx, train_idx[:0]
        keep, val, kind = holdout(train_idx, source.val_fraction, labels, groups, source.seed + 1, source.stratify,
                                  "the validation split")
        notes.append(f"validation split carved from {how}: {len(val)} of {len(train_idx)} rows "
                     f"({source.val_fraction:g}{', ' + kind if kind else ''}, seed {source.seed + 1})")
        return keep, val

    if source.fold is not None:
        folds = kfold_indices(n, source.cv_folds, labels, groups, source.seed, source.stratify)
        test = np.sort(folds[source.fold])
        rest = np.setdiff1d(idx, test)
        train, val = carve_val(rest, "the other folds")
        how = (f"fold {source.fold + 1} of {source.cv_folds} ({'grouped ' if groups is not None else ''}"
               f"{'stratified ' if source.stratify and stratify_labels(labels, source.cv_folds) is not None else ''}"
               f"K-fold, seed {source.seed})")
    elif source.split_column:
        names = split_column_assignments(df, source.split_column, where)
        train, val, test = (idx[names == s] for s in SPLITS)
        how = f"by column {source.split_column!r}"
        if len(val) == 0:
            train, val = carve_val(train, "the rows marked train")
        if len(test) == 0 and test_df is None:
            raise TableError(f"{where}: no row of data.split_column {source.split_column!r} is test; mark some rows "
                             "test or set data.test_path")
        if test_df is not None:
            if len(test):
                raise TableError(f"{where}: rows of data.split_column are marked test and data.test_path is set too; "
                                 "use one of them")
            test_part = test_df
    elif test_df is not None:
        train, val = carve_val(idx, "the training file")
        test = idx[:0]
        test_part = test_df
        how = "test file data.test_path; train and val from data.path"
    else:
        rest, test, kind = holdout(idx, source.test_fraction, labels, groups, source.seed, source.stratify,
                                   "the test split")
        train, val = carve_val(rest, "the rest")
        how = (f"seeded ratio: test {source.test_fraction:g}{', ' + kind if kind else ''} (seed {source.seed})")
    frames = {"train": df[train.tolist()], "val": df[val.tolist()],
              "test": test_part if test_part is not None else df[test.tolist()]}
    if frames["train"].height == 0:
        raise TableError(f"{where}: the training split is empty ({how}); give more rows or smaller fractions")
    if frames["test"].height == 0:
        raise TableError(f"{where}: the test split is empty ({how}); give more rows or a larger data.test_fraction")
    return Splits(frames, how, notes)
