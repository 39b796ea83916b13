"""Long documents: tokenizers, loaders, datasets, metrics and baselines for
document classification (single- and multi-label). See docs/documents.md."""
from .batching import DocumentCollator, LengthBucketSampler, padding_fraction
from .data import DocumentTable, LoadReport, read_hf_dataset, read_table, read_text_folder
from .dataset import UNSEEN_INDEX, DocumentDataset, LabelVocabulary, class_weights
from .lexglue import ECTHR_ARTICLES, SCOTUS_ISSUE_AREAS, read_ecthr, read_scotus
from .licenses import load_license_dataset
from .tokenizers import ByteTokenizer, EncodedBatch, HFTokenizer, pool_chunks

__all__ = [
    "ByteTokenizer", "DocumentCollator", "DocumentDataset", "DocumentTable", "ECTHR_ARTICLES", "EncodedBatch",
    "HFTokenizer", "LabelVocabulary", "LengthBucketSampler", "LoadReport", "SCOTUS_ISSUE_AREAS", "UNSEEN_INDEX",
    "class_weights", "load_license_dataset", "padding_fraction", "pool_chunks", "read_ecthr", "read_hf_dataset",
    "read_scotus", "read_table", "read_text_folder",
]
