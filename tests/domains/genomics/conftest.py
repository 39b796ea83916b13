import shutil

import pytest

from mambatune.domains.genomics.datasets import SLICE_FILE, data_path
from mambatune.domains.genomics.fasta import Genome


@pytest.fixture(scope="session")
def genome():
    """The committed chr20 slice (contig '20', first 400 kb of GRCh37 chr20)."""
    with Genome(data_path(SLICE_FILE)) as g:
        yield g


@pytest.fixture
def fasta_copy(tmp_path):
    """A copy of the slice FASTA with no index next to it."""
    dst = tmp_path / SLICE_FILE
    shutil.copy(data_path(SLICE_FILE), dst)
    return dst
