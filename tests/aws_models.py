"""Real AWS-trained DeepRacer models for the tests, fetched from PyPI and cached, never committed.

The source distribution of ``deepracer-utils==1.5.6`` (MIT-0) ships one AWS training run's
``sample-model``: ``model/model_{15,30,48}.pb`` (three PPO checkpoints, SHALLOW network, 12 discrete
actions), ``model/model_metadata.json`` and three 640x480 Gazebo frames ``pictures/dr-demo-{1,2,3}.png``.
``sample_model_dir()`` downloads the sdist once with the running interpreter's pip, checks its
SHA-256 and extracts that folder to ``$RACER_TEST_CACHE`` (default ``~/.cache/racer-tests``).
A failed fetch raises ``AwsModelsUnavailable`` with a one-line reason, so CI fails loudly
instead of skipping (the ``sample_model`` fixture in conftest.py). Stdlib only: the TensorFlow
reference tool imports it from its own venv.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "deepracer-utils==1.5.6"
SDIST_FILE = "deepracer_utils-1.5.6.tar.gz"
SDIST_SHA256 = "b22dcff78453e1341db761748766f5031dcf2fa0b4af81f7874b31e25396a293"
MEMBER_PREFIX = "deepracer_utils-1.5.6/tests/deepracer/model/sample-model/"
CHECKPOINTS = (15, 30, 48)
PICTURES = ("dr-demo-1.png", "dr-demo-2.png", "dr-demo-3.png")


class AwsModelsUnavailable(RuntimeError):
    """The deepracer-utils sdist could not be fetched, verified or extracted."""


def cache_dir() -> Path:
    return Path(os.environ.get("RACER_TEST_CACHE") or Path.home() / ".cache" / "racer-tests")


def model_pb(checkpoint: int) -> Path:
    """Path of ``model_<checkpoint>.pb`` (checkpoint in CHECKPOINTS)."""
    return sample_model_dir() / "model" / f"model_{checkpoint}.pb"


def pictures() -> list[Path]:
    """The three 640x480 Gazebo frames, in name order."""
    return [sample_model_dir() / "pictures" / name for name in PICTURES]


def _complete(folder: Path) -> bool:
    wanted = [f"model/model_{c}.pb" for c in CHECKPOINTS] + ["model/model_metadata.json"]
    wanted += [f"pictures/{name}" for name in PICTURES]
    return all((folder / name).is_file() for name in wanted)


def _download(into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "-q", "-d", str(into), SDIST]
    run = subprocess.run(cmd, capture_output=True, text=True)
    sdist = into / SDIST_FILE
    if run.returncode != 0 or not sdist.is_file():
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise AwsModelsUnavailable(f"pip download {SDIST} failed (exit {run.returncode}): {last}")
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise AwsModelsUnavailable(f"{SDIST_FILE} has SHA-256 {digest}, expected {SDIST_SHA256}")
    return sdist


def sample_model_dir() -> Path:
    """The cached ``sample-model`` directory, fetching it first if needed.

    Safe when several test processes race: each extracts into its own temporary folder and the
    first rename wins. Raises AwsModelsUnavailable (one line) when pip or the archive fails.
    """
    root = cache_dir()
    target = root / "deepracer-utils-1.5.6" / "sample-model"
    if _complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        work = Path(tmp)
        sdist = _download(work)
        staged = work / "sample-model"
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(MEMBER_PREFIX)]
            for member in members:
                member.name = member.name[len(MEMBER_PREFIX):]
            tar.extractall(staged, members=[m for m in members if m.name], filter="data")
        if not _complete(staged):
            raise AwsModelsUnavailable(f"{SDIST_FILE} has no complete {MEMBER_PREFIX}")
        if _complete(target):
            return target
        shutil.rmtree(target, ignore_errors=True)
        try:
            staged.rename(target)
        except OSError:
            if not _complete(target):
                raise
    return target

