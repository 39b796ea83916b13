"""Every ```python block of the README and the core docs pages runs as written."""
import pytest

from helpers import REPO, python_blocks

PAGES = ["README.md", "docs/model.md", "docs/checkpoints.md", "docs/kernels.md"]


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page):
    blocks = python_blocks(REPO / page)
    assert blocks, f"{page} has no python example"
    for code in blocks:
        exec(compile(code, page, "exec"), {"__name__": "__docs__"})
