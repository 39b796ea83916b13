"""The generic pipeline (``pipeline: sequence_classification``; recipes in ``recipes/generic/``): a classifier
over a user's table of sequences or texts and labels, with the tokenizer a pretrained model carries.

- ``text_tokenizer``: byte, character and DNA tokenizers, and the one a checkpoint's ``tokenizer.json`` names;
- ``pipeline``: the recipe's ``data`` section (:class:`DataConfig`), :func:`run` and the verbs
  (``eval`` / ``predict`` / ``export``) on a finished run.

This module exports what :mod:`mambatune.pipelines.registry` checks (the Pipeline interface) and the
finished run's model loader.
"""
from .pipeline import DataConfig, evaluate, export, load_trained, predict, read_inputs, resolve_pretrained, run

__all__ = ["DataConfig", "evaluate", "export", "load_trained", "predict", "read_inputs", "resolve_pretrained", "run"]
