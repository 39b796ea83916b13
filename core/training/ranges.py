"""The allowed range of every ``TrainConfig`` value, checked on construction.

Each rule gives the kind (int / number / bool / str / choice), the bounds, whether ``None``
(a recipe's ``null``) is allowed and what 0 or null mean, so an error says exactly what
would have been accepted: ``lr must be a finite number in (0, 10], got inf``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

BIG = 10**9  # a bound on counts (steps, epochs) that no real run reaches, and that keeps arithmetic exact


@dataclass(frozen=True)
class Rule:
    kind: str  # "int", "number", "bool", "str", "choice", "int_list", "betas"
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # (low, ...] instead of [low, ...]
    nullable: bool = False
    note: str = ""  # what 0 / null mean
    choices: tuple = ()

    def describe(self) -> str:
        if self.kind == "bool":
            text = "true or false"
        elif self.kind == "str":
            text = "a non-empty string"
        elif self.kind == "choice":
            text = "one of " + ", ".join(map(str, self.choices))
        elif self.kind == "int_list":
            text = "a list of integers >= 0"
        elif self.kind == "betas":
            text = "two numbers in [0, 1)"
        else:
            what = "an integer" if self.kind == "int" else "a finite number"
            left = "(" if self.low_open else "["
            text = f"{what} in {left}{fmt(self.low)}, {fmt(self.high)}]"
        if self.nullable:
            text += " or null"
        return text + (f" ({self.note})" if self.note else "")


def fmt(x: float) -> str:
    if x is None:
        return "inf"
    if isinstance(x, int):
        exp = len(str(x)) - 1
        return f"1e{exp}" if x >= 10**6 and x == 10**exp else str(x)
    return f"{x:g}"


def count(low: int = 1, high: int = BIG, note: str = "", nullable: bool = False) -> Rule:
    return Rule("int", low, high, nullable=nullable, note=note)


def number(low: float, high: float | None, low_open: bool = False, note: str = "", nullable: bool = False) -> Rule:
    return Rule("number", low, high, low_open=low_open, nullable=nullable, note=note)


BOOL = Rule("bool")

RULES: dict[str, Rule] = {
    "output_dir": Rule("str"),
    "epochs": count(1, 10**6),
    "max_steps": count(nullable=True, note="null: epochs decide"),
    "max_minutes": number(0, 10**7, low_open=True, nullable=True, note="null: no time limit"),
    "batch_size": count(1, 2**20),
    "eval_batch_size": count(1, 2**20, nullable=True, note="null: batch_size"),
    "grad_accum": count(1, 2**16),
    "lr": number(0, 10, low_open=True),
    "betas": Rule("betas"),
    "weight_decay": number(0, 10),
    "eps": number(0, 1, low_open=True),
    "warmup_steps": count(0, nullable=True, note="null: warmup_ratio decides"),
    "warmup_ratio": number(0, 1),
    "min_lr_ratio": number(0, 1),
    "max_grad_norm": number(0, 10**6, note="0: no clipping"),
    "compile": BOOL,
    "gradient_checkpointing": BOOL,
    "offload_checkpoints": BOOL,
    "eval_every": count(0, note="0: evaluate at the end only"),
    "save_every": count(0, note="0: save at evaluations and at the end"),
    "keep_last": count(0, 10**6, note="0: keep every checkpoint"),
    "metric_for_best": Rule("str"),
    "greater_is_better": Rule("bool", nullable=True, note="null: from the metric's name"),
    "early_stopping_patience": count(0, 10**6, note="0: no early stopping"),
    "early_stopping_min_delta": number(0, None),
    "load_best_at_end": BOOL,
    "resume": BOOL,
    "resume_force": BOOL,
    "seed": count(0, 2**32 - 1),
    "log_every": count(1),
    "monitor_every": count(0, note="0: no monitoring"),
    "monitor_layers": Rule("int_list", nullable=True, note="null: first, middle and last"),
    "progress": BOOL,
    "tensorboard": BOOL,
    "plots": BOOL,
    "num_workers": count(0, 1024),
    "device": Rule("str"),
    "max_nonfinite_skips": count(1, 10**6),
    "tf32": BOOL,
}


def check_value(name: str, value: Any, rule: Rule) -> str | None:
    """Why ``value`` breaks ``rule`` (None when it does not)."""
    if value is None:
        return None if rule.nullable else "is required"
    if rule.kind == "bool":
        return None if isinstance(value, bool) else "is not true/false"
    if rule.kind == "str":
        return None if isinstance(value, str) and value.strip() else "is not a non-empty string"
    if rule.kind == "choice":
        return None if value in rule.choices else "is not allowed"
    if rule.kind == "int_list":
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                      for v in value)
        return None if ok else "is not a list of integers >= 0"
    if rule.kind == "betas":
        ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v < 1 for v in value)
        return None if ok else "is not two numbers in [0, 1)"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "is not a number"
    if rule.kind == "int" and not isinstance(value, int):
        return "is not an integer"
    if not math.isfinite(value):
        return "is not finite"
    if rule.low is not None and (value <= rule.low if rule.low_open else value < rule.low):
        return "is too small"
    if rule.high is not None and value > rule.high:
        return "is too large"
    return None


def check_ranges(config, rules: dict[str, Rule] | None = None) -> None:
    """Raises ValueError for the first field of the dataclass ``config`` outside its rule, saying the range."""
    rules = RULES if rules is None else rules
    for f in dataclasses.fields(config):
        rule = rules.get(f.name)
        if rule is None:
            continue
        value = getattr(config, f.name)
        if check_value(f.name, value, rule) is not None:
            raise ValueError(f"{f.name} must be {rule.describe()}, got {value!r}")
