import csv
import random
from pathlib import Path

import pytest
import yaml

WORDS = {"dna": "ACGT", "text": "abcdefgh"}


def write_demo_csv(path: Path, n: int = 48) -> Path:
    """Two classes told apart by their alphabet."""
    rng = random.Random(0)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(n):
            label = "dna" if i % 2 else "text"
            w.writerow(["".join(rng.choice(WORDS[label]) for _ in range(rng.randint(8, 24))), label])
    return path


def tiny_recipe(tmp_path: Path, method: str = "lora") -> Path:
    data = write_demo_csv(tmp_path / "demo.csv")
    peft = {"methods": [{"method": "lora", "targets": ["in_proj"], "rank": 2}]} if method == "lora" else {"methods": []}
    recipe = {
        "pipeline": "sequence_classification",
        "name": "tiny",
        "model": {"config": {"d_model": 8, "n_layer": 1, "d_state": 4}, "head": {"kind": "classification"}},
        "data": {"path": str(data), "tokenizer": "char", "max_length": 24, "val_fraction": 0.2, "test_fraction": 0.2},
        "peft": peft,
        "train": {"output_dir": str(tmp_path / "run"), "epochs": 2, "batch_size": 8, "lr": 5e-3, "eval_every": 2,
                  "log_every": 1, "progress": False, "monitor_every": 2},
        "eval": {"baselines": True},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text("# mambatune run tiny.yaml\n" + yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished tiny LoRA run, made through the CLI."""
    from mambatune.pipelines.cli import main
    tmp = tmp_path_factory.mktemp("cli")
    recipe = tiny_recipe(tmp)
    assert main(["run", str(recipe)]) == 0
    return tmp / "run"
