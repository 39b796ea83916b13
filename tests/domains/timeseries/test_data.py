"""Readers: GluonTS datasets and polars frames → SeriesCollection; each bad input has a test."""
import datetime as dt
import json

import numpy as np
import pandas as pd
import polars as pl
import pytest

from mambatune.domains.timeseries.data import (
    TimeSeriesDataError, check_same_frequency, from_gluonts, from_polars, read_file, same_frequency, to_gluonts,
    truncate,
)


def hourly_frame(n=48, items=("a", "b")):
    stamps = [dt.datetime(2024, 1, 1) + dt.timedelta(hours=h) for h in range(n)]
    return pl.DataFrame({
        "item_id": [i for i in items for _ in stamps],
        "timestamp": stamps * len(items),
        "target": np.arange(n * len(items), dtype=float),
        "temp": np.linspace(0, 1, n * len(items)),
        "region": [r for r in ("north", "south")[: len(items)] for _ in stamps],
    })


def test_list_dataset_round_trip():
    from gluonts.dataset.common import ListDataset

    ds = ListDataset([{"start": "2024-01-01", "target": [1.0, 2.0, np.nan, 4.0], "item_id": "x"}], freq="D")
    coll = from_gluonts(ds)
    entry = coll[0]
    assert coll.freq == "D" and entry["item_id"] == "x"
    assert entry["target"].dtype == np.float32 and np.isnan(entry["target"][2])
    np.testing.assert_array_equal(entry["observed_values"], [1, 1, 0, 1])
    assert len(list(to_gluonts(coll))) == 1


def test_pandas_dataset():
    from gluonts.dataset.pandas import PandasDataset

    frame = pd.DataFrame({"target": np.arange(30.0)}, index=pd.period_range("2024-01", periods=30, freq="M"))
    coll = from_gluonts(PandasDataset(frame))
    assert coll.freq == "M" and len(coll[0]["target"]) == 30


def test_json_lines_and_parquet_file_datasets(tmp_path):
    rows = [{"start": "2024-01-01 00:00", "target": [1.0, 2.0, 3.0], "item_id": "a"},
            {"start": "2024-01-02 00:00", "target": [4.0, None, 6.0], "item_id": "b"}]
    (tmp_path / "series.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    coll = read_file(tmp_path / "series.jsonl", freq="h")
    assert len(coll) == 2 and coll.freq == "h" and np.isnan(coll[1]["target"][1])
    pl.DataFrame({"start": ["2024-01-01 00:00"], "target": [[1.0, 2.0, 3.0]], "item_id": ["a"]}).write_parquet(
        tmp_path / "series.parquet")
    coll = read_file(tmp_path / "series.parquet", freq="h")
    assert len(coll) == 1 and list(coll[0]["target"]) == [1.0, 2.0, 3.0]
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path / "missing.jsonl", freq="h")


def test_polars_long_frame_with_covariates():
    coll = from_polars(hourly_frame(), dynamic_real=["temp"], static_cat=["region"])
    assert coll.freq == "h" and len(coll) == 2
    assert coll[0]["feat_dynamic_real"].shape == (1, 48)
    assert list(coll[1]["feat_static_cat"]) == [1] and coll.static_cardinalities == [1 + 1]
    assert coll[0]["start"] == pd.Period("2024-01-01 00:00", freq="h")
    # codes fixed by a training collection's categories; a value outside them is an error
    again = from_polars(hourly_frame(), static_cat=["region"], static_categories=[coll.static_categories[0][::-1]])
    assert [int(e["feat_static_cat"][0]) for e in again] == [1, 0]
    with pytest.raises(TimeSeriesDataError, match="not seen in training"):
        from_polars(hourly_frame(), static_cat=["region"], static_categories=[coll.static_categories[0][:1]])


def test_nan_targets_kept_with_mask():
    frame = hourly_frame(10, items=("a",)).with_columns(
        pl.when(pl.col("target") == 3).then(None).otherwise(pl.col("target")).alias("target"))
    entry = from_polars(frame)[0]
    assert np.isnan(entry["target"][3]) and entry["observed_values"][3] == 0 and entry["observed_values"].sum() == 9


def test_gaps_on_the_grid_become_nan():
    frame = hourly_frame(10, items=("a",)).filter(pl.col("target") != 5)
    entry = from_polars(frame, freq="h")[0]
    assert len(entry["target"]) == 10 and np.isnan(entry["target"][5])


def test_unsorted_timestamps_raise():
    frame = hourly_frame(10, items=("a",)).reverse()
    with pytest.raises(TimeSeriesDataError, match="not sorted.*frame.sort"):
        from_polars(frame, freq="h")


def test_duplicate_timestamps_raise_or_resample():
    frame = hourly_frame(10, items=("a",))
    doubled = pl.concat([frame.head(4), frame.slice(3, 1).with_columns(pl.lit(100.0).alias("target")),
                         frame.slice(4)])
    with pytest.raises(TimeSeriesDataError, match="duplicate timestamp"):
        from_polars(doubled, freq="h")
    entry = from_polars(doubled, freq="h", resample="mean")[0]
    assert entry["target"][3] == pytest.approx((3 + 100) / 2) and len(entry["target"]) == 10


def test_irregular_timestamps_raise_or_resample():
    stamps = [dt.datetime(2024, 1, 1) + dt.timedelta(minutes=m) for m in (0, 50, 130, 185, 250)]
    frame = pl.DataFrame({"item_id": "a", "timestamp": stamps, "target": [1.0, 2.0, 3.0, 4.0, 5.0]})
    with pytest.raises(TimeSeriesDataError, match="irregular timestamps"):
        from_polars(frame, freq="h")
    with pytest.raises(TimeSeriesDataError, match="could not infer the frequency"):
        from_polars(frame)
    entry = from_polars(frame, freq="h", resample="last")[0]
    np.testing.assert_array_equal(entry["target"], [2.0, np.nan, 3.0, 4.0, 5.0])


def test_frequency_inferred_from_month_end_and_month_start():
    ends = pl.DataFrame({"item_id": "a", "timestamp": pd.date_range("2020-01-31", periods=6, freq="ME"),
                         "target": np.arange(6.0)})
    starts = ends.with_columns(pl.Series("timestamp", pd.date_range("2020-01-01", periods=6, freq="MS")))
    assert from_polars(ends).freq == "M" and from_polars(starts).freq == "M"
    assert same_frequency("ME", "M") and same_frequency("1h", "h") and not same_frequency("h", "D")


def test_frequency_mismatch_between_train_and_test_raises():
    train = from_polars(hourly_frame())
    daily = hourly_frame().with_columns(pl.Series("timestamp", [dt.datetime(2024, 1, 1) + dt.timedelta(days=d)
                                                               for d in range(48)] * 2))
    test = from_polars(daily)
    with pytest.raises(TimeSeriesDataError, match="frequency mismatch.*'h'.*'D'"):
        check_same_frequency(train, test)
    entries = [{"start": pd.Period("2024-01-01", "D"), "target": [1.0, 2.0]}]
    with pytest.raises(TimeSeriesDataError, match="frequency mismatch"):
        from_gluonts(entries, freq="h")


def test_bad_columns_and_types_raise():
    with pytest.raises(TimeSeriesDataError, match=r"columns \['value'\] not in the frame"):
        from_polars(hourly_frame(), target="value")
    as_text = hourly_frame().with_columns(pl.col("timestamp").cast(pl.String))
    with pytest.raises(TimeSeriesDataError, match="str.to_datetime"):
        from_polars(as_text)
    with pytest.raises(TimeSeriesDataError, match="unknown frequency"):
        from_polars(hourly_frame(), freq="every tuesday")
    with pytest.raises(TimeSeriesDataError, match="only univariate"):
        from_gluonts([{"start": pd.Period("2024", "Y"), "target": np.ones((2, 5))}])


def test_short_series_skipped_and_counted():
    coll = from_polars(pl.concat([hourly_frame(20, ("a",)), hourly_frame(3, ("b",))]), min_length=10)
    assert len(coll) == 1 and coll.skipped == {"shorter than min_length": 1}
    cut = truncate(coll, 5)
    assert len(cut[0]["target"]) == 15 and len(cut[0]["observed_values"]) == 15
    assert "1 series" in cut.summary()
