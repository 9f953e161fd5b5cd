"""Crash-safe replacement of small files that a car must never find half-written.

A calibration or camera file is read at every start; a power cut or a SIGKILL in the middle of a
save must leave either the old or the new file, never a truncated one.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace `path` with `data`, keeping the previous content as `<name>.bak`.

    The new bytes go to a temp file in the same directory, are fsynced, the old file is copied
    to `<name>.bak` the same way, then a rename swaps the new file in and the directory is
    fsynced so the rename itself survives a power cut. Savers in other processes are serialised
    by a lock on the directory, so the fixed temp names cannot be shared.
    """
    target = Path(path)
    folder = target.parent
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)
        staged = folder / f".{target.name}.tmp"
        _write_synced(staged, data)
        if target.exists():
            staged_backup = folder / f".{target.name}.bak.tmp"
            _write_synced(staged_backup, target.read_bytes())
            os.replace(staged_backup, folder / f"{target.name}.bak")
        os.replace(staged, target)
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
