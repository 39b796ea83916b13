"""The committed demo files load, match their sources' counts, and stay small."""
import numpy as np
import pytest

from mambatune.domains.timeseries.demo_data import (
    DATA_DIR, PRETRAIN_CORPUS, competition_groups, load_competition, load_hourly,
)

COUNTS = {"m3": {"yearly": 645, "quarterly": 756, "monthly": 1428, "other": 174},
          "m1": {"yearly": 181, "quarterly": 203, "monthly": 617}}
HORIZONS = {"yearly": 6, "quarterly": 8, "monthly": 18, "other": 8}


def test_committed_files_are_small_and_documented():
    files = sorted(p.name for p in DATA_DIR.glob("*.parquet"))
    assert files == ["bike_sharing_hourly.parquet", "electricity_hourly.parquet", "m1.parquet", "m3.parquet",
                     "sf_traffic_hourly.parquet", "solar_hourly.parquet", "traffic_volume_hourly.parquet",
                     "wind_hourly.parquet"]
    assert sum(p.stat().st_size for p in DATA_DIR.iterdir()) < 2_500_000
    readme = (DATA_DIR / "README.md").read_text()
    for needle in ("BSD-2-Clause", "LGPL-3.0-or-later", "3,003", "1,001", "26,304", "17,544", "25,672", "78,421",
                   "8,220", "hourly_parking.csv"):
        assert needle in readme


@pytest.mark.parametrize("name,length", [("electricity", 26_304), ("sf_traffic", 17_544), ("traffic_volume", 25_672),
                                         ("bike_sharing", 78_421), ("solar", 8_220), ("wind", 8_220)])
def test_hourly_series(name, length):
    series = load_hourly(name)
    assert series.freq == "h" and len(series) == 1
    target = series[0]["target"]
    assert len(target) == length and np.isfinite(target).all()


def test_pretraining_corpus_is_one_item_per_series_without_the_target():
    corpus = load_hourly(PRETRAIN_CORPUS)
    assert [e["item_id"] for e in corpus] == list(PRETRAIN_CORPUS) and "electricity" not in PRETRAIN_CORPUS
    assert corpus.freq == "h" and corpus.lengths().sum() == 138_077
    with pytest.raises(ValueError, match="distinct"):
        load_hourly(["solar", "solar"])


@pytest.mark.parametrize("name", ["m3", "m1"])
def test_competition_counts_and_official_horizons(name):
    assert competition_groups(name) == list(COUNTS[name])
    for group, count in COUNTS[name].items():
        split = load_competition(name, group)
        assert len(split.train) == len(split.test) == count
        assert split.horizon == HORIZONS[group]
        for train, test in zip(split.train, split.test):
            assert len(test["target"]) == len(train["target"]) + split.horizon
            np.testing.assert_array_equal(test["target"][: len(train["target"])], train["target"])


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="unknown hourly series"):
        load_hourly("weather")
    with pytest.raises(ValueError, match="unknown group"):
        load_competition("m3", "weekly")
    with pytest.raises(ValueError, match="m1 has no 'other' series"):
        load_competition("m1", "other")
