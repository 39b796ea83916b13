"""The ``data`` section of a genomics recipe (``DataConfig``): the demo tasks' settings and the keys that
point a recipe at the user's own files (``data.path`` and the shared split keys of ``DataSource``)."""
from __future__ import annotations

from dataclasses import dataclass, field

from mambatune.pipelines.data_source import DataSource

TASKS = ("promoter", "vep_zeroshot", "vep", "pretrain_dna")
FORMATS = ("auto", "table", "fasta", "regions", "vcf")
HEADER_LABELS = ("auto", "pipe", "key", "none")


@dataclass
class DataConfig(DataSource):
    """task: promoter | vep_zeroshot | vep | pretrain_dna; promoter_classes: binary | multiclass;
    window: crop every window to its central ``window`` bp (null: the full 2,000 bp promoter /
    1,001 bp variant windows); regions of a user's file: the window read around each region's centre;
    rc_augment: random strand per training example; rc_average: average
    both strands at inference; max_train / max_eval: subsample (quick runs); vep_method: finetune |
    embedding; vep_radius: bp around the variant over which alt - ref features are pooled;
    genome: a reference FASTA (GRCh37 chr20 for the demo sets): promoter windows of ``window`` bp
    (any length) are read from it around each demo window's centre; pretraining draws its
    windows from it; a user's regions (BED / narrowPeak / CSV) and variants (VCF) are read from it;
    lm_windows: pretraining windows drawn from ``genome`` (null: the training-split
    windows of the demo sets, chunked); kmer: k of the demo tasks' k-mer baseline (a user's data gets k
    chosen by inner CV from ``kmer_choices``); markov_order: order of the Markov LM
    baseline; n_boot: bootstrap resamples for the 95 % intervals; scratch_baseline: also train the same
    model from scratch when ``model.pretrained`` is set; ensemble: K > 1 trains K members of the main model
    (model and train seeds + k, in ``member-<k>/``; promoter and vep finetune, on the demo data or a user's
    sequences or VCF, with ``cv_folds`` in every fold) scored by their mean probabilities (regression: mean
    prediction; see ``genomics.members``); zeroshot_splits: vep_zeroshot scores the SNVs of these splits
    (test always; each further split, e.g. [train, val, test], is scored too, alone and pooled with test,
    by the zero-shot models only: zero-shot scoring reads no labels, but the supervised baseline learns from
    the training split).

    A user's data (``path``; docs/your-data.md, Genomics): format: auto (from the file name) | table (CSV /
    TSV / parquet / JSON lines of sequences) | fasta | regions (BED / narrowPeak, or a table with chrom,
    start, end; needs ``genome``) | vcf (needs ``genome``); sequence_column, label_column (null: no labels,
    zero-shot VEP only), id_column (the id written to the predictions; default: file and row);
    label_kind: auto | binary | multiclass | multilabel | regression; label_separator: between the classes of
    a multi-label text cell; positive_label: the positive class of a binary task; max_length / too_long:
    a sequence longer than max_length bp is an error, or with too_long=crop keeps its central bases
    (counted); k: the tokenizer's k (1: single bases, what the shipped models read); labels_path: a side
    table of labels (FASTA: id column + label column; VCF: id or chrom/pos/ref/alt + label column);
    header_label: FASTA labels from the header: ``pipe`` (``>id|label``, the last ``|`` field), ``key``
    (``label=<value>`` in the header; the key is label_column), auto (key, else pipe), none; flank: regions
    are read as themselves plus ``flank`` bp on each side (instead of ``window`` bp around the centre);
    on_invalid: error | skip (regions off a contig end, bad coordinates; VCF records that do not match the
    genome): skip drops and counts them; label_info: a VCF INFO key holding each variant's label."""

    task: str = "promoter"
    promoter_classes: str = "binary"
    window: int | None = 1000
    rc_augment: bool = True
    rc_average: bool = True
    max_train: int | None = None
    max_eval: int | None = None
    vep_method: str = "finetune"
    vep_radius: int = 16
    genome: str | None = None
    lm_windows: int = 2000
    kmer: int = 6
    kmer_choices: list[int] = field(default_factory=lambda: [3, 4, 5, 6])
    markov_order: int = 5
    n_boot: int = 1000
    scratch_baseline: bool = True
    ensemble: int = 1
    zeroshot_splits: list[str] = field(default_factory=lambda: ["test"])
    format: str = "auto"
    sequence_column: str = "sequence"
    label_column: str | None = "label"
    id_column: str | None = None
    label_kind: str = "auto"
    label_separator: str = ";"
    positive_label: str | None = None
    max_length: int | None = None
    too_long: str = "error"
    k: int = 1
    labels_path: str | None = None
    header_label: str = "auto"
    flank: int | None = None
    on_invalid: str = "error"
    label_info: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.promoter_classes not in ("binary", "multiclass"):
            raise ValueError(f"promoter_classes must be 'binary' or 'multiclass', got {self.promoter_classes!r}")
        if self.vep_method not in ("finetune", "embedding"):
            raise ValueError(f"vep_method must be 'finetune' or 'embedding', got {self.vep_method!r}")
        if self.window is not None and self.window < 16:
            raise ValueError(f"window must be >= 16 bp or null, got {self.window}")
        for name in ("max_train", "max_eval"):
            v = getattr(self, name)
            if v is not None and v < 2:
                raise ValueError(f"{name} must be >= 2 or null, got {v}")
        if self.n_boot < 0 or self.lm_windows < 1 or self.kmer < 1 or self.vep_radius < 0:
            raise ValueError("n_boot must be >= 0, lm_windows and kmer >= 1, vep_radius >= 0")
        check_ensemble(self)
        if isinstance(self.zeroshot_splits, str):
            self.zeroshot_splits = [self.zeroshot_splits]
        bad = [x for x in self.zeroshot_splits if x not in ("train", "val", "test")]
        if bad or not self.zeroshot_splits:
            raise ValueError(f"zeroshot_splits lists splits among train, val, test (e.g. [train, val, test]), "
                             f"got {self.zeroshot_splits!r}")
        if self.zeroshot_splits != ["test"] and self.task != "vep_zeroshot":
            raise ValueError(f"zeroshot_splits is for vep_zeroshot runs; a {self.task} run scores the test split")
        self.check_user_data()

    def check_user_data(self) -> None:
        """The keys of a user's data: each value in its range, and the ones that only mean something with
        ``path`` refused without it (a silently ignored key would look like it had worked)."""
        choices = {"format": FORMATS, "header_label": HEADER_LABELS, "too_long": ("error", "crop"),
                   "on_invalid": ("error", "skip"),
                   "label_kind": ("auto", "binary", "multiclass", "multilabel", "regression")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"max_length must be >= 1 bp or null, got {self.max_length}")
        if self.flank is not None and self.flank < 0:
            raise ValueError(f"flank must be >= 0 bp or null, got {self.flank}")
        if not isinstance(self.k, int) or not 1 <= self.k <= 8:
            raise ValueError(f"k must be a whole number in 1..8, got {self.k!r}")
        if not self.kmer_choices or any(not isinstance(x, int) or x < 1 for x in self.kmer_choices):
            raise ValueError(f"kmer_choices lists k values >= 1 (e.g. [3, 4, 5, 6]), got {self.kmer_choices!r}")
        if not self.label_separator:
            raise ValueError("label_separator must be a non-empty string (e.g. ';')")
        if self.path is None:
            given = [k for k in ("test_path", "labels_path", "split_column", "group_column", "id_column",
                                 "positive_label", "max_length", "flank", "label_info", "cv_folds")
                     if getattr(self, k) is not None]
            if self.k != 1:
                given.append("k")
            if given:
                raise ValueError(f"{', '.join(given)} apply to a user's data: set data.path too (the demo "
                                 "tasks use their own fixed splits and single-base tokens)")
        elif self.task == "pretrain_dna":
            raise ValueError("pretrain_dna reads a reference FASTA from data.genome, not data.path: set "
                             "data.genome=<your .fa / .fa.gz> (and leave data.path unset)")


def check_ensemble(cfg: DataConfig) -> None:
    """``data.ensemble``: a whole number >= 1; > 1 only where there is a classifier to repeat (promoter,
    vep with vep_method=finetune)."""
    k = cfg.ensemble
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"ensemble must be a whole number >= 1 (the number of models), got {k!r}")
    if k > 1 and cfg.task not in ("promoter", "vep"):
        raise ValueError(f"data.ensemble is for promoter and vep runs; a {cfg.task} run trains one model")
    if k > 1 and cfg.task == "vep" and cfg.vep_method != "finetune":
        raise ValueError("data.ensemble needs vep_method=finetune: an embedding run fits one logistic regression "
                         "on one language model's features, with no member seeds to vary")
