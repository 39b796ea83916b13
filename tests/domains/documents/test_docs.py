"""Every ```python block of docs/documents.md runs as written."""
from helpers import REPO, python_blocks


def test_documents_page_examples_run():
    page = REPO / "docs" / "documents.md"
    blocks = python_blocks(page)
    assert len(blocks) >= 2
    for code in blocks:
        exec(compile(code, str(page), "exec"), {"__name__": "__docs__"})
