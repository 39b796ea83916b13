"""The python examples of docs/peft.md run as written."""
import pytest

from helpers import REPO, python_blocks

BLOCKS = python_blocks(REPO / "docs" / "peft.md")


def test_page_has_examples():
    assert BLOCKS


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_python_block_runs(i):
    exec(compile(BLOCKS[i], f"docs/peft.md[{i}]", "exec"), {"__name__": "docs_peft"})
