"""Every TrainConfig value is range-checked, and the message gives the allowed range."""
import dataclasses

import pytest

from mambatune.core.training import TrainConfig

CHOICES = {"precision", "distributed", "nonfinite"}  # checked against their lists in TrainConfig


@pytest.mark.parametrize("key, value, expected", [
    ("lr", float("inf"), r"lr must be a finite number in \(0, 10\], got inf"),
    ("lr", float("nan"), r"lr must be a finite number in \(0, 10\], got nan"),
    ("lr", 0.0, r"lr must be a finite number in \(0, 10\]"),
    ("warmup_ratio", 5.0, r"warmup_ratio must be a finite number in \[0, 1\], got 5"),
    ("weight_decay", -3.0, r"weight_decay must be a finite number in \[0, 10\], got -3"),
    ("eval_every", -5, r"eval_every must be an integer in \[0, 1e9\] \(0: evaluate at the end only\), got -5"),
    ("keep_last", -1, r"keep_last must be an integer in \[0, 1e6\] \(0: keep every checkpoint\), got -1"),
    ("max_grad_norm", -1.0, r"max_grad_norm must be a finite number in \[0, 1e6\] \(0: no clipping\), got -1"),
    ("log_every", 0, r"log_every must be an integer in \[1, 1e9\], got 0"),
    ("batch_size", 10**12, r"batch_size must be an integer in \[1, 1048576\], got 1000000000000"),
    ("max_steps", 0, r"max_steps must be an integer in \[1, 1e9\] or null \(null: epochs decide\), got 0"),
    ("betas", [0.9, 1.5], r"betas must be two numbers in \[0, 1\), got \[0.9, 1.5\]"),
    ("seed", -1, r"seed must be an integer"),
    ("progress", "yes", r"progress must be true or false, got 'yes'"),
    ("monitor_layers", [-1], r"monitor_layers must be a list of integers >= 0 or null"),
    ("max_nonfinite_skips", 0, r"max_nonfinite_skips must be an integer in \[1, 1e6\]"),
    ("nonfinite", "ignore", r"nonfinite must be one of"),
])
def test_bad_values_name_the_range(key, value, expected):
    with pytest.raises(ValueError, match=expected):
        TrainConfig(**{key: value})


def test_every_field_has_a_rule():
    from mambatune.core.training.ranges import RULES

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert names - set(RULES) - CHOICES == set()


def test_edges_that_are_allowed():
    TrainConfig(warmup_ratio=0.0, weight_decay=0.0, eval_every=0, keep_last=0, max_grad_norm=0.0, max_steps=None,
                warmup_steps=0, early_stopping_patience=0, monitor_every=0, lr=10.0)
