"""The genomics pipeline (``pipeline: genomics``): promoter classification, variant-effect prediction
(zero-shot and supervised), DNA LM pretraining, and the same tasks on a user's files (``data.path``).

The package is layered, each module importing only those above it in this list:

- ``config``: the recipe's ``data`` section (:class:`DataConfig`);
- ``windows``, ``data``: the demo tasks' windows (promoter, variants, LM pretraining), per split;
- ``user_data``: a user's sequences, labels and splits;
- ``models``: the base model and the models built on it, how a trained one is saved and recorded, and
  the scoring helpers every task shares;
- ``report``, ``members``: report.md, and the model (or ``data.ensemble`` members) trained for a task;
- ``user_tasks``, ``user_vep``, ``tasks``: the tasks on a user's sequences, on a user's VCF, and the demo
  tasks with :func:`run`, the entry point;
- ``scoring``, ``inputs``: a finished run's models rebuilt and scored; what ``predict`` reads;
- ``user_verbs``, ``verbs``: ``eval`` / ``predict`` / ``export`` on a finished run;
- ``ensemble``: ``mambatune ensemble`` (finished runs combined).
"""
from .config import DataConfig
from .inputs import read_inputs
from .models import SHIPPED_DNA_MODEL, resolve_pretrained
from .tasks import run
from .verbs import evaluate, export, predict

__all__ = ["DataConfig", "SHIPPED_DNA_MODEL", "evaluate", "export", "predict", "read_inputs", "resolve_pretrained",
           "run"]
