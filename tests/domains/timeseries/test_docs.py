"""Every ```python block of docs/timeseries.md runs as written, in order, sharing one namespace."""
from helpers import REPO, python_blocks


def test_timeseries_page_examples_run():
    page = REPO / "docs" / "timeseries.md"
    blocks = python_blocks(page)
    assert len(blocks) >= 3, "docs/timeseries.md lost its python examples"
    namespace = {"__name__": "__docs__"}
    for code in blocks:
        exec(compile(code, str(page), "exec"), namespace)
