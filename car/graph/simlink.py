"""The car's side of the simulator link, for `--sim` with one process per node.

The simulator world (camera renderer and car body) runs in its own process. It publishes rendered
frames on /sim/camera/image_raw and applies the normalised commands it receives on /sim/servo
(deepracer_interfaces_pkg/ServoCtrlMsg, the DeepRacer servo node's message), so the camera and
actuator nodes use the same code paths as on hardware: a camera source and an actuator driver.
"""
from __future__ import annotations

import queue

import numpy as np

from car.camera.source import CameraFault
from car.graph.adapters import Bus
from car.messages import Image
from car.transport.wire import SIM_CAMERA_TOPIC, SIM_SERVO_TOPIC, ServoCtrl

FRAME_TIMEOUT_S = 1.0


class SimLinkCamera:
    """A camera source (`read() -> (frame, stamp)`) fed by the simulator's frames, stamped in sim time."""

    def __init__(self, bus: Bus, timeout_s: float = FRAME_TIMEOUT_S):
        self.timeout_s = timeout_s
        self._latest: queue.Queue[Image] = queue.Queue(maxsize=1)
        bus.subscribe(SIM_CAMERA_TOPIC, self._on_frame)

    def _on_frame(self, msg: Image) -> None:
        try:
            self._latest.get_nowait()  # keep only the newest frame, as a camera with a one-frame buffer
        except queue.Empty:
            pass
        self._latest.put_nowait(msg)

    def read(self) -> tuple[np.ndarray, float]:
        try:
            msg = self._latest.get(timeout=self.timeout_s)
        except queue.Empty:
            raise CameraFault(f"sim: no frame from the simulator for {self.timeout_s:.1f} s") from None
        return msg.data, msg.header.stamp.to_seconds()


class SimLinkDriver:
    """An actuator driver whose servo and ESC are the simulated car's, reached over /sim/servo."""

    def __init__(self, bus: Bus):
        self._publish = bus.publisher(SIM_SERVO_TOPIC)
        self.neutral()

    def set(self, steering: float, throttle: float) -> None:
        self._publish(ServoCtrl(steering, throttle))

    def neutral(self) -> None:
        self._publish(ServoCtrl(0.0, 0.0))

    def close(self) -> None:
        self.neutral()
