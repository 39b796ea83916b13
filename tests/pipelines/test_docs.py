"""Runs the ```python blocks of docs/training.md and docs/cli.md (and their quick ```bash commands), and the\ngeneric section of docs/your-data.md (its domain sections run in each domain's tests)."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = ["training.md", "cli.md"]
FAST_COMMANDS = ("mambatune list", "mambatune advise")


def blocks(page: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (DOCS / page).read_text(), flags=re.S)


@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    code = blocks(page, "python")
    assert code, f"{page} has no python examples"
    monkeypatch.chdir(tmp_path)
    for i, block in enumerate(code):
        exec(compile(block, f"{page}[python block {i}]", "exec"), {"__name__": f"docs_{i}"})


@pytest.mark.parametrize("page", PAGES)
def test_fast_bash_commands_run(page, tmp_path):
    for block in blocks(page, "bash"):
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            if line.startswith(FAST_COMMANDS):
                args = shlex.split(line)[1:]
                proc = subprocess.run([sys.executable, "-m", "mambatune.pipelines.cli", *args], cwd=tmp_path,
                                      capture_output=True, text=True, timeout=60)
                assert proc.returncode == 0, f"{line}: {proc.stderr}"


def test_your_data_generic_section_runs(tmp_path, monkeypatch):
    from helpers import python_blocks
    code = python_blocks(DOCS / "your-data.md", section="Any table of sequences or texts: the generic recipe")
    assert code
    monkeypatch.chdir(tmp_path)
    for i, block in enumerate(code):
        exec(compile(block, f"your-data.md[generic, python block {i}]", "exec"), {"__name__": f"docs_{i}"})
    assert (tmp_path / "runs" / "sites_cv" / "cv_report.md").is_file()
