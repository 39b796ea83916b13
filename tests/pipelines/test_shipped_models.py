"""The pretrained models shipped in the package: present, small, resolvable by name and by
``default``, and better than a uniform model on held-out data (so the weights are real)."""
import json
import math

import pytest
import torch

from mambatune.core.checkpoints import load_pretrained
from mambatune.pipelines import documents, genomics

SHIPPED = [
    (genomics.SHIPPED_DNA_MODEL.parent, ["dna-mamba-120k", "dna-mamba-1m"]),
    (documents.SHIPPED_TEXT_MODEL.parent, ["text-mamba-140k", "text-mamba-1m"]),
]


@pytest.mark.parametrize("folder,names", SHIPPED)
def test_shipped_folders_hold_weights_recipe_and_log(folder, names):
    for name in names:
        d = folder / name
        for f in ("model.safetensors", "config.json", "recipe.yaml", "metrics.jsonl", "results.json", "report.md"):
            assert (d / f).is_file(), f"{d / f} missing"
        assert (d / "model.safetensors").stat().st_size <= 20 * 2**20
        model = load_pretrained(d)
        assert sum(p.numel() for p in model.parameters()) <= 5_000_000
        log = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        evals = [r["eval/loss"] for r in log if "eval/loss" in r]
        assert len(evals) >= 3 and evals[-1] < evals[0]  # the log shows it learned


def test_names_and_default_resolve(monkeypatch):
    monkeypatch.delenv("MAMBATUNE_DNA_MODEL", raising=False)
    monkeypatch.delenv("MAMBATUNE_TEXT_MODEL", raising=False)
    assert genomics.resolve_pretrained("default") == str(genomics.SHIPPED_DNA_MODEL)
    assert genomics.resolve_pretrained("dna-mamba-1m").endswith("dna-mamba-1m")
    assert documents.resolve_pretrained("default") == str(documents.SHIPPED_TEXT_MODEL)
    monkeypatch.setenv("MAMBATUNE_DNA_MODEL", "/nowhere/model")
    with pytest.raises(FileNotFoundError, match="dna-mamba-120k, dna-mamba-1m"):
        genomics.resolve_pretrained("default")


def test_shipped_dna_model_beats_uniform_on_held_out_windows():
    from mambatune.domains.genomics import DNATokenizer, load_promoters
    from mambatune.domains.genomics.sequence_data import DNAWindowDataset
    from mambatune.pipelines.genomics.models import lm_loss

    seqs = load_promoters("multiclass", "test")["sequence"].to_list()[:8]
    model = load_pretrained(genomics.SHIPPED_DNA_MODEL)
    nats = lm_loss(model, DNAWindowDataset(seqs, tokenizer=DNATokenizer(), lm=True), batch_size=8)
    assert nats / math.log(2) < 1.9  # uniform: 2 bits per base; the shipped log says 1.77 on the test split


def test_shipped_text_model_beats_unigram_on_test_licences():
    from mambatune.domains.documents import ByteTokenizer

    texts = documents.load_splits(documents.DataConfig(max_length=None))["test"].texts[:4]
    tok = ByteTokenizer()
    model = load_pretrained(documents.SHIPPED_TEXT_MODEL).eval()
    with torch.no_grad():
        losses = [float(model(input_ids=ids, labels=ids).loss)
                  for ids in (torch.tensor([tok.encode(t)[:1024]]) for t in texts)]
    assert sum(losses) / len(losses) / math.log(2) < 3.0  # unigram: 4.85 bits per byte; the shipped log: 1.52


def test_shipped_forecaster_loads_and_its_log_shows_it_beat_seasonal_naive():
    from mambatune.domains.timeseries.module import load_forecaster
    from mambatune.pipelines import timeseries

    d = timeseries.SHIPPED_SERIES_MODEL
    for f in ("model.safetensors", "forecaster.json", "recipe.yaml", "metrics.jsonl", "results.json", "report.md"):
        assert (d / f).is_file(), f"{d / f} missing"
    model = load_forecaster(d)
    assert sum(p.numel() for p in model.parameters()) <= 5_000_000
    test = json.loads((d / "results.json").read_text())["test"]
    ours = next(v for k, v in test.items() if k.startswith("mamba"))
    naive = next(v for k, v in test.items() if k.startswith("seasonal naive"))
    assert math.isfinite(ours["MASE"]) and ours["MASE"] < naive["MASE"]
