"""What every camera source is: the FrameSource protocol and CameraFault, its one error.

The sources (`car.camera.capture` for devices, files and folders, `car.camera.bag` for a recorded
drive, `car.graph.simlink` for the simulator) and the nodes that read them meet here, so none of
them imports another to share the error type.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np


class CameraFault(RuntimeError):
    """No fresh frame: the device is gone, stalled, or returned something that is not an image."""


class RecordingEnded(CameraFault):
    """A recording played to its end: no frame will come again, so the source is not reopened."""


class FrameSource(Protocol):
    """One kind of device, driven by Camera's reader thread; open/grab raise CameraFault.

    grab() returns a BGR frame (H x W x 3, uint8) and its stamp in seconds (the capture time; a
    replay's recorded stamp).
    """

    name: str
    period_s: float

    def open(self) -> None: ...

    def grab(self) -> tuple[np.ndarray, float]: ...

    def release(self) -> None: ...
