"""Where the console keeps what must survive a restart: models, calibration, secrets, certificate.

Everything the console writes lives under one state directory, so a hostile upload or a bug can
be audited against a single root, and wiping the directory resets the car's console.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


def default_state_dir() -> Path:
    """$XDG_STATE_HOME/racer, else ~/.local/state/racer (used when --state-dir is left out)."""
    base = os.environ.get("XDG_STATE_HOME")
    return (Path(base) if base else Path.home() / ".local" / "state") / "racer"


@dataclass(frozen=True)
class StateDir:
    root: Path

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def uploads(self) -> Path:
        """Incoming archives, streamed here before any check (same filesystem as models/)."""
        return self.root / "uploads"

    @property
    def cache(self) -> Path:
        """OpenVINO IR converted from frozen graphs, and compiled blobs."""
        return self.root / "cache"

    @property
    def secrets(self) -> Path:
        return self.root / "console"

    @property
    def password(self) -> Path:
        return self.secrets / "password"

    @property
    def tokens(self) -> Path:
        return self.secrets / "tokens.json"

    @property
    def tls(self) -> Path:
        return self.secrets / "tls"

    @property
    def calibration(self) -> Path:
        return self.root / "calibration.json"

    def create(self) -> StateDir:
        for path in (self.root, self.secrets, self.tls):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o700)
        for path in (self.models, self.uploads, self.cache):
            path.mkdir(parents=True, exist_ok=True)
        return self


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` atomically with a file only its owner can read (secrets, keys): a temporary
    file (hidden name) written and fsynced, renamed over `path`, then the folder fsynced."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)


def remove_all(paths: Iterable[Path]) -> int:
    """Remove each of `paths` (a folder with what it holds; a link, not its target): the count."""
    removed = 0
    for path in list(paths):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


def remove_temporary(state: StateDir) -> int:
    """Remove the temporary files that atomic writes killed midway left (hidden names: `write_private`,
    calibration.json's staging, a model conversion's `.convert-*`): the count. Call at start, before
    anything writes; model folders have their own (`ModelStore.remove_stale`)."""
    folders = [state.root, state.secrets, state.tls, *state.cache.glob("ir/*")]
    return remove_all(p for folder in folders if folder.is_dir() for p in folder.iterdir() if p.name.startswith("."))
