"""The IR cache: an AWS DeepRacer `.pb` is converted once, and its OpenVINO IR kept under a key of
the .pb's sha256, the graph cut and the OpenVINO version (an upgrade converts again)."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import openvino as ov

# Where racer records, in the IR it converts, the sha256 of the .pb it came from: an IR shipped
# beside a .pb is used instead of converting only when it names that .pb.
SOURCE_RT_INFO = ["racer", "source_sha256"]


def default_cache_dir() -> Path:
    """Where converted IR (and compiled blobs) live: $RACER_CACHE_DIR or ~/.cache/racer/ir."""
    env = os.environ.get("RACER_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "racer" / "ir"


def _ov_tag() -> str:
    return "ov-" + re.sub(r"[^A-Za-z0-9.-]+", "_", ov.__version__)


def file_sha256(path: Path) -> str:
    """The file's sha256, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def ir_source_sha256(model: ov.Model) -> str | None:
    """The .pb sha256 racer wrote into this IR when converting it, or None (not racer's, or older)."""
    return model.get_rt_info(SOURCE_RT_INFO).astype(str) if model.has_rt_info(SOURCE_RT_INFO) else None


def cached_ir(source: Path, cut: str, convert: Callable[[], ov.Model], cache_dir: Path) -> Path:
    """model.xml converted from `source` by `convert()`, keyed by the source's sha256, the `cut` (the
    text of its inputs and outputs) and the OpenVINO version; converted only when not cached.

    The entry is written to a staging folder and renamed into place, so a reader never sees half an IR.
    """
    digest = file_sha256(source)
    entry = cache_dir / _ov_tag() / f"{digest}-{hashlib.sha256(cut.encode()).hexdigest()[:8]}"
    xml = entry / "model.xml"
    if xml.is_file() and xml.with_suffix(".bin").is_file():
        return xml
    model = convert()
    model.set_rt_info(digest, SOURCE_RT_INFO)
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=entry.parent))
    try:
        ov.save_model(model, staging / "model.xml", compress_to_fp16=False)
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(staging, entry)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not xml.is_file():
            raise
    return xml
