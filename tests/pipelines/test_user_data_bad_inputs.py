"""Awkward files a new user brings to the time-series, documents and generic recipes: each is a clear error
naming the file, row or key and the fix, or is read with what was changed counted in the run's notes.
Loaders are called directly (fast); two short CLI calls check what reaches the user."""
import datetime as dt
import json
import zoneinfo

import polars as pl
import pytest

from mambatune.domains.tables import TableError
from mambatune.domains.timeseries.backtest_data import check_backtest_length
from mambatune.domains.timeseries.data import TimeSeriesDataError
from mambatune.domains.timeseries.user_data import SeriesColumns, read_series
from mambatune.pipelines.cli import main
from mambatune.pipelines.recipe import load_recipe


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def hourly(path, stamp, hours=72, header="timestamp,target"):
    """One series, hourly from 2024-03-01, each timestamp written by ``stamp(datetime, hour index)``."""
    t0 = dt.datetime(2024, 3, 1)
    return write(path, [header] + [f"{stamp(t0 + dt.timedelta(hours=h), h)},{h % 24}" for h in range(hours)])


# -- time series -------------------------------------------------------------------------------------------

def test_one_utc_offset_keeps_the_clock_times_written_and_says_so(tmp_path):
    read = read_series(hourly(tmp_path / "tz.csv", lambda t, h: t.isoformat() + "+01:00"), SeriesColumns())
    entry = read.series.entries[0]
    assert str(entry["start"]) == "2024-03-01 00:00" and len(entry["target"]) == 72  # not shifted to 23:00 UTC
    assert any("UTC offset +01:00: read as the clock times written" in n for n in read.notes)


def test_daylight_saving_offsets_are_read_in_utc_and_noted(tmp_path):
    paris, t0 = zoneinfo.ZoneInfo("Europe/Paris"), dt.datetime(2024, 3, 30, tzinfo=dt.timezone.utc)
    lines = ["timestamp,target"] + [f"{(t0 + dt.timedelta(hours=h)).astimezone(paris).isoformat()},{h}"
                                    for h in range(72)]  # 31 March 02:00 local does not exist
    read = read_series(write(tmp_path / "dst.csv", lines), SeriesColumns())
    assert len(read.series.entries[0]["target"]) == 72 and read.series.freq == "h"
    assert [n for n in read.notes if n.startswith("timestamps converted to UTC")] == [
        n for n in read.notes if "+01:00, +02:00" in n]  # one note, naming both offsets
    frame = pl.DataFrame({"timestamp": pl.datetime_range(dt.datetime(2024, 3, 30), dt.datetime(2024, 4, 2), "1h",
                                                         time_zone="Europe/Paris", eager=True)})
    frame.with_columns(target=pl.lit(1.0)).write_parquet(tmp_path / "zoned.parquet")
    read = read_series(tmp_path / "zoned.parquet", SeriesColumns())
    assert any("time zone Europe/Paris" in n for n in read.notes)


def test_offsets_that_make_a_duplicate_say_the_times_are_in_utc(tmp_path):
    path = hourly(tmp_path / "mixed.csv", lambda t, h: t.isoformat() + ("+01:00" if h % 2 else "+02:00"))
    with pytest.raises(TableError, match=r"mixed.csv, rows \d+ and \d+: the same timestamp .* \(in UTC: the "
                                         r"timestamps' UTC offsets differ\)"):
        read_series(path, SeriesColumns())


def test_an_offset_on_some_rows_only_names_both_rows(tmp_path):
    path = hourly(tmp_path / "some.csv", lambda t, h: t.isoformat(sep=" ") + ("+00:00" if h == 7 else ""))
    with pytest.raises(TableError, match=r"some.csv, row 8: timestamp .* has a UTC offset, but some.csv, row 1 "
                                         r"\('2024-03-01 00:00:00'\) has none"):
        read_series(path, SeriesColumns())


def test_a_date_with_dashes_is_not_read_as_an_offset(tmp_path):
    lines = ["timestamp,target"] + [f"2024-01-{d:02d},{d}" for d in range(1, 29)]
    read = read_series(write(tmp_path / "days.csv", lines), SeriesColumns())
    assert read.series.freq == "D" and not any("UTC" in n for n in read.notes)


def test_a_blank_timestamp_is_named_as_missing(tmp_path):
    path = hourly(tmp_path / "blank.csv", lambda t, h: "" if h == 3 else t.isoformat(sep=" "))
    with pytest.raises(TableError, match=r"blank.csv, row 4: no timestamp in column 'timestamp' \(1 row"):
        read_series(path, SeriesColumns())


def test_a_series_record_with_a_null_start_names_its_row(tmp_path):
    records = [{"item_id": "A", "start": "2024-01-01", "target": [1.0] * 30},
               {"item_id": "B", "start": None, "target": [1.0] * 30}]
    path = write(tmp_path / "r.jsonl", [json.dumps(r) for r in records])
    with pytest.raises(TableError, match=r"r.jsonl, row 2: series 'B' has no 'start' date"):
        read_series(path, SeriesColumns(), freq="D")


def test_no_series_at_the_frequency_says_what_they_are_at(tmp_path):
    path = hourly(tmp_path / "h.csv", lambda t, h: t.isoformat(sep=" "))
    with pytest.raises(TableError, match=r"no series is at the frequency D .*its series are at h: 1 series"):
        read_series(path, SeriesColumns(), freq="D")


def test_too_short_for_any_window_names_the_longest_series_and_a_horizon_that_fits(tmp_path):
    lines = ["item_id,timestamp,target"] + [f"{name},2024-03-01 {h:02d}:00,{h}" for name, n in (("a", 5), ("b", 9))
                                            for h in range(n)]
    series = read_series(write(tmp_path / "s.csv", lines), SeriesColumns()).series
    with pytest.raises(TimeSeriesDataError, match=r"the longest series \('b' \.\.\.\) has 9\. Lower "
                                                   r"data.prediction_length to at most 8"):
        check_backtest_length(series, 12, 2, "s.csv")


def test_predict_names_its_input_and_prints_what_reading_it_changed(tmp_path, capsys):
    from mambatune.pipelines.timeseries.verbs import read_inputs

    with pytest.raises(FileNotFoundError, match=r"check the input path"):
        read_inputs(str(tmp_path / "nothere.csv"), None)
    tiny = ["data.seasonal_skip=0", "model.config.d_model=8", "model.config.n_layer=1", "model.config.d_state=4",
            "data.context_length=24", "data.patch_length=8", "data.stride=8", "data.windows=1",
            "data.max_train_windows=8", "data.num_samples=4", "data.fan_charts=0", "data.baselines=[]",
            "train.batch_size=4", "train.max_steps=1", "train.progress=false", "train.device=cpu",
            "data.prediction_length=8", "data.scratch_baseline=false"]
    data = hourly(tmp_path / "h.csv", lambda t, h: t.isoformat(sep=" "))
    run = tmp_path / "run"
    assert main(["run", "timeseries/forecast_full", f"data.path={data}", f"train.output_dir={run}", *tiny]) == 0
    capsys.readouterr()
    new = hourly(tmp_path / "new.csv", lambda t, h: t.isoformat() + "+01:00", hours=30)
    assert main(["predict", str(run), str(new), "-o", str(tmp_path / "out.csv")]) == 0
    assert "predict series: timestamps in column 'timestamp' all carry the UTC offset +01:00" in capsys.readouterr().err


# -- documents ---------------------------------------------------------------------------------------------

def documents(path, labels, texts=None):
    rows = [{"id": f"d{i}", "text": (texts or {}).get(i, f"some words of document {i}"), "label": y}
            for i, y in enumerate(labels)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def doc_cfg(*extra):
    return load_recipe("documents/license_full", list(extra)).data


def test_multi_label_with_another_separator_names_it(tmp_path):
    from mambatune.pipelines.documents.data import load_data

    path = documents(tmp_path / "m.jsonl", ["gpl|mit", "mit", "bsd|gpl", "mit"] * 5)
    with pytest.raises(TableError, match=r"data.label_separator=';', which no row holds, but 10 row\(s\) hold '\|' "
                                         r"\(e.g. 'gpl\|mit'\); set 'data.label_separator=\"\|\"'"):
        load_data(doc_cfg(f"data.path={path}", "data.multi_label=true"))
    data = load_data(doc_cfg(f"data.path={path}", "data.multi_label=true", 'data.label_separator="|"'))
    assert data.multi_label


def test_single_labels_holding_the_separator_are_noted(tmp_path):
    from mambatune.pipelines.documents.data import load_data

    data = load_data(doc_cfg(f"data.path={documents(tmp_path / 's.jsonl', ['gpl;mit', 'mit'] * 10)}"))
    assert any("10 label(s) hold ';' (e.g. 'gpl;mit'), each read as one class; set data.multi_label=true" in n
               for n in data.notes)


def test_a_label_training_never_sees_names_the_row_and_the_key(tmp_path):
    from mambatune.domains.documents import DocumentTable, LoadReport
    from mambatune.pipelines.documents.tasks import check_unseen_labels

    frame = pl.DataFrame({"text": ["a", "b"], "label": ["x", "rare"], "_file": ["f.csv"] * 2, "_row": [1, 2]})
    table = DocumentTable(frame, False, LoadReport("f.csv"))
    with pytest.raises(ValueError, match=r"1 test document\(s\) have a label never seen in training \('rare' "
                                         r"\(f.csv, row 2\)\); with data.cv_folds=5 .*data.unseen_labels=map"):
        check_unseen_labels(table, {"x": 0}, "test", doc_cfg("data.path=f.csv", "data.cv_folds=5", "data.fold=1"))
    check_unseen_labels(table, {"x": 0, "rare": 1}, "test", doc_cfg())  # all known: nothing to say


def test_one_class_names_the_data_and_the_label(tmp_path, capsys):
    path = documents(tmp_path / "one.jsonl", ["mit"] * 12)
    tiny = ["model.pretrained=null", "model.config.d_model=8", "model.config.n_layer=1", "model.config.d_state=4",
            "data.max_length=16", "train.progress=false", "train.device=cpu", "eval.baselines=false"]
    assert main(["run", "documents/license_full", f"data.path={path}", f"train.output_dir={tmp_path / 'r'}",
                 *tiny]) == 2
    err = capsys.readouterr().err
    assert "one.jsonl" in err and "the training split has one label ('mit', in column 'label')" in err


def test_a_folder_of_text_files_without_a_label_table_says_to_add_one(tmp_path):
    from mambatune.pipelines.documents.data import load_data

    (tmp_path / "letters").mkdir()
    for i in range(3):
        (tmp_path / "letters" / f"l{i}.txt").write_text("dear sir")
    with pytest.raises(TableError, match=r"is a folder of 3 text file\(s\): label them with data.labels_path="):
        load_data(doc_cfg(f"data.path={tmp_path / 'letters'}"))


def test_a_missing_test_file_names_data_test_path(tmp_path):
    from mambatune.pipelines.documents.data import load_data
    from mambatune.pipelines.generic.pipeline import load_splits

    path = documents(tmp_path / "d.jsonl", ["a", "b"] * 10)
    with pytest.raises(TableError, match=r"not found .*check data.test_path"):
        load_data(doc_cfg(f"data.path={path}", f"data.test_path={tmp_path / 'nothere.csv'}"))
    generic = load_recipe("generic/sequence_classification_full",
                          [f"data.path={path}", f"data.test_path={tmp_path / 'nothere.csv'}"]).data
    with pytest.raises(TableError, match=r"not found .*check data.test_path"):
        load_splits(generic)


# -- generic -----------------------------------------------------------------------------------------------

def test_a_numeric_text_column_is_refused_not_read_as_digits(tmp_path):
    from mambatune.pipelines.generic.pipeline import load_splits

    rows = [{"id": f"s{i}", "text": i * 17, "label": "ab"[i % 2]} for i in range(20)]
    path = write(tmp_path / "n.jsonl", [json.dumps(r) for r in rows])
    cfg = load_recipe("generic/sequence_classification_full", [f"data.path={path}"]).data
    with pytest.raises(TableError, match=r"data.text_column 'text' holds Int64 values \(n.jsonl, row 1: 0\), not text"):
        load_splits(cfg)


def generic_cfg(path, *extra):
    return load_recipe("generic/sequence_classification_full", [f"data.path={path}", *extra]).data


@pytest.mark.parametrize("label, match", [
    (lambda i: [0.5, 1.0], r"data.label_column 'label' holds lists \(n.jsonl, row 1: \[0.5, 1.0\]\)"),
    (lambda i: 0.1 * i, r"holds numbers that are not all whole \(n.jsonl, row 2: '0.1'; 20 distinct values\), a "
                        r"regression target; the generic recipe classifies"),
])
def test_labels_a_classifier_cannot_use_are_refused(tmp_path, label, match):
    from mambatune.pipelines.generic.pipeline import load_splits

    rows = [{"text": "ACGT" * 3, "label": label(i)} for i in range(20)]
    with pytest.raises(TableError, match=match):
        load_splits(generic_cfg(write(tmp_path / "n.jsonl", [json.dumps(r) for r in rows])))


def test_ids_blank_are_refused_and_repeated_ones_counted(tmp_path):
    from mambatune.pipelines.generic.pipeline import load_splits

    lines = ["id,text,label"] + [f"{'s1' if i == 2 else ('' if i == 5 else f's{i}')},ACGTACGT,{'ab'[i % 2]}"
                                 for i in range(20)]
    with pytest.raises(TableError, match=r"1 row\(s\) have no id in data.id_column 'id' \(i.csv, row 6\)"):
        load_splits(generic_cfg(write(tmp_path / "i.csv", lines), "data.id_column=id"))
    lines[6] = "s5,ACGTACGT,b"
    notes = load_splits(generic_cfg(write(tmp_path / "i.csv", lines), "data.id_column=id"))[2]
    assert "column 'id': 1 repeated id(s) (ids name rows in predictions_test.csv)" in notes


def test_an_unseen_label_lists_a_few_classes_and_a_non_dna_example_is_named_once():
    from mambatune.pipelines.generic.pipeline import Examples, encode
    from mambatune.pipelines.generic.text_tokenizer import TextTokenizer

    cfg = generic_cfg("x.csv")
    labels = {f"c{i}": i for i in range(30)}
    with pytest.raises(TableError, match=r"label 'new' was not seen in training \(labels: c0, .*c9, \.\.\. \(30 in "
                                         r"all\)\); .*at least 2 rows"):
        encode(TextTokenizer("byte"), Examples(["AC"], ["new"], ["x:1"]), labels, cfg, "test")
    with pytest.raises(TableError) as err:
        encode(TextTokenizer("dna"), Examples(["ACXG"], ["c0"], ["x:1"]), labels, cfg, "train")
    assert str(err.value).count("train example x:1") == 1


def test_generic_predict_keeps_an_empty_input_without_a_prediction(tmp_path, capsys):
    lines = ["id,text,label"] + [f"s{i},{'TATA' if i % 2 else 'GGCC'}ACGTAC,{'ab'[i % 2]}" for i in range(16)]
    data = write(tmp_path / "d.csv", lines)
    tiny = ["model.config.d_model=8", "model.config.n_layer=1", "model.config.d_state=4", "train.epochs=1",
            "train.batch_size=8", "train.progress=false", "train.device=cpu", "eval.baselines=false"]
    run = tmp_path / "run"
    assert main(["run", "generic/sequence_classification_full", f"data.path={data}", "data.id_column=id",
                 f"train.output_dir={run}", *tiny]) == 0
    new = write(tmp_path / "new.csv", ["id,text", "n1,TATAACGTAC", "n2,  "])
    capsys.readouterr()
    assert main(["predict", str(run), str(new), "-o", str(tmp_path / "out.csv")]) == 0
    assert "empty (not classified): 1" in capsys.readouterr().err
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert rows[1].startswith("n1,TATAACGTAC,") and rows[2] == "n2,  ,,,,,empty input: not classified"


def test_a_file_without_any_value_names_the_file_and_the_key(tmp_path):
    from mambatune.pipelines.timeseries.data import load_problem

    path = write(tmp_path / "na.csv", ["timestamp,target"] + [f"2024-03-01 {h:02d}:00,NA" for h in range(24)])
    cfg = load_recipe("timeseries/forecast_full", [f"data.path={path}", "data.prediction_length=12"]).data
    with pytest.raises(TimeSeriesDataError, match=r"na.csv: every series is empty: .*is data.target_column the column"):
        load_problem(cfg)


def test_characters_a_char_tokenizer_never_saw_are_counted():
    from mambatune.pipelines.generic.pipeline import Examples, encode
    from mambatune.pipelines.generic.text_tokenizer import TextTokenizer

    tokenizer = TextTokenizer.fit("char", ["ACGT"])
    unknown = {}
    encode(tokenizer, Examples(["ACGU", "UUA"], ["a", "a"], ["1", "2"]), {"a": 0}, generic_cfg("x.csv"), "test",
           {}, unknown)
    assert unknown == {"test": 3}
