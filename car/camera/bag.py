"""`bag:PATH`: a recorded drive (rosbag2) as a camera; `bag:PATH:loop` replays it in a loop.

A replay ends with the recording (RecordingEnded), so the car sees a camera that is gone and a
`--record` of the replay holds each frame once. A replayed frame keeps its recorded stamp (shifted
by whole bag lengths when the replay loops), so the policy's /policy/drive commands carry the same
stamps as the recorded ones and can be compared one to one.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader

from car.camera.source import CameraFault, RecordingEnded
from car.messages import CAMERA_TOPIC
from car.transport.wire import IMAGE, WireError

log = logging.getLogger("racer.camera")
LOOP_SUFFIX = ":loop"


class BagSource:
    """The /camera/image_raw frames of a rosbag2 directory, released at their recorded pace, once
    (then read() raises RecordingEnded) or in a loop.

    A camera source (`read() -> (frame, stamp)`, in recorded order) and a FrameSource for
    `car.camera.capture.Camera` (`open`, `grab`, `release`), so `bag:PATH` opens like any other camera spec.
    """

    def __init__(self, path: str | Path, topic: str = CAMERA_TOPIC, realtime: bool = True, loop: bool = False):
        self.path = Path(path)
        self.name = f"bag:{path}"
        self.topic = topic
        self.realtime = realtime
        self.loop = loop
        self.frames = 0
        self.period_s = 1.0 / 15.0
        self._reader: Reader | None = None
        self._frames: Iterator[tuple[Connection, int, bytes]] | None = None
        self._connections: list[Connection] = []
        self._first_stamp: float | None = None
        self._length_s = 0.0
        self._loop = 0
        self._started = 0.0

    def open(self) -> None:
        if not (self.path / "metadata.yaml").is_file():
            raise CameraFault(f"{self.name}: not a rosbag2 directory (no metadata.yaml)")
        try:
            reader = Reader(self.path)
            reader.open()
        except Exception as exc:  # rosbags raises its own error types per storage plugin
            raise CameraFault(f"{self.name}: cannot open: {exc}") from None
        self._connections = [c for c in reader.connections if c.topic == self.topic]
        count = sum(c.msgcount for c in self._connections)
        if count == 0:
            reader.close()
            raise CameraFault(f"{self.name}: no {self.topic} messages")
        self._reader = reader
        duration_s = reader.duration * 1e-9
        if count > 1 and duration_s > 0:
            self.period_s = duration_s / (count - 1)
        self._length_s = duration_s + self.period_s
        self._loop = 0
        self._rewind()

    def _rewind(self) -> None:
        assert self._reader is not None
        self._frames = self._reader.messages(connections=self._connections)
        self._first_stamp = None

    def read(self) -> tuple[np.ndarray, float]:
        if self._reader is None or self._frames is None:
            raise CameraFault(f"{self.name}: not open")
        item = next(self._frames, None)
        if item is None:
            if not self.loop:
                raise RecordingEnded(f"{self.name}: the recording ended after {self.frames} frames "
                                     f"(bag:{self.path}{LOOP_SUFFIX} replays it in a loop)")
            self._loop += 1
            log.info("%s: end of the recording, replaying it from the start (loop %d)", self.name, self._loop + 1)
            self._rewind()
            item = next(self._frames)
        self.frames += 1
        _, _, raw = item
        try:
            image = IMAGE.decode(raw)
        except WireError as exc:
            raise CameraFault(f"{self.name}: {exc}") from None
        stamp = image.header.stamp.to_seconds()
        if self._first_stamp is None:
            self._first_stamp, self._started = stamp, time.monotonic()
        elif self.realtime:
            delay = self._started + (stamp - self._first_stamp) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return image.data, stamp + self._loop * self._length_s

    grab = read

    def release(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader = None
        self._frames = None
