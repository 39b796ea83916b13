"""Every ```python block of docs/genomics.md runs as written."""
from helpers import REPO, python_blocks

PAGE = REPO / "docs" / "genomics.md"


def test_page_has_a_python_example():
    assert python_blocks(PAGE)


def test_python_blocks_run():
    for code in python_blocks(PAGE):
        exec(compile(code, str(PAGE), "exec"), {"__name__": "__docs__"})
