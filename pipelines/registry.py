"""The pipelines a recipe can name, and the interface each one implements.

A pipeline is a module of ``mambatune.pipelines`` that provides :class:`Pipeline`'s members:
its recipe's ``DataConfig`` (a dataclass, for table-based domains a subclass of
``data_source.DataSource``), ``run`` (recipe -> run folder) and the verbs the CLI calls on a
finished run (``evaluate``, ``read_inputs``, ``predict``, ``export``). Pipelines are imported
only when a recipe names them, here and nowhere else; :func:`get` checks that the module
implements the interface, so a pipeline missing a member fails with its name, not deep inside
a verb.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Pipeline(Protocol):
    """What every pipeline module provides."""

    DataConfig: type

    def run(self, recipe) -> Path:
        """Trains / evaluates as the recipe says and writes the run folder; returns it."""

    def evaluate(self, run_dir, split: str | None = None) -> dict:
        """Scores a finished run on one of its splits."""

    def read_inputs(self, source: str, recipe, **options) -> Any:
        """The inputs of ``mambatune predict`` read from a file (or a literal), as ``predict`` takes them."""

    def predict(self, run_dir, inputs) -> list[dict]:
        """One row per input, with a note where an input could not be scored."""

    def export(self, run_dir, out) -> Path:
        """A standalone model folder made from a finished run."""


@dataclass(frozen=True)
class Entry:
    module: str                          # the module that implements Pipeline
    ensemble: str | None = None          # the module whose combine_runs joins finished runs into an ensemble
    ensemble_metrics: tuple[str, ...] = ()  # what `mambatune ensemble` prints
    predict_options: tuple[str, ...] = ()   # options of `mambatune predict` passed to read_inputs


PIPELINES: dict[str, Entry] = {
    "sequence_classification": Entry("mambatune.pipelines.generic"),
    "genomics": Entry("mambatune.pipelines.genomics", "mambatune.pipelines.genomics.ensemble",
                      ("auroc", "auprc", "accuracy", "macro_f1", "auroc_macro", "f1_micro", "pearson", "r2"),
                      ("genome",)),
    "documents": Entry("mambatune.pipelines.documents", "mambatune.pipelines.documents.ensemble",
                       ("accuracy", "micro_f1", "macro_f1"), ("text_column", "id_column")),
    "timeseries": Entry("mambatune.pipelines.timeseries", "mambatune.pipelines.timeseries.ensemble",
                        ("MASE", "sMAPE", "wQL")),
}


class PipelineError(ValueError):
    """An unknown pipeline, or a module that does not implement the interface."""


def entry(name: str) -> Entry:
    if name not in PIPELINES:
        import difflib
        close = difflib.get_close_matches(str(name), list(PIPELINES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known pipelines: {', '.join(PIPELINES)}"
        raise PipelineError(f"unknown pipeline {name!r}{hint}")
    return PIPELINES[name]


def get(name: str) -> ModuleType:
    """The pipeline module ``name``, checked against :class:`Pipeline`."""
    module = importlib.import_module(entry(name).module)
    missing = [m for m in ("DataConfig", "run", "evaluate", "read_inputs", "predict", "export")
               if not hasattr(module, m)]
    if missing:
        raise PipelineError(f"pipeline {name!r} ({module.__name__}) does not implement {', '.join(missing)}")
    return module


def ensemble_module(name: str) -> ModuleType:
    """The module whose ``combine_runs`` joins finished runs of pipeline ``name``."""
    e = entry(name)
    if e.ensemble is None:
        raise PipelineError(f"mambatune ensemble combines documents classify, genomics promoter / vep or time-series "
                            f"forecast runs; {name} runs have no ensemble")
    return importlib.import_module(e.ensemble)
