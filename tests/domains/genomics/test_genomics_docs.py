"""Every ```python block of docs/genomics.md runs as written."""
from helpers import REPO, python_blocks

PAGE = REPO / "docs" / "genomics.md"


def test_page_has_a_python_example():
    assert python_blocks(PAGE)


def test_python_blocks_run():
    for code in python_blocks(PAGE):
        exec(compile(code, str(PAGE), "exec"), {"__name__": "__docs__"})


def test_your_data_page_runs(tmp_path, monkeypatch):
    """The genomics section of docs/your-data.md: its example writes a user-shaped CSV and runs a recipe on it,
    in a scratch folder."""
    page = REPO / "docs" / "your-data.md"
    blocks = python_blocks(page, section="Genomics")
    assert blocks
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, str(page), "exec"), {"__name__": "__docs__"})
    assert (tmp_path / "runs" / "sites" / "predictions_test.csv").is_file()
