"""The license-category dataset: ScanCode's licensedcode license texts.

Source: the PyPI wheel ``licensedcode-data`` 32.1.0 (data CC-BY-4.0, nexB Inc.
and others, from ScanCode toolkit's licensedcode). Each
``licensedcode/data/licenses/<key>.LICENSE`` file is YAML front matter between
``---`` lines (``key``, ``category``, ``is_deprecated``, ...) followed by the
license text. :func:`read_license_wheel` reads the wheel as a zip (nothing is
installed or imported); :mod:`.demo_data` turns it into the committed parquet,
which :func:`load_license_dataset` reads.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import polars as pl
import yaml

from .data import DocumentTable, LoadReport, decode_utf8, finalize_table

LICENSE_DIR = "licensedcode/data/licenses/"
WHEEL_NAME = "licensedcode_data-32.1.0-py3-none-any.whl"
PARQUET_NAME = "licenses.parquet"
SPLITS = ("train", "val", "test")


@dataclass
class LicenseRecord:
    key: str
    category: str | None
    is_deprecated: bool
    text: str
    n_replacement_chars: int = 0


def parse_license_file(data: bytes, name: str = "<license>") -> LicenseRecord:
    """Split one .LICENSE file into its front matter fields and its text."""
    text, n_bad = decode_utf8(data, "replace")
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        raise ValueError(f"{name}: does not start with a '---' front matter line")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise ValueError(f"{name}: front matter is not closed by a '---' line") from None
    meta = yaml.safe_load("\n".join(lines[1:end])) or {}
    if not isinstance(meta, dict):
        raise ValueError(f"{name}: front matter is not a YAML mapping")
    key = str(meta.get("key") or Path(name).stem)
    body = "\n".join(lines[end + 1:]).strip("\n")
    return LicenseRecord(key=key, category=meta.get("category"), is_deprecated=bool(meta.get("is_deprecated")),
                         text=body, n_replacement_chars=n_bad)


def read_license_wheel(wheel: str | Path) -> tuple[pl.DataFrame, dict[str, int]]:
    """All license files of the wheel as a frame (key, category, is_deprecated, text, n_words).

    Keeps every file, empty texts included; the counts say how many files have
    no text, no category, or repaired (non-UTF-8) bytes.
    """
    wheel = Path(wheel)
    if not wheel.is_file():
        raise FileNotFoundError(f"no wheel at {wheel}; get it with "
                                f"`pip download --no-deps licensedcode-data==32.1.0 -d {wheel.parent}`")
    rows = []
    with zipfile.ZipFile(wheel) as z:
        names = sorted(n for n in z.namelist() if n.startswith(LICENSE_DIR) and n.endswith(".LICENSE"))
        if not names:
            raise ValueError(f"{wheel} holds no {LICENSE_DIR}*.LICENSE files; is it licensedcode-data?")
        for n in names:
            rows.append(parse_license_file(z.read(n), n))
    frame = pl.DataFrame({
        "key": [r.key for r in rows],
        "category": [r.category for r in rows],
        "is_deprecated": [r.is_deprecated for r in rows],
        "text": [r.text for r in rows],
        "n_words": [len(r.text.split()) for r in rows],
    }, schema={"key": pl.String, "category": pl.String, "is_deprecated": pl.Boolean, "text": pl.String,
               "n_words": pl.Int64})
    counts = {
        "files": len(rows),
        "empty_text": sum(not r.text.strip() for r in rows),
        "no_category": sum(r.category is None for r in rows),
        "deprecated": sum(r.is_deprecated for r in rows),
        "non_utf8_files": sum(r.n_replacement_chars > 0 for r in rows),
    }
    return frame, counts


def license_parquet_path() -> Path:
    """The committed parquet inside the installed package."""
    return Path(str(resources.files("mambatune.domains.documents") / "data" / PARQUET_NAME))


def load_license_dataset(split: str | None = None, path: str | Path | None = None,
                         include_deprecated: bool = True) -> DocumentTable:
    """The license-category table (label = ``category``) for one split or all.

    Extra columns: key, n_words, is_deprecated, split. ``include_deprecated=False``
    leaves out the 145 deprecated entries (the count is in ``table.report.notes``).
    """
    path = Path(path) if path is not None else license_parquet_path()
    if not path.is_file():
        raise FileNotFoundError(f"no license dataset at {path}; build it with "
                                "`python -m mambatune.domains.documents.demo_data --out domains/documents/data`")
    frame = pl.read_parquet(path)
    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not one of {SPLITS} or None")
        frame = frame.filter(pl.col("split") == split)
    report = LoadReport(source=f"{path.name}[{split or 'all'}]")
    if not include_deprecated:
        n = frame["is_deprecated"].sum()
        frame = frame.filter(~pl.col("is_deprecated"))
        report.notes.append(f"left out {n} deprecated entries")
    return finalize_table(frame, report, text_column="text", label_column="category",
                          keep_columns=["key", "n_words", "is_deprecated", "split"], empty="error")
