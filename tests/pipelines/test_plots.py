"""Every PNG a run writes says what it shows: a title with the run (scratch twin and ensemble member told
apart) and its model, readable axis labels, legends beside the data; and a run compares our model with the
same-run baselines in plots/comparison.png. The PNGs carry their text (figures.save_figure), read back here."""
import json
import re
import shutil

import numpy as np
import pytest

from mambatune.core.training.figures import figure_text, metric_label, run_model_text
from mambatune.pipelines import domain_run

RAW_KEY = re.compile(r"\b(eval|train)/|_f1\b|\bauroc\b|\bauprc\b")


def check_figure(path, *must_mention):
    """The PNG's heading names everything in ``must_mention``; every axes has readable labels; a legend
    sits outside the data."""
    text = figure_text(path)
    assert text, f"{path.name} was not written by figures.save_figure"
    for word in must_mention:
        assert word in text["title"], f"{path.name}: {word!r} not in its title {text['title']!r}"
    for ax in text["axes"]:
        assert ax["title"], f"{path.name}: an axes has no title"
        assert ax["xlabel"] and ax["ylabel"] or ax["xlabel"].endswith("is better)"), f"{path.name}: unlabelled axis"
        for label in (ax["xlabel"], ax["ylabel"]):
            assert not RAW_KEY.search(label), f"{path.name}: raw key in the axis label {label!r}"
        if ax["legend"]:
            assert ax["legend_outside"], f"{path.name}: the legend sits over the data"
    return text


def test_metric_labels_are_readable():
    assert metric_label("eval/auroc") == "AUROC (validation)"
    assert metric_label("train/loss") == "loss (training)"
    assert metric_label("macro_f1") == "macro-F1"
    assert metric_label("some_new_metric") == "some new metric"


def test_every_png_of_a_run_is_titled_with_the_run_and_its_model(finished_run):
    pngs = sorted((finished_run / "plots").glob("*.png"))
    assert {"loss.png", "eval_auroc.png", "eval_macro_f1.png", "comparison.png"} <= {p.name for p in pngs}
    assert "![comparison](plots/comparison.png)" in (finished_run / "report.md").read_text()  # the report shows it
    for png in pngs:
        text = check_figure(png, finished_run.name, "LoRA", "parameters")
        assert "new model" in text["title"]
    loss = figure_text(finished_run / "plots" / "loss.png")["axes"][0]
    assert loss["legend"] == ["loss (training)", "loss (validation)"] and loss["xlabel"] == "optimizer step"
    assert figure_text(finished_run / "plots" / "eval_auroc.png")["axes"][0]["ylabel"] == "AUROC (validation)"


def test_comparison_figure_from_the_report_tail(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    results = json.loads((run / "results.json").read_text())
    tail = domain_run.report_tail(run, results, None, "no training line")
    assert "plots/comparison.png" in tail
    text = check_figure(run / "plots" / "comparison.png", "baselines", run.name, "LoRA")
    shown = {ax["title"] for ax in text["axes"]}
    assert {"AUROC", "accuracy"} <= shown and all("higher is better" in ax["xlabel"] for ax in text["axes"])


def test_comparison_figure_draws_intervals_and_our_model_first(tmp_path):
    from mambatune.pipelines.comparison_figure import plot_comparison

    results = {"test": {"mamba (dna-mamba-120k)": {"auroc": 0.77, "auroc_ci": [0.68, 0.85], "n": 300},
                        "mamba from scratch": {"auroc": 0.75, "auroc_ci": [0.65, 0.84], "n": 300},
                        "kmer6_logreg": {"auroc": 0.81, "auroc_ci": [0.72, 0.88], "n": 300}}}
    (tmp_path / "promoter_full").mkdir()
    path = plot_comparison(tmp_path / "promoter_full", results, name="promoter_full")
    text = check_figure(path, "promoter_full", "95 % intervals")
    assert [ax["title"] for ax in text["axes"]] == ["AUROC"]
    assert plot_comparison(tmp_path / "promoter_full", {"test": {"mamba": {"auroc": 0.7}}}) is None  # nothing to compare


def test_roc_pr_confusion_and_forecast_figures(finished_run, tmp_path):
    import pandas as pd
    from gluonts.model.forecast import SampleForecast

    from mambatune.domains.documents.metrics import save_confusion_matrix
    from mambatune.domains.genomics.metrics import plot_roc_pr
    from mambatune.domains.timeseries.evaluation import fan_charts

    run = tmp_path / "promoter_lora"
    run.mkdir()
    shutil.copy(finished_run / "metrics.jsonl", run / "metrics.jsonl")  # what the Trainer recorded of its model
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    scores = {"mamba": y * 0.6 + rng.random(200) * 0.5, "kmer6_logreg": rng.random(200)}
    for path in plot_roc_pr(y, scores, run / "plots", title="promoter_lora"):
        text = check_figure(path, "promoter_lora", "LoRA")
        assert any(label.startswith("mamba (AU") for label in text["axes"][0]["legend"])
    path = save_confusion_matrix([[5, 1], [2, 7]], ["GPL", "MIT"], run / "plots" / "confusion_mamba.png",
                                 title="mamba: test confusion matrix")
    text = check_figure(path, "promoter_lora", "LoRA")
    assert text["axes"][0]["xlabel"] == "predicted class" and text["axes"][0]["ylabel"] == "true class"
    start = pd.Period("2024-01-01 00:00", freq="h")
    forecast = SampleForecast(rng.normal(size=(20, 6)), start_date=start, item_id="A")
    history = {"target": rng.normal(size=30), "start": start - 30}
    (path,) = fan_charts([forecast], [(history, {"target": rng.normal(size=6)})], run / "plots", title="promoter_lora")
    text = check_figure(path, "promoter_lora", "LoRA")
    assert "median forecast" in text["axes"][0]["legend"]


def test_scratch_twin_and_ensemble_member_are_told_apart(tmp_path, fast_model_run):
    twin = fast_model_run(tmp_path / "promoter_full" / "scratch")
    member = fast_model_run(tmp_path / "license_full" / "member-1")
    twin_title = check_figure(twin / "plots" / "loss.png", "promoter_full", "scratch twin")["title"]
    member_title = check_figure(member / "plots" / "loss.png", "license_full", "ensemble member 1")["title"]
    assert twin_title != member_title
    assert run_model_text(tmp_path / "license_full").startswith("ensemble of 1 × new model")


def test_progress_bars_name_the_scratch_twin(tmp_path, fast_model_run, capsys):
    fast_model_run(tmp_path / "promoter_full" / "scratch", progress=True, eval_every=2)
    err = capsys.readouterr().err
    assert "train (scratch twin)" in err and "validation (scratch twin)" in err


@pytest.fixture
def fast_model_run():
    """Trains the engine's tiny model into a folder, as a pipeline does its twin or members."""
    import torch

    from mambatune.core import MambaConfig, MambaForTask, build_head
    from mambatune.core.training import Trainer, TrainConfig

    def run(folder, progress=False, eval_every=0):
        torch.manual_seed(0)
        model = MambaForTask(MambaConfig(d_model=8, n_layer=1, vocab_size=16, d_state=4, backend="chunked"),
                             build_head("classification", 8, num_labels=2))
        g = torch.Generator().manual_seed(1)
        x = torch.randint(1, 16, (32, 8), generator=g)
        data = [{"input_ids": x[i], "labels": (x[i, 0] > 8).long()} for i in range(32)]
        collate = lambda b: {"input_ids": torch.stack([e["input_ids"] for e in b]),  # noqa: E731
                             "labels": torch.stack([e["labels"] for e in b])}
        cfg = TrainConfig(output_dir=str(folder), epochs=1, batch_size=8, progress=progress, log_every=1,
                          eval_every=eval_every, eval_batch_size=4, monitor_every=0)
        Trainer(model, cfg, data, data[:16], collate).train()
        return folder

    return run
