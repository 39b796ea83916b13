"""Atomically written files get the mode of ordinary files."""
import os
import stat

from mambatune.core.atomic import atomic_write_json, atomic_write_text


def test_atomic_files_have_the_ordinary_mode(tmp_path):
    old = os.umask(0o022)
    try:
        (tmp_path / "plain.txt").write_text("x")
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_write_json(tmp_path / "b.json", {"a": 1})
    finally:
        os.umask(old)
    plain = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert plain == 0o644
    for name in ("a.txt", "b.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == plain, name
