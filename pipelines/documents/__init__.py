"""The documents pipeline: long-document classification and byte-level LM pretraining.

What ``pipelines.registry`` checks (``DataConfig``, ``run``, ``evaluate``, ``read_inputs``, ``predict``,
``export``) and what other modules read from it (``SHIPPED_TEXT_MODEL``). The modules, each importing
only those above it:

- ``config``: the recipe's ``data`` section (:class:`DataConfig`);
- ``columns``, ``files``: a user's table (or folder of text files + label table) into text / label / id;
- ``data``: the built-in licences or the user's files, split into train / val / test;
- ``models``: the base model a recipe names and the classifier built on it;
- ``scores``: metrics of one classifier or an ensemble, the LM loss, ``predictions_test.csv``;
- ``report``: report.md;
- ``tasks``: ``classify`` and ``pretrain_text``, and :func:`run`;
- ``verbs``: ``mambatune eval / predict / export`` on a finished run;
- ``ensemble``: ``mambatune ensemble`` (finished runs combined).
"""
from __future__ import annotations

from .config import TASKS, DataConfig
from .data import load_data, load_splits, make_tokenizer
from .models import DEFAULT_TEXT_MODEL, SHIPPED_TEXT_MODEL, resolve_pretrained
from .tasks import run
from .verbs import evaluate, export, predict, read_inputs

__all__ = ["DataConfig", "DEFAULT_TEXT_MODEL", "SHIPPED_TEXT_MODEL", "TASKS", "evaluate", "export", "load_data",
           "load_splits", "make_tokenizer", "predict", "read_inputs", "resolve_pretrained", "run"]
