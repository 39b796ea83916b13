"""A user's series file read with the recipe's column names: types from the whole file, missing values
counted, date parts, frequencies in every spelling, mixed frequencies, series records without start dates,
an incomplete last day, and one test per bad input, each an error naming the file, row or column."""
import gzip
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from mambatune.domains.tables import TableError
from mambatune.domains.timeseries.backtest_data import (
    check_backtest_length,
    partial_last_period,
    season_lengths,
    trim_missing_ends,
)
from mambatune.domains.timeseries.data import TimeSeriesDataError
from mambatune.domains.timeseries.frequency import (
    FrequencyError,
    normalise_freq,
    offset_alias,
    seasonal_periods,
)
from mambatune.domains.timeseries.user_data import SeriesColumns, read_series


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def hourly_lines(hours=48, start_value=10, header="when,sales", decimal_at=None, value=None):
    lines = [header]
    for t in range(hours):
        v = value(t) if value else (f"{start_value + t % 24}.5" if t == decimal_at else str(start_value + t % 24))
        lines.append(f"2024-03-{1 + t // 24:02d} {t % 24:02d}:00,{v}")
    return lines


def test_own_column_names_types_from_the_whole_file_and_missing_values(tmp_path):
    """A decimal on the last row (polars would guess i64 from the first rows) and NA / empty targets."""
    lines = hourly_lines(48, decimal_at=47)
    lines[5] = "2024-03-01 04:00,NA"
    lines[6] = "2024-03-01 05:00,"
    read = read_series(write(tmp_path / "s.csv", lines), SeriesColumns(timestamp="when", target="sales"))
    (entry,) = read.series.entries
    assert read.series.freq == "h" and len(entry["target"]) == 48
    assert entry["target"][47] == pytest.approx(33.5)
    assert np.isnan(entry["target"][4]) and entry["observed_values"][5] == 0
    assert read.counts["missing targets"] == 2 and "2 of 48 target values are missing" in read.notes[0]


def test_date_part_columns_and_gaps(tmp_path):
    lines = ["yr,mo,dy,hr,pm"] + [f"2024,2,{28 + t // 24 - (2 if t >= 48 else 0) * 0},{t % 24},{t}" for t in range(48)]
    lines.pop(10)  # a missing hour: a gap on the grid
    columns = SeriesColumns(target="pm", timestamp_parts={"year": "yr", "month": "mo", "day": "dy", "hour": "hr"})
    read = read_series(write(tmp_path / "p.csv", lines), columns)
    (entry,) = read.series.entries
    assert str(entry["start"]) == "2024-02-28 00:00" and len(entry["target"]) == 48  # 29 Feb 2024 exists
    assert read.counts["gaps filled"] == 1 and np.isnan(entry["target"][9])
    bad = ["yr,mo,dy,hr,pm", "2023,2,29,0,1", "2023,3,1,0,2"]
    with pytest.raises(TableError, match=r"b.csv, row 1: 2023-02-29 is not a date"):
        read_series(write(tmp_path / "b.csv", bad), columns)
    with pytest.raises(TableError, match=r"c.csv, row 2: hour column 'hr' holds '24'"):
        read_series(write(tmp_path / "c.csv", ["yr,mo,dy,hr,pm", "2023,2,1,0,1", "2023,2,1,24,2"]), columns)


@pytest.mark.parametrize("spellings, period, offset", [
    (("M", "ME", "MS", "monthly"), "M", "ME"),
    (("Q", "QE", "QS", "Q-DEC", "QE-DEC", "quarterly"), "Q-DEC", "QE-DEC"),
    (("Y", "YE", "A", "YS", "Y-DEC", "YEARLY"), "Y-DEC", "YE-DEC"),
    (("H", "h", "1h", "hourly"), "h", "h"),
    (("T", "min", "1min"), "min", "min"),
    (("15T", "15min"), "15min", "15min"),
])
def test_every_spelling_of_a_frequency_is_one_period_alias(spellings, period, offset):
    """Old (pandas < 2.2) and new (pandas >= 2.2, the only ones pandas 3 accepts) spellings give one period
    alias, whatever pandas is installed, and the offset alias GluonTS' to_offset-based functions read."""
    from gluonts.time_feature import get_seasonality, time_features_from_frequency_str

    assert {normalise_freq(s) for s in spellings} == {period}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated spelling reaches pandas
        for s in spellings:
            p = normalise_freq(s)
            pd.Period("2020-01-01", freq=p)
            assert get_seasonality(offset_alias(s)) >= 1 and time_features_from_frequency_str(offset_alias(s)) is not None
            assert offset_alias(s) == offset
    with pytest.raises(FrequencyError, match="unknown frequency"):
        normalise_freq("fortnightly")


def test_monthly_file_read_with_either_spelling(tmp_path):
    lines = ["month,value"] + [f"{2020 + m // 12}-{m % 12 + 1:02d}-01,{m}" for m in range(30)]
    path = write(tmp_path / "m.csv", lines)
    inferred = read_series(path, SeriesColumns(timestamp="month", target="value"))
    for spelling in ("M", "ME", "MS"):
        given = read_series(path, SeriesColumns(timestamp="month", target="value"), freq=spelling)
        assert given.series.freq == inferred.series.freq == "M"
        assert str(given.series.entries[0]["start"]) == "2020-01"


def test_seasonal_periods_follow_the_frequency():
    assert seasonal_periods("h") == (24, 168) and seasonal_periods("30min") == (48, 336)
    assert seasonal_periods("D") == (7,) and seasonal_periods("ME") == (12,) and seasonal_periods("A") == (1,)


def test_hourly_season_is_a_week_when_the_history_covers_two(tmp_path):
    def collection(hours):
        return read_series(write(tmp_path / f"h{hours}.csv", hourly_lines(hours)),
                           SeriesColumns(timestamp="when", target="sales")).series
    assert season_lengths(collection(24 * 16), held_out=48) == (168, 24)
    assert season_lengths(collection(24 * 10), held_out=48) == (24, 24)


def test_incomplete_last_day_is_trimmed_refused_or_kept(tmp_path):
    """The file ends at 13:00: trimming drops the last day's 14 steps so windows start at midnight."""
    series = read_series(write(tmp_path / "p.csv", hourly_lines(24 * 3 + 14)),
                         SeriesColumns(timestamp="when", target="sales")).series
    trimmed, notes, counts = partial_last_period(series, "trim")
    assert len(trimmed.entries[0]["target"]) == 72 and counts == {"steps trimmed (incomplete last day)": 14}
    assert "its last step is 2024-03-04 13:00" in notes[0]
    with pytest.raises(TimeSeriesDataError, match="data.partial_period=trim"):
        partial_last_period(series, "error")
    kept, notes, _ = partial_last_period(series, "keep")
    assert len(kept.entries[0]["target"]) == 86 and "start at 14:00:00 instead of midnight" in notes[0]


def test_missing_values_at_the_ends_are_trimmed_and_counted(tmp_path):
    lines = hourly_lines(30)
    lines[1] = "2024-03-01 00:00,NA"
    lines[-1] = "2024-03-02 05:00,"
    series = read_series(write(tmp_path / "e.csv", lines), SeriesColumns(timestamp="when", target="sales")).series
    trimmed, notes, counts = trim_missing_ends(series)
    assert len(trimmed.entries[0]["target"]) == 28 and str(trimmed.entries[0]["start"]) == "2024-03-01 01:00"
    assert counts == {"missing steps trimmed at the ends": 2}


def test_series_records_without_start_dates(tmp_path):
    """M3-style JSON lines: integer and decimal values mixed, a per-series frequency field, no start."""
    records = [{"id": "Y1", "period": "YEARLY", "values": [1, 2.5, 3, 4, 5, 6]},
               {"id": "M1", "period": "MONTHLY", "values": [1.5, None, 3, 4, 5, 6, 7, 8]},
               {"id": "M2", "period": "MONTHLY", "values": [2, 3, 4, 5, 6, 7, 8, 9]}]
    path = write(tmp_path / "m.jsonl", [json.dumps(r) for r in records])
    with pytest.raises(TableError, match=r"m.jsonl: the series have no 'start' field .* set data.freq"):
        read_series(path, SeriesColumns(target="values", item="id"))
    columns = SeriesColumns(target="values", item="id", freq_column="period")
    with pytest.raises(TableError, match=r"mixes frequencies: Y-DEC: 1 series \('Y1'\); M: 2 series"):
        read_series(path, columns)
    read = read_series(path, columns, freq="monthly")
    assert [e["item_id"] for e in read.series.entries] == ["M1", "M2"] and read.integer_index
    assert str(read.series.entries[0]["start"]) == "2000-01" and read.counts["missing targets"] == 1
    assert read.counts["series at another frequency"] == 1 and "'Y1'" in read.notes[0]


def test_gluonts_json_lines_with_start_and_gzip(tmp_path):
    lines = [json.dumps({"start": "2024-01-01 00:00", "target": [1.0, 2, "NaN", 4], "item_id": "a"})]
    path = tmp_path / "g.jsonl.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    read = read_series(path, SeriesColumns(), freq="H")
    (entry,) = read.series.entries
    assert read.series.freq == "h" and np.isnan(entry["target"][2]) and read.counts["missing targets"] == 1


# -- bad input: one test each, an error naming the file and row or column --------------------------

def test_text_in_a_numeric_target(tmp_path):
    lines = hourly_lines(30)
    lines[20] = "2024-03-01 19:00,twelve"
    with pytest.raises(TableError, match=r"t.csv, row 20: column 'sales' holds 'twelve', not a number"):
        read_series(write(tmp_path / "t.csv", lines), SeriesColumns(timestamp="when", target="sales"))


def test_an_infinite_target(tmp_path):
    lines = hourly_lines(30)
    lines[3] = "2024-03-01 02:00,inf"
    with pytest.raises(TableError, match=r"i.csv, row 3: column 'sales' holds 'inf' \(infinite\)"):
        read_series(write(tmp_path / "i.csv", lines), SeriesColumns(timestamp="when", target="sales"))


def test_a_series_too_short_for_the_backtest(tmp_path):
    series = read_series(write(tmp_path / "s.csv", hourly_lines(40)), SeriesColumns(timestamp="when", target="sales"))
    with pytest.raises(TimeSeriesDataError, match=r"s.csv: no series is long enough .* 2 window\(s\) of 24 steps need "
                                                   r"more than 48 steps, and the longest series \('series' \.\.\.\) has 40\. "
                                                   r"Lower data.windows \(at most 1 fits"):
        check_backtest_length(series.series, 24, 2, "s.csv")


def test_hourly_and_daily_series_in_one_file(tmp_path):
    lines = ["item,when,sales"] + [f"a,2024-03-01 {h:02d}:00,{h}" for h in range(24)] + \
        [f"b,2024-03-{d:02d},{d}" for d in range(1, 20)]
    path = write(tmp_path / "mix.csv", lines)
    columns = SeriesColumns(timestamp="when", target="sales", item="item")
    with pytest.raises(TableError, match=r"mix.csv mixes frequencies: h: 1 series \('a'\); D: 1 series \('b'\)\. "
                                         r".*set data.freq to one of h, D"):
        read_series(path, columns)
    read = read_series(path, columns, freq="D")
    assert [e["item_id"] for e in read.series.entries] == ["b"] and read.counts["series at another frequency"] == 1


def test_a_bad_json_line(tmp_path):
    path = write(tmp_path / "b.jsonl", ['{"start": "2024-01-01", "target": [1, 2]}', '{"start": "2024-01-02", "target": [1,'])
    with pytest.raises(TableError, match=r"b.jsonl, line 2: not valid JSON"):
        read_series(path, SeriesColumns(), freq="D")


def test_an_empty_file(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(TableError, match=r"e.csv is empty"):
        read_series(tmp_path / "e.csv", SeriesColumns())


def test_json_without_start_and_a_bad_start(tmp_path):
    path = write(tmp_path / "n.json", [json.dumps([{"target": [1, 2, 3]}, {"target": [4, 5]}])])
    with pytest.raises(TableError, match=r"n.json: the series have no 'start' field \(fields: target\)"):
        read_series(path, SeriesColumns())
    path = write(tmp_path / "d.jsonl", [json.dumps({"start": "soon", "target": [1, 2]})])
    with pytest.raises(TableError, match=r"d.jsonl, row 1: start 'soon' is not a date"):
        read_series(path, SeriesColumns(), freq="D")


def test_a_missing_column(tmp_path):
    with pytest.raises(TableError, match=r"no column 'sales' \(data.target_column\); its columns are timestamp, "
                                         r"value\. Set data.target_column=<one of them>"):
        read_series(write(tmp_path / "c.csv", ["timestamp,value", "2024-01-01,1"]), SeriesColumns(target="sales"))


def test_duplicate_and_unparsable_timestamps(tmp_path):
    lines = hourly_lines(30)
    lines[4] = lines[3]
    with pytest.raises(TableError, match=r"d.csv, rows 3 and 4: the same timestamp .* data.resample=mean"):
        read_series(write(tmp_path / "d.csv", lines), SeriesColumns(timestamp="when", target="sales"))
    lines = hourly_lines(30)
    lines[7] = "tomorrow,5"
    with pytest.raises(TableError, match=r"u.csv, row 7: timestamp 'tomorrow' .* data.timestamp_format"):
        read_series(write(tmp_path / "u.csv", lines), SeriesColumns(timestamp="when", target="sales"))


def test_an_integer_time_index_needs_a_frequency(tmp_path):
    path = write(tmp_path / "i.csv", ["t,y"] + [f"{t},{t % 7}" for t in range(1, 30)])
    with pytest.raises(TableError, match=r"i.csv: column 't' holds integers .* set data.freq"):
        read_series(path, SeriesColumns(timestamp="t", target="y"))
    read = read_series(path, SeriesColumns(timestamp="t", target="y"), freq="D")
    assert read.integer_index and str(read.series[0]["start"]) == "2000-01-01" and len(read.series[0]["target"]) == 29
    assert "integer time index" in read.notes[-1]
