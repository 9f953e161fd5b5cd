"""Camera sources for the car: a V4L2 device, a looping video file, or a looping folder of images.

Every source is read the same way: read() returns the newest frame not yet returned and its
capture time. A policy must never act on a frame that is old or empty, so a source that stops
delivering makes read() raise CameraFault within three frame periods, and a background reader
keeps trying to reopen the device so frames resume when it comes back.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from car.camera.source import CameraFault, FrameSource, RecordingEnded
from car.clock import WallClock

FAULT_PERIODS = 3
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm"}
SPEC_FORMS = "v4l2:/dev/videoN, file:VIDEO, images:DIR or bag:PATH[:loop]"
log = logging.getLogger("racer.camera")
STAMPS = WallClock()  # a frame's capture time, as its ROS stamp


def _checked(frame: np.ndarray | None, name: str) -> np.ndarray:
    if frame is None or frame.size == 0:
        raise CameraFault(f"{name}: empty frame")
    return frame


class Pacer:
    """Releases frames of a recorded source at its frame rate, as a live camera would."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._due = time.monotonic()

    def wait(self) -> float:
        delay = self._due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._due = max(self._due, time.monotonic() - self.period_s) + self.period_s
        return STAMPS.now()


class CaptureSource:
    """A source read through a cv2.VideoCapture, which is released on a fault and reopened."""

    def __init__(self, name: str, period_s: float) -> None:
        self.name = name
        self.period_s = period_s
        self._capture: cv2.VideoCapture | None = None

    def release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class V4l2Source(CaptureSource):
    """A UVC/CSI camera through OpenCV's V4L2 backend, MJPG, one-frame buffer so frames are fresh."""

    def __init__(self, device: str, width: int, height: int, fps: float) -> None:
        super().__init__(f"v4l2:{device}", 1.0 / fps)
        self.device = device
        self.width, self.height = width, height

    def open(self) -> None:
        if not os.path.exists(self.device):
            raise CameraFault(f"{self.name}: {self.device} does not exist")
        capture = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not capture.isOpened():
            raise CameraFault(f"{self.name}: cannot open {self.device} as a V4L2 capture device")
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        capture.set(cv2.CAP_PROP_FPS, 1.0 / self.period_s)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._capture = capture

    def grab(self) -> tuple[np.ndarray, float]:
        if self._capture is None or not self._capture.grab():
            raise CameraFault(f"{self.name}: stopped delivering frames")
        stamp = STAMPS.now()
        ok, frame = self._capture.retrieve()
        return _checked(frame if ok else None, self.name), stamp


class VideoFileSource(CaptureSource):
    """A recorded video played in a loop at the file's own frame rate."""

    def __init__(self, path: str, fallback_fps: float) -> None:
        super().__init__(f"file:{path}", 1.0 / fallback_fps)
        self.path = path
        self._pacer = Pacer(self.period_s)

    def open(self) -> None:
        if not os.path.isfile(self.path):
            raise CameraFault(f"{self.name}: no such file")
        capture = cv2.VideoCapture(self.path)
        if not capture.isOpened():
            raise CameraFault(f"{self.name}: not a video OpenCV can read")
        fps = capture.get(cv2.CAP_PROP_FPS)
        if fps > 0:
            self.period_s = 1.0 / fps
            self._pacer.period_s = self.period_s
        self._capture = capture

    def grab(self) -> tuple[np.ndarray, float]:
        if self._capture is None:
            raise CameraFault(f"{self.name}: not open")
        ok, frame = self._capture.read()
        if not ok:
            self.release()
            self.open()
            ok, frame = self._capture.read()
        return _checked(frame if ok else None, self.name), self._pacer.wait()


class ImageFolderSource:
    """The images of a folder in name order, in a loop; the folder is rescanned at each lap."""

    def __init__(self, folder: str, fps: float) -> None:
        self.folder = Path(folder)
        self.name = f"images:{folder}"
        self.period_s = 1.0 / fps
        self._pacer = Pacer(self.period_s)
        self._files: list[Path] = []
        self._next = 0

    def open(self) -> None:
        if not self.folder.is_dir():
            raise CameraFault(f"{self.name}: no such directory")
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self._next = 0
        if not self._files:
            raise CameraFault(f"{self.name}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")

    def grab(self) -> tuple[np.ndarray, float]:
        if self._next >= len(self._files):
            self.open()
        path = self._files[self._next]
        self._next += 1
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise CameraFault(f"{self.name}: cannot read {path.name}")
        return frame, self._pacer.wait()

    def release(self) -> None:
        self._files = []
        self._next = 0


class Camera:
    """Reads a FrameSource on a background thread; read() hands out fresh frames or raises CameraFault."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        source.open()
        self._condition = threading.Condition()
        self._frame: tuple[np.ndarray, float] | None = None
        self._arrived = 0.0
        self._sequence = 0
        self._returned = 0
        self._error = ""
        self._stop = threading.Event()
        self.ended = threading.Event()  # a recording played to its end: no frame will come again
        self._thread = threading.Thread(target=self._run, name=f"camera {source.name}", daemon=True)
        self._thread.start()

    @property
    def name(self) -> str:
        return self.source.name

    def _run(self) -> None:
        is_open = True
        while not self._stop.is_set():
            try:
                if not is_open:
                    self.source.open()
                    is_open = True
                frame, stamp = self.source.grab()
            except RecordingEnded as exc:
                log.warning("%s", exc)
                with self._condition:
                    self._error = str(exc)
                    self.ended.set()
                    self._condition.notify_all()
                break
            except (CameraFault, cv2.error, OSError) as exc:
                self.source.release()
                is_open = False
                with self._condition:  # a source's CameraFault names the source already
                    self._error = str(exc) if isinstance(exc, CameraFault) else f"{self.name}: {exc}"
                self._stop.wait(self.source.period_s)
                continue
            with self._condition:
                self._frame = (frame, stamp)
                self._arrived = time.monotonic()
                self._sequence += 1
                self._error = ""
                self._condition.notify_all()
        self.source.release()

    def read(self) -> tuple[np.ndarray, float]:
        """The newest unseen frame (BGR) and its capture time in seconds since the epoch.

        Frames older than three periods are never returned; waiting longer than that raises.
        """
        limit = FAULT_PERIODS * self.source.period_s
        deadline = time.monotonic() + limit
        with self._condition:
            while True:
                if self._stop.is_set():
                    raise CameraFault(f"{self.name}: closed")
                fresh = self._sequence != self._returned and time.monotonic() - self._arrived <= limit
                if fresh and self._frame is not None:
                    self._returned = self._sequence
                    return self._frame
                if self.ended.is_set():
                    raise CameraFault(self._error)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CameraFault(self._error or f"{self.name}: no frame for {limit * 1000:.0f} ms")
                self._condition.wait(remaining)

    def close(self) -> None:
        self._stop.set()
        with self._condition:
            self._condition.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)


def _bag_source(location: str) -> FrameSource:
    """`PATH` or `PATH:loop`; imported late: only a replay needs rosbags."""
    from car.camera.bag import LOOP_SUFFIX, BagSource

    path = location.removesuffix(LOOP_SUFFIX)
    return BagSource(path, loop=path != location)


def open_camera(spec: str, width: int = 640, height: int = 480, fps: float = 15.0) -> Camera:
    """Open `v4l2:/dev/videoN`, `file:VIDEO`, `images:DIR` or `bag:PATH[:loop]`; `sim` is the caller's to resolve.

    ValueError for a malformed spec, CameraFault when the device or file is not there.
    """
    if width <= 0 or height <= 0 or not fps > 0:
        raise ValueError(f"camera size {width}x{height} at {fps} fps: all must be positive")
    kind, _, location = spec.partition(":")
    if kind == "sim":
        raise ValueError(f"camera spec 'sim' is the simulator's camera, which the caller provides; "
                         f"open_camera opens {SPEC_FORMS}")
    sources: dict[str, Callable[[], FrameSource]] = {
        "v4l2": lambda: V4l2Source(location, width, height, fps),
        "file": lambda: VideoFileSource(location, fps),
        "images": lambda: ImageFolderSource(location, fps),
        "bag": lambda: _bag_source(location),
    }
    if kind not in sources:
        raise ValueError(f"unknown camera spec {spec!r}: expected {SPEC_FORMS}")
    if not location:
        raise ValueError(f"camera spec {spec!r}: missing the path after '{kind}:'")
    return Camera(sources[kind]())
