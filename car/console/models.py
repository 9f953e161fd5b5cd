"""The models installed on the car (one folder each under the state dir) and the loading status.

Folders appear only by an atomic rename of a fully checked bundle, so anything listed here has
passed every upload check; a folder that fails to read later (edited by hand) is listed as not
selectable with the reason, rather than hidden.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from car.bundle import METADATA_FILE, BundleError, find_model, load_bundle, unrunnable_reason
from car.console.errors import ApiError
from car.inference import Policy
from car.metadata import MetadataError, ModelMetadata, load_metadata

FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ALGORITHM_NAMES = {"clipped_ppo": "Clipped PPO", "sac": "Soft actor critic"}
ACTION_SPACE_NAMES = {"discrete": "Discrete", "continuous": "Continuous"}
SENSOR_NAMES = {"OBSERVATION": "Camera", "FRONT_FACING_CAMERA": "Front-facing camera", "LEFT_CAMERA": "Left camera",
                "STEREO_CAMERAS": "Stereo camera", "LIDAR": "LiDAR", "SECTOR_LIDAR": "LiDAR",
                "DISCRETIZED_SECTOR_LIDAR": "LiDAR"}


def check_folder_name(name: str) -> str:
    if not FOLDER_NAME.fullmatch(name) or name.endswith("."):
        raise ApiError(400, f"model name {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
                              "starting with a letter or digit")
    return name


@dataclass(frozen=True)
class InstalledModel:
    folder: str
    path: Path
    model_name: str
    metadata: ModelMetadata | None
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        """The DeepRacer console's model entry."""
        meta = self.metadata
        return {
            "model_name": self.model_name,
            "model_folder_name": self.folder,
            "model_training_algorithm": ALGORITHM_NAMES.get(meta.training_algorithm, "--") if meta else "--",
            "model_action_space_type": ACTION_SPACE_NAMES.get(meta.action_space_type, "--") if meta else "--",
            "model_sensors": [SENSOR_NAMES.get(s, s) for s in meta.sensors] if meta else [],
            "is_select_disabled": self.reason is not None,
            "reason": self.reason,
        }


@dataclass
class LoadingStatus:
    """What /api/isModelLoading reports: the running or last install/load job.

    `state` is "loading" while a job runs, then "loaded" (a model was loaded into the policy),
    "installed" (an upload finished) or "error" (with `reason`).
    """

    state: str = "loaded"
    job: str = ""
    model: str = ""
    stage: str = ""
    progress: int = 100
    reason: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def begin(self, job: str, model: str) -> None:
        self.state, self.job, self.model, self.stage, self.progress, self.reason = "loading", job, model, "", 0, None

    def step(self, stage: str, progress: int) -> None:
        self.stage, self.progress = stage, progress

    def finish(self, state: str, reason: str | None = None) -> None:
        self.state, self.stage, self.reason = state, "", reason
        if reason is None:
            self.progress = 100

    def to_json(self) -> dict[str, Any]:
        return {"success": True, "isModelLoading": self.state, "job": self.job, "model": self.model,
                "stage": self.stage, "progress": self.progress, "reason": self.reason}


class ModelStore:
    """state_dir/models/<folder>/ with the bundle files; conversions cached under `cache_dir`."""

    def __init__(self, root: Path, cache_dir: Path):
        self.root = root
        self.cache_dir = cache_dir

    def _read(self, path: Path) -> InstalledModel:
        try:
            files = find_model(path)
            metadata = load_metadata(path / METADATA_FILE)
        except (BundleError, MetadataError) as exc:
            return InstalledModel(path.name, path, "model", None, str(exc))
        return InstalledModel(path.name, path, files.path.stem, metadata, unrunnable_reason(metadata))

    def list(self) -> list[InstalledModel]:
        """Selectable models first, each group by name."""
        folders = sorted(p for p in self.root.iterdir() if p.is_dir() and FOLDER_NAME.fullmatch(p.name))
        models = [self._read(p) for p in folders]
        return sorted(models, key=lambda m: (m.reason is not None, m.folder.lower()))

    def get(self, folder: str) -> InstalledModel:
        path = self.root / check_folder_name(folder)
        if not path.is_dir():
            raise ApiError(404, f"no model {folder!r} on this car")
        return self._read(path)

    def install(self, content: Path, folder: str) -> None:
        """Move a checked bundle directory in as `folder`, replacing an older one atomically."""
        target = self.root / check_folder_name(folder)
        if not target.exists():
            os.rename(content, target)
            return
        old = Path(tempfile.mkdtemp(prefix=".replaced-", dir=self.root))
        os.rename(target, old / folder)
        try:
            os.rename(content, target)
        except OSError:
            os.rename(old / folder, target)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)

    def delete(self, folders: list[str]) -> None:
        """Delete all of `folders` or, if any is unknown, none of them."""
        paths = [self.get(folder).path for folder in folders]
        for path in paths:
            trash = Path(tempfile.mkdtemp(prefix=".deleted-", dir=self.root))
            os.rename(path, trash / path.name)
            shutil.rmtree(trash, ignore_errors=True)

    def compile(self, folder: str, model_name: str) -> Policy:
        """The folder's model, validated and compiled for the CPU (its frozen graph converted once)."""
        model = self.get(folder)
        if model.model_name != model_name:
            raise ApiError(404, f"model {folder!r} has no model file {model_name!r} (it has {model.model_name!r})")
        if model.reason:
            raise ApiError(422, model.reason)
        try:
            bundle = load_bundle(model.path, self.cache_dir / "ir")
            return Policy(bundle, self.cache_dir / "compiled")
        except BundleError as exc:
            raise ApiError(422, str(exc)) from None
