"""The console's service: what its handlers ask of the car, over the bus, and of the models on it.

Requests go to control over the bus like any other node's, and control's refusals become 409s with
its reason; an install or a load is one job at a time, reported through /api/isModelLoading; one
upload runs at a time, from the first byte of its body to its install; the camera's frames are
encoded once however many watch. Each change a user makes is logged as one structured line
(`events`).
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from car.console.calibration import CalibrationService
from car.console.errors import ApiError, short
from car.console.events import event
from car.console.models import LoadingStatus, ModelStore
from car.console.node import ConsoleNode
from car.console.stream import JpegCache
from car.console.uploads import Uploads, install_archive, receive_archive


@dataclass
class ConsoleService:
    """The car as the console's handlers see it: its node on the bus, the installed models and the
    install/load job, uploads, the calibration wizard, the camera as JPEG; built by car.console.server."""

    node: ConsoleNode
    store: ModelStore
    calibration: CalibrationService
    uploads: Uploads
    loading: LoadingStatus = field(default_factory=LoadingStatus)
    camera: JpegCache = field(init=False)

    def __post_init__(self) -> None:
        self.camera = JpegCache(self.node)

    @staticmethod
    def of(connection: HTTPConnection) -> ConsoleService:
        """The service of the app `connection` reached (car.console.app keeps it in the app's state)."""
        service: ConsoleService = connection.app.state.service
        return service

    @contextlib.contextmanager
    def job(self, kind: str, model: str, done: str) -> Iterator[None]:
        """One install or load at a time, reported through /api/isModelLoading."""
        if not self.loading.lock.acquire(blocking=False):
            raise self.busy()
        try:
            self.loading.begin(kind, model)
            try:
                yield
            except ApiError as exc:
                self.loading.finish("error", exc.reason)
                event(f"{kind}_failed", model=model, reason=exc.reason)
                raise
            except Exception as exc:
                reason = short(f"{type(exc).__name__}: {exc}")
                self.loading.finish("error", reason)
                event(f"{kind}_failed", model=model, reason=reason)
                raise
            self.loading.finish(done)
            event(done, model=model)
        finally:
            self.loading.lock.release()

    def busy(self) -> ApiError:
        return ApiError(409, f"busy: {self.loading.job} of {self.loading.model!r} is still running")

    def sensor_status(self) -> dict[str, str]:
        """The DeepRacer console's sensor status: the camera as the node sees it; no stereo camera nor LiDAR."""
        camera = "connected" if self.node.camera_connected() else "not_connected"
        return {"camera_status": camera, "stereo_status": "not_connected", "lidar_status": "not_connected"}

    def check_upload_folder(self, folder: str) -> None:
        self.store.check_new_folder(folder, driving=self.node.model_name)

    async def upload(self, content_type: str, content_length: str | None, body: AsyncIterator[bytes]) -> str:
        """Receive and install one upload (409 while another upload, an install or a load runs): the
        folder it was installed to."""
        if self.loading.lock.locked():
            raise self.busy()
        with self.uploads.claim():
            try:
                folder, archive = await receive_archive(content_type, content_length, body, self.uploads.folder,
                                                        self.uploads.limits, self.check_upload_folder)
            except ApiError as exc:
                event("upload_failed", reason=exc.reason)
                raise
            try:
                await run_in_threadpool(self.install, archive, folder)
            finally:
                archive.unlink(missing_ok=True)
        return folder

    def install(self, archive: Path, folder: str) -> str:
        with self.job("install", folder, "installed"):
            self.store.check_new_folder(folder, driving=self.node.model_name)
            install_archive(archive, folder, self.store, self.uploads.folder, self.uploads.limits, self.loading.step)
        return folder

    def delete(self, folders: list[str]) -> None:
        """Not while an install or load runs: both use the conversion cache that a delete prunes."""
        if not self.loading.lock.acquire(blocking=False):
            raise self.busy()
        try:
            self.store.delete(folders, driving=self.node.model_name)
        finally:
            self.loading.lock.release()

    def load(self, folder: str, model_name: str) -> None:
        """Check and compile the model here (a bad one is refused before the car is touched), then the
        policy node loads it from the state dir; it stops the car first, so the car needs a new start."""
        with self.job("load", folder, "loaded"):
            self.loading.step("compiling", 30)
            self.store.compile(folder, model_name)
            self.loading.step("switching", 90)
            try:
                self.node.load_model(self.store.get(folder).path, self.store.cache_dir)
            except ValueError as exc:
                raise ApiError(422, str(exc)) from None

    def command(self, name: str, *args: Any) -> None:
        """A request to control over the bus; control's refusals (start while a fault is present,
        calibration while driving) become 409 with control's reason."""
        try:
            self.node.ask(name, *args)
        except ValueError as exc:
            event("command_refused", command=name, args=list(args), reason=str(exc))
            raise ApiError(409, str(exc)) from None
        event("command", command=name, args=list(args))

    async def emergency_stop(self, source: str = "console") -> None:
        """On the event loop, never queued behind the thread pool; returns once control has latched it."""
        await self.node.ask_async("emergency_stop")
        event("emergency_stop", source=source)
