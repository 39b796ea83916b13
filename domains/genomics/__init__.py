"""Genomics data layer: DNA tokenizer, genome access, intervals, variants, demo datasets.

See docs/genomics-data.md. Coordinates: intervals and :class:`Genome` are 0-based
half-open; variant ``pos`` is 1-based as in VCF.
"""
from .datasets import demo_genome, load_promoters, load_variants
from .fasta import Genome, GenomeError, OutOfBoundsError, UnknownContigError, Window, bgzip_file
from .intervals import (
    IntervalError,
    assert_no_split_overlap,
    attach_sequences,
    read_intervals,
    region_split,
    split_overlaps,
    validate_intervals,
)
from .tokenizer import DNATokenizer, InvalidSequenceError, clean_sequence, reverse_complement
from .vcf import VariantError, VariantReport, alt_sequence, normalize_variants, read_cbv, read_vcf, variant_windows

__all__ = [
    "DNATokenizer", "InvalidSequenceError", "clean_sequence", "reverse_complement",
    "Genome", "GenomeError", "OutOfBoundsError", "UnknownContigError", "Window", "bgzip_file",
    "IntervalError", "read_intervals", "validate_intervals", "region_split", "split_overlaps",
    "assert_no_split_overlap", "attach_sequences",
    "VariantError", "VariantReport", "read_vcf", "read_cbv", "normalize_variants", "variant_windows",
    "alt_sequence", "demo_genome", "load_promoters", "load_variants",
]
