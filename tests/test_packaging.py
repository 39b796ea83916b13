"""The wheel installs everything under the mambatune namespace, and nothing else."""
import subprocess
import sys
import zipfile
from pathlib import Path

from helpers import REPO

MAPPED = ["core", "kernels", "domains", "pipelines", "benchmarks"]


def test_wheel_holds_every_package_under_mambatune(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("mambatune-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops <= {"mambatune", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, tops
    packaged = {str(Path(n).parent) for n in names if n.endswith("__init__.py")}
    on_disk = set()
    for top in MAPPED:
        for init in (REPO / top).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO)
            on_disk.add(str(Path("mambatune") / rel))
    missing = on_disk - packaged
    assert not missing, f"packages missing from pyproject's package list: {sorted(missing)}"
    # the shipped pretrained models travel with the package (the recipes' `model.pretrained: default`)
    for model in ("genomics/pretrained/dna-mamba-120k", "genomics/pretrained/dna-mamba-1m",
                  "documents/pretrained/text-mamba-140k", "documents/pretrained/text-mamba-1m",
                  "timeseries/pretrained/series-mamba-500k"):
        for f in ("model.safetensors", "recipe.yaml", "metrics.jsonl"):
            assert f"mambatune/domains/{model}/{f}" in names, f"{model}/{f} not in the wheel"
