import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for peft_fixtures (tests run with --import-mode=importlib)

BACKENDS = ("chunked", "reference")  # the Triton backend has its own, smaller matrix in test_methods.py


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The two CPU scan backends."""
    return request.param


@pytest.fixture(autouse=True)
def one_thread():
    """The models here are tiny: a second thread only adds synchronisation (10x slower on a busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
