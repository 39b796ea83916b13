"""A documents recipe's ``data`` section: :class:`DataConfig` (what every key means is in its docstring).

The lowest layer of the documents pipeline: it imports nothing of the package, and everything else
(data, tasks, verbs, ensemble) imports it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..data_source import DataSource

TASKS = ("classify", "pretrain_text")
DEMO = "licenses"  # data.source of the built-in licence categories


@dataclass
class DataConfig(DataSource):
    """task: classify | pretrain_text. path (see DataSource): the user's documents; none: ``source``, the
    built-in licence categories. text_column / label_column / id_column: the columns of the text (a string,
    or a list of paragraphs), the label and an id (null: a column named ``id`` if there is one, else the
    file row). multi_label: null = multi-label when the label column holds lists (JSON / parquet); true =
    also split string labels on ``label_separator`` (CSV); false = one label per row. labels_path: a table
    of labels for a folder of text files (``data.path``), matched on its ``file_column`` (the file's path
    inside the folder). empty_texts: drop (counted) | error. tokenizer: ``byte``, a tokenizer.json (ours or
    a Hugging Face one), or a model folder holding one. max_length: tokens per document (null: all);
    overflow: truncate (counted) | chunk (chunks of max_length, features pooled per document by chunk_pool
    mean | max, chunk_stride overlap). max_tokens_per_batch: cap on padded tokens per bucketed batch.
    class_weights: none | balanced | inverse_sqrt. unseen_labels: error | map (evaluation labels never seen
    in training). length_edges: word-count buckets of the by-length results. max_train / max_eval: subsample
    documents (quick runs; for pretrain_text, windows). lm_val_fraction: share of the training windows held
    out for the LM's validation loss. ensemble: classifiers trained and averaged."""

    task: str = "classify"
    source: str = DEMO
    text_column: str = "text"
    label_column: str = "label"
    id_column: str | None = None
    multi_label: bool | None = None
    label_separator: str = ";"
    labels_path: str | None = None
    file_column: str = "file"
    empty_texts: str = "drop"
    include_deprecated: bool = True
    tokenizer: str = "byte"
    max_length: int | None = 4096
    overflow: str = "truncate"
    chunk_stride: int = 0
    chunk_pool: str = "mean"
    max_tokens_per_batch: int | None = None
    class_weights: str = "none"
    unseen_labels: str = "error"
    length_edges: list[int] = field(default_factory=lambda: [0, 500, 2000])
    max_train: int | None = None
    max_eval: int | None = None
    lm_val_fraction: float = 0.05
    ensemble: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        choices = {"overflow": ("truncate", "chunk"), "chunk_pool": ("mean", "max"),
                   "class_weights": ("none", "balanced", "inverse_sqrt"), "unseen_labels": ("error", "map"),
                   "empty_texts": ("drop", "error")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.path and self.source != DEMO and self.source != self.path:
            raise ValueError(f"data.path={self.path!r} and data.source={self.source!r} name different data; "
                             "set data.path only (data.source=<file> is its older spelling)")
        if self.user_path is None and (self.test_path or self.labels_path or self.split_column or self.group_column):
            set_keys = [k for k in ("test_path", "labels_path", "split_column", "group_column") if getattr(self, k)]
            raise ValueError(f"data.{set_keys[0]} is for your own data: set data.path too (without it the built-in "
                             "licence data is used, which has its own split)")
        if self.labels_path and self.test_path:
            raise ValueError("data.labels_path labels the folder data.path; mark test files in a split column of the "
                             "labels table (data.split_column) instead of setting data.test_path")
        if not self.label_separator:
            raise ValueError("label_separator must be a non-empty string (e.g. ';')")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be >= 2 or null, got {self.max_length}")
        if self.overflow == "chunk" and self.max_length is None:
            raise ValueError("overflow=chunk needs a max_length (the chunk size)")
        if not 0 < self.lm_val_fraction < 1:
            raise ValueError(f"lm_val_fraction must be in (0, 1), got {self.lm_val_fraction}")
        if isinstance(self.ensemble, bool) or not isinstance(self.ensemble, int) or self.ensemble < 1:
            raise ValueError(f"ensemble must be a whole number >= 1 (the number of classifiers), got {self.ensemble!r}")
        if self.ensemble > 1 and self.task != "classify":
            raise ValueError(f"data.ensemble is for classify runs; a {self.task} run trains one model")
        for name in ("max_train", "max_eval"):
            v = getattr(self, name)
            if v is not None and v < 2:
                raise ValueError(f"{name} must be >= 2 or null, got {v}")

    @property
    def user_path(self) -> str | None:
        """The user's data (``data.path``, or the older ``data.source=<file>``); None: the built-in licences."""
        return self.path or (self.source if self.source != DEMO else None)

    def describe(self) -> str:
        """The data, for the report's first line."""
        if self.user_path is None:
            return f"built-in `{DEMO}`"
        extra = f" + labels `{self.labels_path}`" if self.labels_path else ""
        return f"`{self.user_path}`{extra}" + (f" + test `{self.test_path}`" if self.test_path else "")
