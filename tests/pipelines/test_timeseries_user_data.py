"""The forecasting recipes on a user's own file through data.path and the column keys: a run whose report
counts what was missing or trimmed, whose forecasts.csv recomputes the run's metrics, baselines switched
on their own, the seasonal period from the frequency, either spelling of a frequency, and the contract's
split keys refused. The docs page's example runs too."""
import json
import re

import numpy as np
import polars as pl
import pytest

from mambatune.pipelines.cli import main
from mambatune.pipelines.recipe import load_recipe
from mambatune.pipelines.timeseries.data import load_problem

from .test_timeseries import TINY, run

DOCS = __import__("pathlib").Path(__file__).resolve().parents[2] / "docs"


def parking_csv(path, days: int = 20, partial_hours: int = 7, seed: int = 0):
    """Two car parks, hourly, with their own column names, date parts, NA values, a decimal only late in
    the file and a last day cut at ``partial_hours`` hours."""
    rng = np.random.default_rng(seed)
    lines = ["site,yr,mo,dy,hr,occupied"]
    for site, level in (("P1", 50), ("P2", 80)):
        for t in range(days * 24 + partial_hours):
            day, hour = divmod(t, 24)
            value = level + 30 * np.sin(2 * np.pi * hour / 24) + 10 * (day % 7 < 2) + rng.normal()
            text = "NA" if t % 97 == 5 else (f"{value:.1f}" if t > days * 20 else str(int(value)))
            lines.append(f"{site},2024,{3 + day // 31},{1 + day % 31},{hour},{text}")
    path.write_text("\n".join(lines) + "\n")
    return path


COLUMNS = ["data.item_column=site", "data.target_column=occupied",
           "data.timestamp_parts={year: yr, month: mo, day: dy, hour: hr}"]


def test_a_user_file_end_to_end_with_forecasts_saved(tmp_path):
    data = parking_csv(tmp_path / "parking.csv")
    out = tmp_path / "run"
    tiny = [t for t in TINY if not t.startswith("data.max_history")]
    results = run("timeseries/forecast_full", out, f"data.path={data}", *COLUMNS, "data.prediction_length=12",
                  "data.baselines=[seasonal_naive, theta]", *tiny)
    assert results["problem"].startswith("parking.csv: 2 series at h")
    notes = " | ".join(results["data"]["notes"])
    counts = results["data"]["counts"]
    assert counts["missing targets"] == 10 and counts["steps trimmed (incomplete last day)"] == 14
    assert "end in an incomplete day" in notes and "kept as unobserved steps" in notes
    report = (out / "report.md").read_text()
    assert "## Data" in report and "forecasts.csv" in report
    assert "seasonal naive (season 168)" in results["test"]  # hourly, 20 days of history: a week
    forecasts = pl.read_csv(out / "forecasts.csv")
    assert set(forecasts["model"].unique()) == set(results["test"])
    assert forecasts.height == len(results["test"]) * 2 * 2 * 12  # models x series x windows x steps
    assert forecasts["timestamp"].max() == "2024-03-20 23:00:00"  # the incomplete 21 March trimmed
    for model, metrics in results["test"].items():  # ND = sum |actual - median| / sum |actual|
        rows = forecasts.filter(pl.col("model") == model).drop_nulls("actual")
        nd = (rows["actual"] - rows["q0.5"]).abs().sum() / rows["actual"].abs().sum()
        assert nd == pytest.approx(metrics["ND"], rel=1e-4), model


def test_each_baseline_on_its_own_and_the_season_from_the_frequency(tmp_path):
    data = parking_csv(tmp_path / "parking.csv", days=10)
    base = [f"data.path={data}", *COLUMNS, "data.prediction_length=12", "data.windows=2"]
    recipe = load_recipe("timeseries/forecast_full", base + ["data.baselines=[theta]"])
    from mambatune.pipelines.timeseries.tasks import baseline_names

    assert baseline_names(recipe) == ["theta"]
    assert baseline_names(load_recipe("timeseries/forecast_full", base + ["data.baselines=[]"])) == []
    assert baseline_names(load_recipe("timeseries/forecast_full", base + ["eval.baselines=false"])) == []
    problem = load_problem(recipe.data)
    assert (problem.season_length, problem.mase_seasonality) == (24, 24)  # 9 days before the backtest: not 2 weeks
    long = load_problem(load_recipe("timeseries/forecast_full",
                                    [f"data.path={parking_csv(tmp_path / 'long.csv', days=20)}", *base[1:]]).data)
    assert long.season_length == 168  # what seasonal naive, Theta and seasonal_skip: season use
    assert main(["run", "timeseries/forecast_full", *base, "data.baselines=[arima]", "--dry-run"]) == 2


def test_either_spelling_of_a_frequency_gives_the_same_problem(tmp_path):
    lines = ["month,sales"] + [f"{2015 + m // 12}-{m % 12 + 1:02d}-28,{100 + m % 12}" for m in range(60)]
    (tmp_path / "monthly.csv").write_text("\n".join(lines) + "\n")
    described = set()
    for spelling in ("M", "ME", "MS", "monthly"):
        recipe = load_recipe("timeseries/forecast_full", [f"data.path={tmp_path / 'monthly.csv'}", f"data.freq={spelling}",
                                                          "data.timestamp_column=month", "data.target_column=sales",
                                                          "data.prediction_length=6", "data.windows=2"])
        problem = load_problem(recipe.data)
        described.add((problem.description, problem.freq, problem.season_length, problem.mase_seasonality))
    assert described == {("monthly.csv: 1 series at M, last 2 windows of 6 steps (rolling origin)", "M", 12, 12)}


def test_split_keys_are_refused_and_bad_files_exit_with_the_fix(tmp_path, capsys):
    data = parking_csv(tmp_path / "parking.csv", days=3)
    for key in ("data.cv_folds=5", "data.split_column=split", f"data.test_path={data}"):
        assert main(["run", "timeseries/forecast_full", f"data.path={data}", key, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "data.cv_folds does not apply to forecasting" in err and "do not apply to forecasting" in err
    out = tmp_path / "x"
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("item_id,timestamp,target\n" + "".join(f"a,2024-01-01 {h:02d}:00,{h}\n" for h in range(24))
                     + "".join(f"b,2024-01-{d:02d},{d}\n" for d in range(1, 29)))
    assert main(["run", "timeseries/forecast_full", f"data.path={mixed}", f"train.output_dir={out}", *TINY]) == 2
    assert re.search(r"mixed.csv mixes frequencies: h: 1 series \('a'\); D: 1 series \('b'\)", capsys.readouterr().err)
    (tmp_path / "m3.json").write_text(json.dumps([{"id": "N1", "x": [1, 2.5, 3] * 10}]))
    assert main(["run", "timeseries/forecast_full", f"data.path={tmp_path / 'm3.json'}", "data.target_column=x",
                 f"train.output_dir={out}", *TINY]) == 2
    assert "the series have no 'start' field (fields: id, x)" in capsys.readouterr().err
    assert main(["run", "timeseries/forecast_full", f"data.path={tmp_path / 'none.csv'}", "--dry-run"]) == 2
    assert "data file" in capsys.readouterr().err


def test_docs_page_example_runs(tmp_path, monkeypatch):
    """The example of the "## Time series" section of docs/your-data.md."""
    from helpers import python_blocks

    page = DOCS / "your-data.md"
    blocks = python_blocks(page, section="Time series")
    assert blocks, f"{page.name} lost the time-series python example"
    monkeypatch.chdir(tmp_path)
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page.name}[time series, python block {i}]", "exec"), {"__name__": f"docs_{i}"})


def test_resuming_a_run_after_its_data_file_changed_is_refused(tmp_path, capsys):
    """The run identity holds a fingerprint of the training series (issue 17): the same command after the
    file changed does not resume the old checkpoints onto the new data; it stops and names the change."""
    data = parking_csv(tmp_path / "parking.csv", days=10)
    out = tmp_path / "run"
    args = ["run", "timeseries/forecast_full", f"train.output_dir={out}", f"data.path={data}", *COLUMNS,
            "data.prediction_length=12", "data.baselines=[]", *[t for t in TINY if not t.startswith("data.max_history")]]
    assert main(args) == 0
    assert main(args) == 0  # the same data: the finished run resumes (nothing left to train)
    lines = data.read_text().splitlines()
    lines[30] = lines[30].rsplit(",", 1)[0] + ",999"  # one reading changed
    data.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "extra.data_fingerprint:" in err and "other settings" in err, err
