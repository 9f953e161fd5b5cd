"""Plain-Python mirrors of the ROS 2 messages on the car's topics.

Field names and types follow the ROS 2 definitions (std_msgs, sensor_msgs, ackermann_msgs,
diagnostic_msgs) so every transport maps them one to one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CAMERA_TOPIC = "/camera/image_raw"
POLICY_TOPIC = "/policy/drive"
TELEOP_TOPIC = "/teleop/drive"
DRIVE_TOPIC = "/drive"
DIAGNOSTICS_TOPIC = "/diagnostics"
POLICY_INPUT_TOPIC = "/policy/input"  # the model's input tensor as an image (car.policy.introspect)
POLICY_OUTPUT_TOPIC = "/policy/output"  # the model's output vector as it gives it (car.policy.introspect)


@dataclass(frozen=True)
class Time:
    sec: int = 0
    nanosec: int = 0

    @classmethod
    def from_seconds(cls, t: float) -> Time:
        ns = int(round(t * 1e9))
        return cls(ns // 1_000_000_000, ns % 1_000_000_000)

    def to_seconds(self) -> float:
        return self.sec + self.nanosec * 1e-9


@dataclass(frozen=True)
class Header:
    stamp: Time = Time()
    frame_id: str = ""


IMAGE_ENCODINGS = {"bgr8": (np.dtype(np.uint8), 3), "32FC1": (np.dtype(np.float32), 1)}


@dataclass(frozen=True)
class Image:
    """sensor_msgs/Image; `data` is the HxWx3 uint8 array for bgr8 (the camera), HxW float32 for 32FC1
    (the model's input); row step = width * pixel bytes (encodings: ROS sensor_msgs/image_encodings.hpp)."""

    header: Header
    data: np.ndarray
    encoding: str = "bgr8"

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    @property
    def step(self) -> int:
        dtype, channels = IMAGE_ENCODINGS[self.encoding]
        return self.width * channels * dtype.itemsize


@dataclass(frozen=True)
class AckermannDrive:
    steering_angle: float = 0.0
    steering_angle_velocity: float = 0.0
    speed: float = 0.0
    acceleration: float = 0.0
    jerk: float = 0.0


@dataclass(frozen=True)
class AckermannDriveStamped:
    header: Header = Header()
    drive: AckermannDrive = AckermannDrive()


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str


OK, WARN, ERROR, STALE = 0, 1, 2, 3


@dataclass(frozen=True)
class DiagnosticStatus:
    level: int
    name: str
    message: str = ""
    hardware_id: str = ""
    values: tuple[KeyValue, ...] = ()

    def value(self, key: str) -> str | None:
        return next((kv.value for kv in self.values if kv.key == key), None)


@dataclass(frozen=True)
class DiagnosticArray:
    header: Header = Header()
    status: tuple[DiagnosticStatus, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class MultiArrayDimension:
    """std_msgs/MultiArrayDimension: an axis of a multi-array (`label`, `size` elements, `stride`)."""

    label: str
    size: int
    stride: int


@dataclass(frozen=True)
class Float32MultiArray:
    """std_msgs/Float32MultiArray (its MultiArrayLayout's `dim` and `data_offset` flattened in)."""

    dim: tuple[MultiArrayDimension, ...]
    data: tuple[float, ...]
    data_offset: int = 0


@dataclass(frozen=True)
class Point:
    """geometry_msgs/Point (float64 on the wire) or Point32 (float32), in metres."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0


@dataclass(frozen=True)
class Quaternion:
    """geometry_msgs/Quaternion (x, y, z, w); the identity by default."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    w: float = 1.0


@dataclass(frozen=True)
class PoseStamped:
    """geometry_msgs/PoseStamped: `position` and `orientation` in the frame `header.frame_id`."""

    header: Header
    position: Point
    orientation: Quaternion = Quaternion()


@dataclass(frozen=True)
class PolygonStamped:
    """geometry_msgs/PolygonStamped: `points` (Point32) in the frame `header.frame_id`."""

    header: Header
    points: tuple[Point, ...]


def drive_msg(stamp: Time, steering_angle: float, speed: float, frame_id: str = "base_link") -> AckermannDriveStamped:
    return AckermannDriveStamped(Header(stamp, frame_id), AckermannDrive(steering_angle=steering_angle, speed=speed))
