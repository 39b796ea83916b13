"""`mambatune ensemble` on time-series runs: separate seed runs combined equal a data.ensemble run with
the same members; competition runs per group; eval / predict on the result; clear errors."""
import json

import pytest
import yaml

from mambatune.pipelines.cli import main

TINY = ["data.seasonal_skip=0", "model.config.d_model=8", "model.config.n_layer=1", "model.config.d_state=4",
        "data.context_length=48", "data.max_history=1500", "data.patch_length=8", "data.stride=4", "data.windows=2",
        "data.max_train_windows=32", "data.num_samples=10", "data.fan_charts=0", "train.batch_size=8",
        "train.max_steps=2", "train.eval_every=1", "train.log_every=1", "train.progress=false"]
M3 = ["timeseries/forecast_m3", *TINY[:4], "data.max_series=3", "data.group=[yearly, other]", "train.max_steps=2",
      "train.eval_every=1", "data.num_samples=10", "train.progress=false", "eval.baselines=false"]


def run(out, *extra) -> dict:
    assert main(["run", "timeseries/forecast_full", f"train.output_dir={out}", *TINY, *extra]) == 0
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ts_ens")
    seeds = [base / f"seed{s}" for s in (0, 1)]
    for s, out in enumerate(seeds):  # a data.ensemble member k has model.seed + k and train.seed + k
        run(out, f"model.seed={s}", f"train.seed={s}")
    together = base / "together"
    run(together, "data.ensemble=2")
    return seeds, together


def test_combined_runs_equal_a_data_ensemble_run(runs, tmp_path):
    seeds, together = runs
    out = tmp_path / "ens"
    assert main(["ensemble", *map(str, seeds), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    names = list(results["test"])
    assert names[0] == "mamba from scratch (full), ensemble of 2" and names[1:3] == ["mamba member 0", "mamba member 1"]
    assert {"seasonal naive (season 168)", "Theta (season 168)"} <= set(results["baselines"])
    reference = json.loads((together / "results.json").read_text())
    ensemble = reference["test"][next(iter(reference["test"]))]
    for key in ("MASE", "sMAPE", "wQL"):  # the same members, seeds and sample seeds: the same pooled forecast
        assert results["test"][names[0]][key] == pytest.approx(ensemble[key], rel=1e-6), key
    for k, member in enumerate(reference["training"]["members"]):
        assert results["test"][f"mamba member {k}"]["MASE"] == pytest.approx(member["MASE"], rel=1e-6)
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["ensemble"] == 2
    assert (out / "predictor" / "ensemble.json").is_file()
    report = (out / "report.md").read_text()
    assert "copied from" in report and "| **ensemble** |" in report

    assert main(["eval", str(out)]) == 0  # the saved ensemble reproduces its scores
    evaluated = json.loads((out / "eval_test.json").read_text())
    assert evaluated["metrics"]["MASE"] == pytest.approx(results["test"][names[0]]["MASE"], rel=1e-6)


def test_an_ensemble_run_contributes_its_members(runs, tmp_path, capsys):
    seeds, together = runs
    out = tmp_path / "three"
    assert main(["ensemble", str(together), str(seeds[1]), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["ensemble"]["size"] == 3 and next(iter(results["test"])) == "mamba from scratch (full), ensemble of 3"
    assert [m["seed"] for m in results["ensemble"]["members"]] == [0, 1, 1]
    assert "may be the same forecaster counted twice" in capsys.readouterr().err


def test_a_folder_made_by_the_verb_can_be_combined_again(runs, tmp_path, capsys):
    """Its member rows are members (by name), not baselines, and its seeds come from its ensemble.json."""
    seeds, together = runs
    first = tmp_path / "first"
    assert main(["ensemble", *map(str, seeds), "--out", str(first)]) == 0
    again = tmp_path / "again"
    assert main(["ensemble", str(first), str(together), "--out", str(again)]) == 0
    results = json.loads((again / "results.json").read_text())
    assert results["ensemble"]["size"] == 4 and next(iter(results["test"])) == "mamba from scratch (full), ensemble of 4"
    assert [m["seed"] for m in results["ensemble"]["members"]] == [0, 1, 0, 1]
    assert not any("member" in name for name in results["baselines"]), results["baselines"]
    assert {"seasonal naive (season 168)", "Theta (season 168)"} <= set(results["baselines"])
    assert [f"mamba member {k}" for k in range(4)] == [n for n in results["test"] if "member" in n]
    assert main(["eval", str(again)]) == 0
    evaluated = json.loads((again / "eval_test.json").read_text())
    assert evaluated["metrics"]["MASE"] == pytest.approx(results["test"][next(iter(results["test"]))]["MASE"], rel=1e-6)


def test_competition_runs_are_combined_per_group(tmp_path):
    outs = [tmp_path / f"m3_{s}" for s in (0, 1)]
    for s, out in enumerate(outs):
        assert main(["run", *M3, f"train.output_dir={out}", f"model.seed={s}", f"train.seed={s}"]) == 0
    out = tmp_path / "m3_ens"
    assert main(["ensemble", *map(str, outs), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    for scores in results["scores"].values():
        assert list(scores) == ["yearly", "other", "all"] and scores["all"]["series"] == 6
    for group in ("yearly", "other"):
        assert (out / group / "predictor" / "member-1" / "model.safetensors").is_file()
    assert "| mamba member 1 |" in (out / "report.md").read_text()
    assert main(["eval", str(out)]) == 0
    evaluated = json.loads((out / "eval_test.json").read_text())
    name = next(iter(results["test"]))
    assert evaluated["metrics"]["sMAPE"] == pytest.approx(results["test"][name]["sMAPE"], rel=1e-6)


def test_bad_combinations_are_clear_errors(runs, tmp_path, capsys):
    seeds, _ = runs
    other = tmp_path / "h12"
    run(other, "data.prediction_length=12", "eval.baselines=false")
    assert main(["ensemble", str(seeds[0]), str(other), "--out", str(tmp_path / "x")]) == 2
    assert "data.prediction_length" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["ensemble", str(seeds[0]), str(seeds[0]), "--out", str(tmp_path / "y")]) == 2
    assert "given twice" in capsys.readouterr().err
    assert main(["ensemble", str(seeds[0]), "--out", str(tmp_path / "z")]) == 2
    assert "at least two forecasters" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f.txt").write_text("x")
    assert main(["ensemble", *map(str, seeds), "--out", str(tmp_path / "full")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
