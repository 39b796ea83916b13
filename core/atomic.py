"""Crash-safe file writes: a temporary file in the same folder, fsynced, then renamed.

A crash or kill at any moment leaves either the old file or the new one under
the final name, never a partial one."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable


def _current_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_current_umask()  # what open() gives a new file (0644 under the usual umask 022)


def fsync_dir(path: Path) -> None:
    """Makes a rename inside ``path`` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None],
                 before_rename: Callable[[], None] | None = None) -> None:
    """Calls ``write(tmp_path)``, fsyncs the file, then renames it to ``path``.
    ``before_rename`` runs between the two (a fault-injection point for tests)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; the file should read like every other file of the run
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def host_tensors(tensors: dict) -> dict:
    """CPU copies of ``tensors`` as a file should hold them: a sharded FSDP parameter (DTensor) is
    gathered whole first. Gathering is a collective, so under torchrun every rank must call this."""
    out = {}
    for name, t in tensors.items():
        t = t.detach()
        if hasattr(t, "full_tensor"):
            t = t.full_tensor()
        out[name] = t.cpu().clone().contiguous()
    return out
