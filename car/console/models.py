"""The models installed on the car (one folder each under the state dir) and the loading status.

Folders appear only by an atomic rename of a fully checked bundle (a replacement is one atomic
exchange of the old and new folder), so anything listed here has passed every upload check; a
folder that fails to read later (edited by hand) is listed as not selectable with the reason,
rather than hidden. The model the car started with (`racer car --model`, else the bundled one) is
listed too, marked `"startup": true`, so the user can always go back to it; it cannot be deleted
or replaced by an upload, nor can the model the car is driving. Deleting a model removes its
converted IR from the cache. A model is converted, compiled and first run only in the sandbox
(car.policy.sandbox), and what a refused model added to the cache is removed again.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from car.console.errors import ApiError
from car.policy.bundle import (
    METADATA_FILE,
    BundleError,
    ModelFiles,
    file_sha256,
    find_model,
    load_bundle,
    unrunnable_reason,
)
from car.policy.inference import Policy
from car.policy.metadata import MetadataError, ModelMetadata, load_metadata
from car.policy.sandbox import SandboxLimits, check_bundle

FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ALGORITHM_NAMES = {"clipped_ppo": "Clipped PPO", "sac": "Soft actor critic"}
ACTION_SPACE_NAMES = {"discrete": "Discrete", "continuous": "Continuous"}
SENSOR_NAMES = {"OBSERVATION": "Camera", "FRONT_FACING_CAMERA": "Front-facing camera", "LEFT_CAMERA": "Left camera",
                "STEREO_CAMERAS": "Stereo camera", "LIDAR": "LiDAR", "SECTOR_LIDAR": "LiDAR",
                "DISCRETIZED_SECTOR_LIDAR": "LiDAR"}
RENAME_EXCHANGE = 2  # linux/fs.h: renameat2() swaps the two paths in one step
AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)


def exchange(a: Path, b: Path) -> None:
    """Swap two existing paths atomically (Linux renameat2 RENAME_EXCHANGE): there is never a
    moment when either name is missing. OSError when the filesystem cannot."""
    if _libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), str(a))


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
    startup: bool = False

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
            "startup": self.startup,
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


def _frozen_graph(path: Path) -> Path | None:
    """The bundle's .pb, when it is an AWS export (the only kind that is converted and cached)."""
    try:
        files: ModelFiles = find_model(path)
    except BundleError:
        return None
    return files.path if files.path.suffix == ".pb" else None


class ModelStore:
    """state_dir/models/<folder>/ with the bundle files, plus the start-up model (a bundle directory,
    listed under its own name); conversions cached under `cache_dir`."""

    def __init__(self, root: Path, cache_dir: Path, startup: Path | None = None,
                 sandbox: SandboxLimits = SandboxLimits()):
        self.root = root
        self.cache_dir = cache_dir
        self.startup = startup if startup is not None and startup.is_dir() else None
        self.sandbox = sandbox

    def _cached(self) -> set[Path]:
        return {*self.cache_dir.glob("ir/*/*"), *self.cache_dir.glob("compiled/*")}

    def check(self, root: Path) -> Path:
        """Convert, compile and test-run the bundle at `root` in the sandbox (one at a time: the
        console's job lock); its bundle folder, or ApiError(422) with the reason, in which case
        whatever the attempt added to the cache is removed."""
        before = self._cached()
        result = check_bundle(root, self.cache_dir / "ir", self.cache_dir / "compiled", self.sandbox)
        if result.reason is None:
            return result.root
        for added in self._cached() - before:
            shutil.rmtree(added, ignore_errors=True) if added.is_dir() else added.unlink(missing_ok=True)
        raise ApiError(422, result.reason)

    def _read(self, path: Path, startup: bool = False) -> InstalledModel:
        try:
            files = find_model(path)
            metadata = load_metadata(path / METADATA_FILE)
        except (BundleError, MetadataError) as exc:
            return InstalledModel(path.name, path, "model", None, str(exc), startup)
        return InstalledModel(path.name, path, files.path.stem, metadata, unrunnable_reason(metadata), startup)

    def _installed(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if p.is_dir() and FOLDER_NAME.fullmatch(p.name))

    def list(self) -> list[InstalledModel]:
        """The start-up model first, then the selectable models, then the others, each group by name."""
        models = sorted((self._read(p) for p in self._installed()), key=lambda m: (m.reason is not None,
                                                                                     m.folder.lower()))
        return ([self._read(self.startup, startup=True)] if self.startup else []) + models

    def get(self, folder: str) -> InstalledModel:
        path = self.root / check_folder_name(folder)
        if self.startup is not None and folder == self.startup.name:
            return self._read(self.startup, startup=True)
        if not path.is_dir():
            raise ApiError(404, f"no model {folder!r} on this car")
        return self._read(path)

    def check_new_folder(self, folder: str, driving: str | None = None) -> None:
        """ApiError(409) when an upload named `folder` would shadow the start-up model or replace
        the model the car is `driving` (the console never names a model the car is not running)."""
        if self.startup is not None and folder == self.startup.name:
            raise ApiError(409, f"{folder!r} is the model the car started with; rename the file to upload it")
        if folder == driving:
            raise ApiError(409, f"{folder!r} is the model the car is driving; load another model to replace it")

    def remove_stale(self) -> None:
        """Remove what an interrupted replace or delete left behind (hidden folders)."""
        for path in self.root.iterdir():
            if path.name.startswith((".replaced-", ".deleted-")):
                shutil.rmtree(path, ignore_errors=True)

    def install(self, content: Path, folder: str) -> None:
        """Move a checked bundle directory in as `folder`; an older one is swapped out in one step."""
        self.check_new_folder(folder)
        target = self.root / check_folder_name(folder)
        if not target.exists():
            os.rename(content, target)
            return
        exchange(content, target)
        shutil.rmtree(content, ignore_errors=True)
        self.prune_cache()

    def delete(self, folders: list[str], driving: str | None = None) -> None:
        """Delete all of `folders` or, if any is unknown, the start-up model or the one the car is
        `driving`, none of them; then drop cached conversions no remaining model uses."""
        models = [self.get(folder) for folder in folders]
        if any(m.startup for m in models):
            raise ApiError(409, "the model the car started with cannot be deleted")
        if driving in folders:
            raise ApiError(409, f"{driving!r} is the model the car is driving; load another model to delete it")
        for model in models:
            trash = Path(tempfile.mkdtemp(prefix=".deleted-", dir=self.root))
            os.rename(model.path, trash / model.path.name)
            shutil.rmtree(trash, ignore_errors=True)
        self.prune_cache()

    def prune_cache(self) -> None:
        """Remove converted IR (cache/ir/<openvino>/<pb sha256>-<cut>) whose frozen graph no model here has.

        OpenVINO's compiled blobs are keyed by its own hashes and only speed up loads."""
        used = set()
        for path in [*self._installed(), *([self.startup] if self.startup else [])]:
            with_pb = _frozen_graph(path)
            if with_pb is not None:
                used.add(file_sha256(with_pb))
        for entry in self.cache_dir.glob("ir/*/*"):
            if entry.is_dir() and entry.name.split("-", 1)[0] not in used:
                shutil.rmtree(entry, ignore_errors=True)

    def compile(self, folder: str, model_name: str) -> Policy:
        """The folder's model, validated and compiled for the CPU once the sandbox has converted,
        compiled and run it (so here OpenVINO reads cached IR and a compiled blob)."""
        model = self.get(folder)
        if model.model_name != model_name:
            raise ApiError(404, f"model {folder!r} has no model file {model_name!r} (it has {model.model_name!r})")
        if model.reason:
            raise ApiError(422, model.reason)
        self.check(model.path)
        try:
            bundle = load_bundle(model.path, self.cache_dir / "ir")
            return Policy(bundle, self.cache_dir / "compiled")
        except BundleError as exc:
            raise ApiError(422, str(exc)) from None
