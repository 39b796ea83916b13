"""The time-series pipeline end to end with tiny overrides: every shipped recipe, pretraining then
fine-tuning from the saved model, and an M3 group with its official horizon."""
import json

import pytest

from mambatune.domains.timeseries.estimator import MambaPredictor
from mambatune.pipelines.cli import main

TINY = ["data.seasonal_skip=0", "model.config.d_model=8", "model.config.n_layer=1", "model.config.d_state=4", "data.context_length=48",
        "data.max_history=1500", "data.patch_length=8", "data.stride=4", "data.windows=2", "data.max_train_windows=32", "data.num_samples=10",
        "data.pretrain_steps=2", "data.fan_charts=1", "train.batch_size=8", "train.max_steps=2",
        "train.eval_every=1", "train.log_every=1", "train.progress=false"]


def run(recipe: str, out, *extra) -> dict:
    assert main(["run", recipe, f"train.output_dir={out}", *TINY, *extra]) == 0
    for name in ("config.yaml", "results.json", "report.md", "metrics.jsonl"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    for metrics in results["test"].values():
        assert {"MASE", "sMAPE", "wQL", "MSIS", "ND", "NRMSE"} <= set(metrics)
    assert any(name.startswith("seasonal naive") for name in results["baselines"])
    assert any(name.startswith("Theta") for name in results["baselines"])
    assert results["fan_charts"] and (out / results["fan_charts"][0]).is_file()
    assert "| MASE |" in (out / "report.md").read_text()
    assert "![comparison](plots/comparison.png)" in (out / "report.md").read_text()  # our forecaster beside the baselines
    return results


def test_forecast_full(tmp_path):
    out = tmp_path / "full"
    results = run("timeseries/forecast_full", out)
    assert len(results["test"]) == 3  # the forecaster, seasonal naive, Theta
    predictor = MambaPredictor.deserialize(out / "predictor")
    assert predictor.prediction_length == 24


@pytest.mark.parametrize("recipe", ["timeseries/forecast_lora", "timeseries/forecast_head"])
def test_fine_tune_recipes_pretrain_in_run_when_no_model(tmp_path, monkeypatch, recipe):
    monkeypatch.setenv("MAMBATUNE_SERIES_MODEL", str(tmp_path / "missing"))
    out = tmp_path / "ft"
    results = run(recipe, out)
    assert (out / "pretrain" / "model" / "model.safetensors").is_file()
    assert any("from scratch" in name for name in results["test"])  # the scratch baseline, same budget
    assert "fine-tuned" in next(iter(results["test"]))


def test_pretrain_on_the_corpus_then_fine_tune_at_other_contexts(tmp_path):
    pre = tmp_path / "pre"
    results = run("timeseries/pretrain_series", pre)
    corpus = ["sf_traffic", "traffic_volume", "bike_sharing", "solar", "wind"]
    meta = json.loads((pre / "model" / "forecaster.json").read_text())
    assert meta["meta"]["pretrained_on"] == corpus and meta["forecaster"]["context_length"] == 48
    for scores in results["per_series"].values():  # every model scored on each series' last days
        assert list(scores) == corpus + ["mean"]
    assert "## Per series" in (pre / "report.md").read_text()
    for context in (24, 200):  # shorter and longer than the pretraining context, same patching
        results = run("timeseries/forecast_lora", tmp_path / f"lora{context}", f"model.pretrained={pre / 'model'}",
                      "data.scratch_baseline=false", f"data.context_length={context}")
        assert results["pretrained"] == str(pre / "model") and len(results["test"]) == 3
        assert results["per_series"] is None  # one series
    assert main(["run", "timeseries/forecast_lora", f"model.pretrained={pre / 'model'}", "data.patch_length=16",
                 f"train.output_dir={tmp_path / 'bad'}", *TINY[:4]]) == 2  # other patching: a clear error


def test_several_datasets_in_one_setting():
    from mambatune.pipelines.recipe import load_recipe

    recipe = load_recipe("timeseries/forecast_lora", ["data.pretrain_dataset=[solar, wind]"])
    assert recipe.data.pretrain_dataset == ["solar", "wind"]
    for bad in ("[solar, m3]", "[solar, solar]", "[]", "weather"):
        assert main(["run", "timeseries/forecast_lora", f"data.pretrain_dataset={bad}", "--dry-run"]) == 2


def test_m3_group_with_official_horizon(tmp_path):
    results = run("timeseries/forecast_full", tmp_path / "m3", "data.dataset=m3", "data.group=yearly",
                  "data.prediction_length=null", "data.max_series=6", "data.context_length=12")
    assert "horizon 6" in results["problem"] and results["mase_seasonality"] == 1


def test_m3_groups_in_one_run_beside_theta(tmp_path):
    out = tmp_path / "m3"
    assert main(["run", "timeseries/forecast_m3", f"train.output_dir={out}", *TINY[:3], "data.max_series=3",
                 "data.group=[yearly, other]", "train.max_steps=2", "train.eval_every=1", "data.num_samples=10",
                 "train.progress=false"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["test"]) == {"mamba from scratch (full)", "seasonal naive", "Theta"}
    for scores in results["scores"].values():
        assert list(scores) == ["yearly", "other", "all"] and scores["all"]["series"] == 6
    assert (out / "yearly" / "predictor" / "model.safetensors").is_file()
    report = (out / "report.md").read_text()
    assert "| Theta |" in report and "Theta, published (M3 competition): all series, not comparable" in report


def test_context_comparison_in_one_run(tmp_path):
    results = run("timeseries/forecast_full", tmp_path / "ctx", "data.compare_context_lengths=[24, 200]",
                  "data.context_length=200", "data.scale_window=24")
    assert list(results["context_comparison"]) == ["24", "200"]
    for metrics in results["context_comparison"].values():
        assert {"MASE", "wQL", "steps"} <= set(metrics) and metrics["steps"] == 2  # the same budget
    assert "mamba from scratch (full), context 24" in results["test"]
    report = (tmp_path / "ctx" / "report.md").read_text()
    assert "## Context length" in report and "scaling statistics from the last 24 steps" in report
    saved = json.loads((tmp_path / "ctx" / "predictor" / "forecaster.json").read_text())["forecaster"]
    assert saved["scale_window"] == 24 and saved["context_length"] == 200
    assert main(["run", "timeseries/forecast_m3", "data.compare_context_lengths=[12, 24]", "--dry-run"]) == 2


def test_bad_recipe_values_are_errors(tmp_path):
    assert main(["run", "timeseries/forecast_full", "data.dataset=weather", "--dry-run"]) == 2
    assert main(["run", "timeseries/forecast_full", "data.dataset=m1", "data.group=other", "--dry-run"]) == 2
    assert main(["run", "timeseries/forecast_full", "data.scale_window=-5", "--dry-run"]) == 2
    assert main(["run", "timeseries/forecast_full", "data.dataset=m3", "data.prediction_length=7",
                 f"train.output_dir={tmp_path / 'x'}", *TINY]) == 2


# -- eval / predict / export on finished runs ----------------------------------------------------

def read_rows(path):
    import csv
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_forecast_eval_predict_export(tmp_path, capsys):
    out = tmp_path / "run"
    results = run("timeseries/forecast_lora", out, "model.pretrained=null", "data.scratch_baseline=false")
    name = next(iter(results["test"]))
    assert main(["eval", str(out)]) == 0
    evaluated = json.loads((out / "eval_test.json").read_text())
    for key in ("MASE", "sMAPE", "wQL"):
        assert evaluated["metrics"][key] == pytest.approx(results["test"][name][key], rel=1e-6)
    assert main(["eval", str(out), "--split", "val"]) == 2  # the backtest is the only split

    lines = ["item_id,timestamp,target"]
    lines += [f"a,2024-01-01 {h:02d}:00:00,{10 + h % 5}" for h in range(24)]
    lines += [f"b,2024-01-02 {h:02d}:00:00,{h}" for h in range(6)]
    lines += [f"c,2024-01-01 {h:02d}:00:00,NA" for h in range(24)]  # no observed value: kept, with a note
    lines += [f"d,2024-01-{day:02d} 00:00:00,{day}" for day in range(1, 8)]  # daily: a row without a forecast
    (tmp_path / "long.csv").write_text("\n".join(lines) + "\n")
    assert main(["predict", str(out), str(tmp_path / "long.csv"), "-o", str(tmp_path / "f.csv")]) == 0
    rows = read_rows(tmp_path / "f.csv")
    assert len(rows) == 3 * 24 + 1 and [r["item_id"] for r in rows[::24]] == ["a", "b", "c", "d"]
    assert rows[-1]["mean"] == "" and rows[-1]["note"].startswith("no forecast: at frequency D, not the run's h")
    rows = rows[:-1]
    assert "no observed value in the last 48 steps" in rows[48]["note"]
    assert rows[0]["timestamp"] == "2024-01-02 00:00:00" and rows[24]["timestamp"] == "2024-01-02 06:00:00"
    for r in rows:
        assert float(r["q0.1"]) <= float(r["q0.5"]) <= float(r["q0.9"])
    assert "shorter" in rows[24]["note"] and "shorter than the context: 2" in capsys.readouterr().err

    entries = [{"start": "2024-01-01 00:00", "target": [1.0, 2.0, None, 4.0], "item_id": "g"}]
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    assert main(["predict", str(out), str(tmp_path / "s.jsonl"), "-o", str(tmp_path / "g.csv")]) == 0
    assert len(read_rows(tmp_path / "g.csv")) == 24
    (tmp_path / "bad.csv").write_text("when,value\n2024-01-01,1\n")
    assert main(["predict", str(out), str(tmp_path / "bad.csv")]) == 2
    assert "no column 'target' (data.target_column)" in capsys.readouterr().err

    assert main(["export", str(out), str(tmp_path / "exported")]) == 0
    exported = MambaPredictor.deserialize(tmp_path / "exported")
    assert exported.prediction_length == 24 and not any("lora" in k for k in exported.model.state_dict())


def test_shipped_forecaster_by_name_and_default(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from mambatune.pipelines.timeseries import tasks as timeseries

    shipped = tmp_path / "pretrained" / "series-mamba-500k"
    monkeypatch.setattr(timeseries, "SHIPPED_SERIES_MODEL", shipped)
    monkeypatch.delenv("MAMBATUNE_SERIES_MODEL", raising=False)
    recipe = SimpleNamespace(model=SimpleNamespace(pretrained="series-mamba-500k"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        timeseries.resolve_pretrained(recipe, tmp_path)
    shipped.mkdir(parents=True)
    (shipped / "model.safetensors").write_bytes(b"")
    assert timeseries.resolve_pretrained(recipe, tmp_path) == str(shipped)
    recipe.model.pretrained = "default"
    assert timeseries.resolve_pretrained(recipe, tmp_path) == str(shipped)
    monkeypatch.setenv("MAMBATUNE_SERIES_MODEL", str(shipped.parent))
    assert timeseries.resolve_pretrained(recipe, tmp_path) == str(shipped.parent)


# -- ensembles -----------------------------------------------------------------------------------

def test_m3_ensemble_pools_members_and_reloads(tmp_path, capsys):
    out = tmp_path / "ens"
    assert main(["run", "timeseries/forecast_m3", f"train.output_dir={out}", *TINY[:3], "data.max_series=4",
                 "data.group=[yearly, other]", "train.max_steps=2", "train.eval_every=1", "data.num_samples=10",
                 "train.progress=false", "data.ensemble=3", "data.ensemble_context_lengths=[12, 24]"]) == 0
    results = json.loads((out / "results.json").read_text())
    name = "mamba from scratch (full, ensemble of 3)"
    assert name in results["test"]
    for group in ("yearly", "other"):
        members = results["training"][group]["members"]
        assert [(m["seed"], m["context_length"]) for m in members] == [(0, 12), (1, 24), (2, 12)]
        assert all(m["steps"] == 2 for m in members)  # each member has the recipe's budget
        # the members differ (seeds), so the ensemble is not any one of them
        assert len({round(m["sMAPE"], 6) for m in members}) == 3
        assert (out / group / "predictor" / "ensemble.json").is_file()
        assert (out / group / "predictor" / "member-2" / "model.safetensors").is_file()
    report = (out / "report.md").read_text()
    assert "### Ensemble members, yearly" in report and "| **ensemble** |" in report

    # eval on the saved run reproduces the run's scores through the serialized ensemble
    assert main(["eval", str(out)]) == 0
    evaluated = json.loads((out / "eval_test.json").read_text())
    assert evaluated["metrics"]["sMAPE"] == pytest.approx(results["test"][name]["sMAPE"], rel=1e-6)


def test_combine_pools_samples_and_averages_quantiles():
    import numpy as np
    import pandas as pd
    from gluonts.model.forecast import QuantileForecast, SampleForecast

    from mambatune.domains.timeseries.ensemble import EnsemblePredictor, combine

    start = pd.Period("2024-01-01 00:00", freq="h")
    a = [SampleForecast(np.zeros((4, 3)), start_date=start, item_id="x")]
    b = [SampleForecast(np.ones((6, 3)), start_date=start, item_id="x")]
    pooled = combine([a, b])
    assert pooled[0].samples.shape == (10, 3) and pooled[0].item_id == "x"
    assert pooled[0].mean[0] == pytest.approx(0.6)  # a mixture with each member's paths

    qa = [QuantileForecast(np.array([[1.0, 1.0], [3.0, 3.0]]), start_date=start, forecast_keys=["0.1", "0.9"])]
    qb = [QuantileForecast(np.array([[3.0, 3.0], [5.0, 5.0]]), start_date=start, forecast_keys=["0.1", "0.9"])]
    averaged = combine([qa, qb])
    assert averaged[0].quantile(0.1)[0] == pytest.approx(2.0) and averaged[0].quantile(0.9)[0] == pytest.approx(4.0)

    with pytest.raises(ValueError, match="different numbers of entries"):
        combine([a, a + b])
    with pytest.raises(ValueError, match="at least one member"):
        EnsemblePredictor([])


def test_ensemble_options_are_checked():
    assert main(["run", "timeseries/forecast_m3", "data.ensemble=0", "--dry-run"]) == 2
    assert main(["run", "timeseries/forecast_m3", "data.ensemble_context_lengths=[12]", "--dry-run"]) == 2
    assert main(["run", "timeseries/forecast_full", "data.ensemble=2", "data.compare_context_lengths=[24, 48]",
                 "data.seasonal_skip=0",
                 "--dry-run"]) == 2


def test_seasonal_skip_season_follows_the_data(tmp_path):
    """``seasonal_skip: season`` (forecast_full's default) is the data's seasonal-naive period: 168 hourly,
    the group's seasonality on M3; a context shorter than it is a clear error."""
    from mambatune.domains.timeseries.ensemble import load_predictor

    tiny = [t for t in TINY if not t.startswith(("data.seasonal_skip", "data.context_length"))]
    out = tmp_path / "h"
    assert main(["run", "timeseries/forecast_full", f"train.output_dir={out}", *tiny, "data.context_length=200"]) == 0
    assert load_predictor(out / "predictor").model.config.seasonal_skip == 168
    out = tmp_path / "m"
    assert main(["run", "timeseries/forecast_full", f"train.output_dir={out}", *tiny, "data.dataset=m3",
                 "data.group=quarterly", "data.prediction_length=null", "data.max_series=4",
                 "data.context_length=16"]) == 0
    assert load_predictor(out / "predictor").model.config.seasonal_skip == 4
    assert main(["run", "timeseries/forecast_full", f"train.output_dir={tmp_path / 'x'}", *tiny,
                 "data.context_length=100"]) == 2
    assert main(["run", "timeseries/forecast_full", "data.seasonal_skip=weekly", "--dry-run"]) == 2


def test_config_yaml_records_the_pretrained_forecaster_as_built(tmp_path, capsys):
    """The model section with a pretrained forecaster: config.yaml says the backbone that was trained (the
    shipped forecaster's 4 layers, not the recipe file's 2), the recipe file's unused shape keys are noted
    there and in the report, and a command-line shape override that contradicts it is a clear error."""
    import yaml

    out = tmp_path / "pre"
    tiny = [a for a in TINY if not a.startswith(("model.config", "data.patch_length", "data.stride"))]
    shipped = ["model.pretrained=series-mamba-500k", "data.patch_length=16", "data.stride=8",
               "data.scratch_baseline=false", "eval.baselines=false"]
    assert main(["run", "timeseries/forecast_lora", f"train.output_dir={out}", *tiny, *shipped]) == 0
    text = (out / "config.yaml").read_text()
    model = yaml.safe_load(text)["model"]
    assert model["config"]["n_layer"] == 4 and model["config"]["d_model"] == 128  # the shipped forecaster's
    assert "# note: model.config.n_layer=2 of the recipe not used: the pretrained model has n_layer=4" in text
    results = json.loads((out / "results.json").read_text())
    assert any("d_model=64 of the recipe not used" in n for n in results["model_notes"])
    assert "## Model" in (out / "report.md").read_text()
    capsys.readouterr()
    assert main(["run", "timeseries/forecast_lora", f"train.output_dir={tmp_path / 'bad'}", *tiny, *shipped,
                 "model.config.n_layer=2"]) == 2
    err = capsys.readouterr().err
    assert "model.config.n_layer=2 contradicts the pretrained model 'series-mamba-500k', which has n_layer=4" in err
    assert not (tmp_path / "bad" / "checkpoints").exists()  # refused before training


def test_config_yaml_records_a_new_forecaster_as_built(tmp_path):
    import yaml

    out = tmp_path / "new"
    assert main(["run", "timeseries/forecast_full", f"train.output_dir={out}", *TINY, "eval.baselines=false",
                 "data.windows=1"]) == 0
    model = yaml.safe_load((out / "config.yaml").read_text())["model"]["config"]
    assert (model["d_model"], model["n_layer"], model["d_state"]) == (8, 1, 4)
    assert model["vocab_size"] == 1 and "expand" in model  # every field of the backbone as built


def test_holiday_covariates_when_fine_tuning_the_shipped_forecaster(tmp_path):
    """LoRA from the shipped forecaster (trained without covariates) with data.holidays=us: the covariate
    maps are added, trained (they start at zero) and saved, and the report names the calendar."""
    out = tmp_path / "hol"
    tiny = [a for a in TINY if not a.startswith(("model.config", "data.patch_length", "data.stride"))]
    assert main(["run", "timeseries/forecast_lora", f"train.output_dir={out}", *tiny, "model.pretrained=series-mamba-500k",
                 "data.patch_length=16", "data.stride=8", "data.holidays=us", "data.scratch_baseline=false",
                 "train.max_steps=3"]) == 0
    saved = json.loads((out / "predictor" / "forecaster.json").read_text())["forecaster"]
    assert saved["holidays"] == "us" and saved["num_dynamic_real"] == 0
    predictor = MambaPredictor.deserialize(out / "predictor")
    state = predictor.model.state_dict()
    assert state["known.weight"].shape[1] == 2 * 16  # two holiday rows × the patch
    assert state["known_direct.weight"].abs().sum() > 0  # started at zero, trained under LoRA
    assert "holiday covariates from the `us` calendar" in (out / "report.md").read_text()
    # predict computes the horizon's holidays itself: the input is just the history
    lines = ["item_id,timestamp,target"] + [f"a,2016-12-23 {h:02d}:00:00,{10 + h % 5}" for h in range(24)]
    (tmp_path / "xmas.csv").write_text("\n".join(lines) + "\n")
    assert main(["predict", str(out), str(tmp_path / "xmas.csv"), "-o", str(tmp_path / "f.csv")]) == 0
    rows = read_rows(tmp_path / "f.csv")
    assert len(rows) == 24 and rows[0]["timestamp"] == "2016-12-24 00:00:00"
    assert main(["run", "timeseries/forecast_full", "data.holidays=uk", "--dry-run"]) == 2
    assert main(["run", "timeseries/forecast_m3", "data.holidays=us", "--dry-run"]) == 2


def long_table(path, steps: int, future: int = 0, seed: int = 0, regions=("north", "south")):
    """Two hourly series driven by a known covariate (``price``), each in a ``region`` (a static column);
    ``future`` extra rows per series with an empty target."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = ["item_id,timestamp,target,price,region"]
    for item, region in zip(("a", "b"), regions):
        price = rng.normal(size=steps + future)
        for t in range(steps + future):
            stamp = f"2024-01-{1 + t // 24:02d} {t % 24:02d}:00:00"
            target = "" if t >= steps else f"{20 - 5 * price[t] + rng.normal() * 0.1:.4f}"
            lines.append(f"{item},{stamp},{target},{price[t]:.4f},{region}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_your_own_series_file_with_covariates(tmp_path, capsys):
    data = long_table(tmp_path / "sales.csv", steps=400)
    out = tmp_path / "own"
    results = run("timeseries/forecast_full", out, f"data.dataset={data}", "data.covariates=[price]",
                  "data.static=[region]", "data.prediction_length=12", "data.max_history=null")
    assert "sales.csv: 2 series at h, covariates price, static region" in results["problem"]
    assert results["static_categories"] == {"region": ["north", "south"]}
    assert set(next(iter(results["per_series"].values()))) >= {"a", "b"}  # a per-series table for a file
    saved = json.loads((out / "predictor" / "forecaster.json").read_text())["forecaster"]
    assert saved["num_dynamic_real"] == 1 and saved["prediction_length"] == 12
    assert saved["static_cardinalities"] == [2]
    # predict: each series ends with 12 rows whose target is empty and whose price is known
    ahead = long_table(tmp_path / "ahead.csv", steps=100, future=12, seed=1)
    assert main(["predict", str(out), str(ahead), "-o", str(tmp_path / "f.csv")]) == 0
    rows = read_rows(tmp_path / "f.csv")
    assert len(rows) == 24 and rows[0]["timestamp"] == "2024-01-05 04:00:00"
    assert main(["predict", str(out), str(long_table(tmp_path / "no_future.csv", steps=100))]) == 2
    assert "end each series with 12 rows" in capsys.readouterr().err
    swapped = long_table(tmp_path / "swapped.csv", steps=100, future=12, regions=("south", "north"))
    assert main(["predict", str(out), str(swapped), "-o", str(tmp_path / "s.csv")]) == 0  # codes by value
    unseen = long_table(tmp_path / "unseen.csv", steps=100, future=12, regions=("north", "east"))
    assert main(["predict", str(out), str(unseen)]) == 2
    assert "'east', a category not seen in training" in capsys.readouterr().err
    # errors that name the fix
    assert main(["run", "timeseries/forecast_full", f"data.dataset={data}", "data.covariates=[cost]",
                 f"train.output_dir={tmp_path / 'x'}", *TINY, "data.prediction_length=12"]) == 2
    assert main(["run", "timeseries/forecast_full", f"data.dataset={tmp_path / 'missing.csv'}", "--dry-run"]) == 2
    assert main(["run", "timeseries/forecast_full", "data.covariates=[price]", "--dry-run"]) == 2


def test_your_own_series_as_gluonts_json_lines(tmp_path):
    entries = [{"start": "2024-01-01 00:00", "target": [float(10 + (t % 24)) for t in range(300)], "item_id": "x"}]
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    assert main(["run", "timeseries/forecast_full", f"data.dataset={tmp_path / 's.jsonl'}", "--dry-run"]) == 0
    assert main(["run", "timeseries/forecast_full", f"data.dataset={tmp_path / 's.jsonl'}",
                 f"train.output_dir={tmp_path / 'j0'}", *TINY]) == 2  # JSON lines need data.freq
    results = run("timeseries/forecast_full", tmp_path / "j", f"data.dataset={tmp_path / 's.jsonl'}", "data.freq=h",
                  "data.max_history=null")
    assert "s.jsonl: 1 series at h" in results["problem"]
