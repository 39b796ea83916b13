"""benchmarks/gpu_session.sh, the next GPU session's measurements: it parses, every test file it names exists,
and each benchmark's arguments in it are accepted by that benchmark's parser (so device time is not lost to a
renamed flag)."""
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_session.sh"


def commands():
    """Each `python3 -m mambatune.benchmarks.NAME ...` command of the script, as (NAME, args)."""
    text = re.sub(r"\\\n\s*", " ", SCRIPT.read_text())
    for line in text.splitlines():
        m = re.search(r"python3 -m mambatune\.benchmarks\.(\w+) (.*?)(?:;;|$)", line)
        if m:
            args = [a for a in shlex.split(m.group(2)) if "$OUT" not in a]
            yield m.group(1), [a for a in args if not a.startswith("--json")]


def test_script_parses_and_names_existing_tests():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    paths = re.findall(r"tests/[\w/]+\.py", SCRIPT.read_text())
    assert paths and all((ROOT / p).exists() for p in paths), [p for p in paths if not (ROOT / p).exists()]


@pytest.mark.parametrize("name,args", list(commands()))
def test_benchmark_arguments_parse(name, args, monkeypatch):
    import argparse
    import importlib
    import inspect
    import sys

    mod = importlib.import_module(f"mambatune.benchmarks.{name}")
    seen = {}

    def stop(self, argv=None, namespace=None):
        seen["args"] = argparse.ArgumentParser.parse_known_args(self, argv, namespace)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", lambda self, argv=None, ns=None: stop(self, argv, ns))
    monkeypatch.setattr(sys, "argv", [name, *args])
    with pytest.raises(SystemExit):
        mod.main(args) if inspect.signature(mod.main).parameters else mod.main()
    _, unknown = seen["args"]
    assert not unknown, f"{name}: unknown arguments {unknown}"
