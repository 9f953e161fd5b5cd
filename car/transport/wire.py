"""ROS 2 wire format of the car's topics: DDS topic and type names, and CDR (XCDR1) encoding.

The IDL structs mirror the ROS 2 message definitions field for field, so what the dds transport
publishes is byte for byte what rmw_cyclonedds (and `rosbags`) produce for the same message, and
`ros2 topic echo` on the network decodes it. The plain dataclasses of `car.messages` stay the
nodes' currency; this module converts at the edge.
"""

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import float32, float64, int32, sequence, uint8, uint32

from car.messages import (
    CAMERA_TOPIC,
    DIAGNOSTICS_TOPIC,
    DRIVE_TOPIC,
    IMAGE_ENCODINGS,
    POLICY_INPUT_TOPIC,
    POLICY_OUTPUT_TOPIC,
    POLICY_TOPIC,
    TELEOP_TOPIC,
    AckermannDrive,
    AckermannDriveStamped,
    DiagnosticArray,
    DiagnosticStatus,
    Float32MultiArray,
    Header,
    Image,
    KeyValue,
    MultiArrayDimension,
    Point,
    PolygonStamped,
    PoseStamped,
    Quaternion,
    Time,
)

CLOCK_TOPIC = "/clock"
COMMAND_TOPIC = "/control/command"
CALIBRATION_TOPIC = "/actuator/calibration"  # control -> actuator: the calibration.json document (JSON)
MODEL_TOPIC = "/policy/load"  # any node -> policy: load a bundle directory (JSON), answered on /diagnostics
SIM_CAMERA_TOPIC = "/sim/camera/image_raw"
SIM_SERVO_TOPIC = "/sim/servo"
# The simulated car's ground truth and the track it drives on, in the track's frame (SIM_FRAME, metres): what
# a visualiser draws (a real car has neither). Borders and centre line as polygons, re-sent every second.
SIM_POSE_TOPIC = "/sim/pose"
SIM_TRACK_TOPICS = {"center_line": "/sim/track/center_line", "inner_border": "/sim/track/inner_border",
                    "outer_border": "/sim/track/outer_border"}
SIM_FRAME = "map"

CDR_LE, CDR_BE = b"\x00\x01", b"\x00\x00"


class WireError(ValueError):
    """Bytes or a message that cannot cross the wire as the topic's ROS 2 type."""


@dataclass(frozen=True)
class ServoCtrl:
    """deepracer_interfaces_pkg/ServoCtrlMsg: normalised servo and ESC commands (-1..1, + = left / forward)."""

    angle: float = 0.0
    throttle: float = 0.0


def dds_type_name(ros_type: str) -> str:
    """`sensor_msgs/msg/Image` -> `sensor_msgs::msg::dds_::Image_`, as rmw_cyclonedds names types."""
    package, kind, name = ros_type.split("/")
    return f"{package}::{kind}::dds_::{name}_"


def dds_topic_name(topic: str) -> str:
    """`/drive` -> `rt/drive`: the ROS 2 prefix for topics on DDS."""
    if not topic.startswith("/"):
        raise WireError(f"topic {topic!r} must be absolute (start with '/')")
    return "rt" + topic


@dataclass
class TimeMsg(IdlStruct, typename=dds_type_name("builtin_interfaces/msg/Time")):
    sec: int32
    nanosec: uint32


@dataclass
class HeaderMsg(IdlStruct, typename=dds_type_name("std_msgs/msg/Header")):
    stamp: TimeMsg
    frame_id: str


@dataclass
class ImageMsg(IdlStruct, typename=dds_type_name("sensor_msgs/msg/Image")):
    header: HeaderMsg
    height: uint32
    width: uint32
    encoding: str
    is_bigendian: uint8
    step: uint32
    data: sequence[uint8]


@dataclass
class AckermannDriveMsg(IdlStruct, typename=dds_type_name("ackermann_msgs/msg/AckermannDrive")):
    steering_angle: float32
    steering_angle_velocity: float32
    speed: float32
    acceleration: float32
    jerk: float32


@dataclass
class AckermannDriveStampedMsg(IdlStruct, typename=dds_type_name("ackermann_msgs/msg/AckermannDriveStamped")):
    header: HeaderMsg
    drive: AckermannDriveMsg


@dataclass
class KeyValueMsg(IdlStruct, typename=dds_type_name("diagnostic_msgs/msg/KeyValue")):
    key: str
    value: str


@dataclass
class DiagnosticStatusMsg(IdlStruct, typename=dds_type_name("diagnostic_msgs/msg/DiagnosticStatus")):
    level: uint8
    name: str
    message: str
    hardware_id: str
    values: sequence[KeyValueMsg]


@dataclass
class DiagnosticArrayMsg(IdlStruct, typename=dds_type_name("diagnostic_msgs/msg/DiagnosticArray")):
    header: HeaderMsg
    status: sequence[DiagnosticStatusMsg]


@dataclass
class MultiArrayDimensionMsg(IdlStruct, typename=dds_type_name("std_msgs/msg/MultiArrayDimension")):
    label: str
    size: uint32
    stride: uint32


@dataclass
class MultiArrayLayoutMsg(IdlStruct, typename=dds_type_name("std_msgs/msg/MultiArrayLayout")):
    dim: sequence[MultiArrayDimensionMsg]
    data_offset: uint32


@dataclass
class Float32MultiArrayMsg(IdlStruct, typename=dds_type_name("std_msgs/msg/Float32MultiArray")):
    layout: MultiArrayLayoutMsg
    data: sequence[float32]


@dataclass
class PointMsg(IdlStruct, typename=dds_type_name("geometry_msgs/msg/Point")):
    x: float64
    y: float64
    z: float64


@dataclass
class QuaternionMsg(IdlStruct, typename=dds_type_name("geometry_msgs/msg/Quaternion")):
    x: float64
    y: float64
    z: float64
    w: float64


@dataclass
class PoseMsg(IdlStruct, typename=dds_type_name("geometry_msgs/msg/Pose")):
    position: PointMsg
    orientation: QuaternionMsg


@dataclass
class PoseStampedMsg(IdlStruct, typename=dds_type_name("geometry_msgs/msg/PoseStamped")):
    header: HeaderMsg
    pose: PoseMsg


@dataclass
class Point32Msg(IdlStruct, typename=dds_type_name("geometry_msgs/msg/Point32")):
    x: float32
    y: float32
    z: float32


@dataclass
class PolygonMsg(IdlStruct, typename=dds_type_name("geometry_msgs/msg/Polygon")):
    points: sequence[Point32Msg]


@dataclass
class PolygonStampedMsg(IdlStruct, typename=dds_type_name("geometry_msgs/msg/PolygonStamped")):
    header: HeaderMsg
    polygon: PolygonMsg


@dataclass
class ClockMsg(IdlStruct, typename=dds_type_name("rosgraph_msgs/msg/Clock")):
    clock: TimeMsg


@dataclass
class StringMsg(IdlStruct, typename=dds_type_name("std_msgs/msg/String")):
    data: str


@dataclass
class ServoCtrlMsg(IdlStruct, typename=dds_type_name("deepracer_interfaces_pkg/msg/ServoCtrlMsg")):
    angle: float32
    throttle: float32


def _time(t: Time) -> TimeMsg:
    return TimeMsg(t.sec, t.nanosec)


def _header(h: Header) -> HeaderMsg:
    return HeaderMsg(_time(h.stamp), h.frame_id)


def _plain_header(h: HeaderMsg) -> Header:
    return Header(Time(h.stamp.sec, h.stamp.nanosec), h.frame_id)


class _CdrWriter:
    """Little-endian XCDR1; alignment counts from the end of the 4-byte encapsulation header."""

    def __init__(self) -> None:
        self.out = bytearray(CDR_LE + b"\0\0")

    def align(self, n: int) -> None:
        self.out += b"\0" * (-(len(self.out) - 4) % n)

    def pack(self, fmt: str, *values: Any) -> None:
        self.align(struct.calcsize("<" + fmt[0]))
        self.out += struct.pack("<" + fmt, *values)

    def string(self, text: str) -> None:
        raw = text.encode()
        self.pack("I", len(raw) + 1)
        self.out += raw + b"\0"


class _CdrReader:
    def __init__(self, data: bytes | memoryview):
        self.data = memoryview(data)
        self.order = "<" if bytes(self.data[:2]) == CDR_LE else ">"
        self.pos = 4

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize("<" + fmt[0])
        self.pos += -(self.pos - 4) % size
        values = struct.unpack_from(self.order + fmt, self.data, self.pos)
        self.pos += struct.calcsize(self.order + fmt)
        return values

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise WireError(f"{n} bytes announced at offset {self.pos}, only {len(self.data) - self.pos} left")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def string(self) -> str:
        (length,) = self.unpack("I")
        raw = bytes(self.take(length))
        if not length or raw[-1:] != b"\0":
            raise WireError("string without its terminating NUL")
        return raw[:-1].decode()


def _image_shape(encoding: str, height: int, width: int) -> tuple[np.dtype, tuple[int, ...]]:
    dtype, channels = IMAGE_ENCODINGS[encoding]
    return dtype, (height, width, channels) if channels > 1 else (height, width)


def _encode_image(msg: Image) -> bytes:
    """sensor_msgs/Image without the per-element IDL machinery: the pixels are copied once, as bytes
    (little endian, is_bigendian 0)."""
    data = msg.data
    if msg.encoding not in IMAGE_ENCODINGS or data.ndim < 2 or (data.dtype, data.shape) != _image_shape(
            msg.encoding, *data.shape[:2]):
        raise WireError(f"image must be bgr8 uint8 HxWx3 or 32FC1 float32 HxW, got {msg.encoding} {data.dtype} "
                        f"{data.shape}")
    w = _CdrWriter()
    w.pack("iI", msg.header.stamp.sec, msg.header.stamp.nanosec)
    w.string(msg.header.frame_id)
    w.pack("II", msg.height, msg.width)
    w.string(msg.encoding)
    w.pack("B", 0)
    w.pack("II", msg.step, data.nbytes)
    w.out += np.ascontiguousarray(data, data.dtype.newbyteorder("<")).data
    return bytes(w.out)


def _decode_image(data: bytes) -> Image:
    r = _CdrReader(data)
    sec, nanosec = r.unpack("iI")
    frame_id = r.string()
    height, width = r.unpack("II")
    encoding = r.string()
    (big_endian,) = r.unpack("B")
    step, size = r.unpack("II")
    if encoding not in IMAGE_ENCODINGS:
        raise WireError(f"image encoding {encoding!r} is not supported; the car uses {' and '.join(IMAGE_ENCODINGS)}")
    dtype, shape = _image_shape(encoding, height, width)
    if step != width * int(np.prod(shape[2:])) * dtype.itemsize or size != step * height:
        raise WireError(f"image {width}x{height} step {step} does not match {size} data bytes")
    dtype = dtype.newbyteorder(">" if big_endian else "<")
    pixels = np.frombuffer(r.take(size), dtype).reshape(shape)
    return Image(Header(Time(sec, nanosec), frame_id), pixels, encoding)


def _drive(msg: AckermannDriveStamped) -> AckermannDriveStampedMsg:
    d = msg.drive
    return AckermannDriveStampedMsg(_header(msg.header), AckermannDriveMsg(
        d.steering_angle, d.steering_angle_velocity, d.speed, d.acceleration, d.jerk))


def _plain_drive(msg: AckermannDriveStampedMsg) -> AckermannDriveStamped:
    d = msg.drive
    return AckermannDriveStamped(_plain_header(msg.header), AckermannDrive(
        d.steering_angle, d.steering_angle_velocity, d.speed, d.acceleration, d.jerk))


def _diagnostics(msg: DiagnosticArray) -> DiagnosticArrayMsg:
    return DiagnosticArrayMsg(_header(msg.header), [
        DiagnosticStatusMsg(s.level, s.name, s.message, s.hardware_id,
                            [KeyValueMsg(kv.key, kv.value) for kv in s.values])
        for s in msg.status])


def _plain_diagnostics(msg: DiagnosticArrayMsg) -> DiagnosticArray:
    return DiagnosticArray(_plain_header(msg.header), tuple(
        DiagnosticStatus(s.level, s.name, s.message, s.hardware_id,
                         tuple(KeyValue(kv.key, kv.value) for kv in s.values))
        for s in msg.status))


def _multiarray(msg: Float32MultiArray) -> Float32MultiArrayMsg:
    dims = [MultiArrayDimensionMsg(d.label, d.size, d.stride) for d in msg.dim]
    return Float32MultiArrayMsg(MultiArrayLayoutMsg(dims, msg.data_offset), list(msg.data))


def _plain_multiarray(msg: Float32MultiArrayMsg) -> Float32MultiArray:
    return Float32MultiArray(tuple(MultiArrayDimension(d.label, d.size, d.stride) for d in msg.layout.dim),
                             tuple(msg.data), msg.layout.data_offset)


def _pose(msg: PoseStamped) -> PoseStampedMsg:
    p, q = msg.position, msg.orientation
    return PoseStampedMsg(_header(msg.header), PoseMsg(PointMsg(p.x, p.y, p.z), QuaternionMsg(q.x, q.y, q.z, q.w)))


def _plain_pose(msg: PoseStampedMsg) -> PoseStamped:
    p, q = msg.pose.position, msg.pose.orientation
    return PoseStamped(_plain_header(msg.header), Point(p.x, p.y, p.z), Quaternion(q.x, q.y, q.z, q.w))


def _polygon(msg: PolygonStamped) -> PolygonStampedMsg:
    return PolygonStampedMsg(_header(msg.header), PolygonMsg([Point32Msg(p.x, p.y, p.z) for p in msg.points]))


def _plain_polygon(msg: PolygonStampedMsg) -> PolygonStamped:
    return PolygonStamped(_plain_header(msg.header), tuple(Point(p.x, p.y, p.z) for p in msg.polygon.points))


@dataclass(frozen=True)
class WireType:
    """One ROS 2 message type: its name, the IDL struct that names it on DDS, and its CDR codec.

    `encode` gives CDR (XCDR1, little endian) with its 4-byte encapsulation header: the bytes
    rosbags serialises for the same message, without trailing padding."""

    ros_type: str
    idl: type[IdlStruct]
    _encode: Callable[[Any], bytes]
    _decode: Callable[[bytes], Any]

    def encode(self, msg: Any) -> bytes:
        return self._encode(msg)

    def decode(self, data: bytes | memoryview) -> Any:
        if bytes(data[:2]) not in (CDR_LE, CDR_BE):
            raise WireError(f"{self.ros_type}: not plain CDR (encapsulation {bytes(data[:4]).hex() or 'missing'})")
        try:
            return self._decode(data)
        except WireError as exc:
            raise WireError(f"{self.ros_type}: {exc}") from None
        except Exception as exc:  # the binding raises bare Exception, struct.error or UnicodeError on bad data
            raise WireError(f"{self.ros_type}: cannot decode {len(data)} bytes: {exc}") from None


def _idl_type(ros_type: str, idl: type[IdlStruct], to_wire: Callable[[Any], IdlStruct],
              from_wire: Callable[[Any], Any]) -> WireType:
    return WireType(ros_type, idl, lambda msg: to_wire(msg).serialize(use_version_2=False),
                    lambda data: from_wire(idl.deserialize(bytes(data))))


IMAGE = WireType("sensor_msgs/msg/Image", ImageMsg, _encode_image, _decode_image)
DRIVE = _idl_type("ackermann_msgs/msg/AckermannDriveStamped", AckermannDriveStampedMsg, _drive, _plain_drive)
DIAGNOSTICS = _idl_type("diagnostic_msgs/msg/DiagnosticArray", DiagnosticArrayMsg, _diagnostics, _plain_diagnostics)
CLOCK = _idl_type("rosgraph_msgs/msg/Clock", ClockMsg, lambda t: ClockMsg(_time(t)),
                  lambda m: Time(m.clock.sec, m.clock.nanosec))
STRING = _idl_type("std_msgs/msg/String", StringMsg, StringMsg, lambda m: m.data)
SERVO = _idl_type("deepracer_interfaces_pkg/msg/ServoCtrlMsg", ServoCtrlMsg,
                  lambda s: ServoCtrlMsg(s.angle, s.throttle), lambda m: ServoCtrl(m.angle, m.throttle))
MULTIARRAY = _idl_type("std_msgs/msg/Float32MultiArray", Float32MultiArrayMsg, _multiarray, _plain_multiarray)
POSE = _idl_type("geometry_msgs/msg/PoseStamped", PoseStampedMsg, _pose, _plain_pose)
POLYGON = _idl_type("geometry_msgs/msg/PolygonStamped", PolygonStampedMsg, _polygon, _plain_polygon)

TOPIC_TYPES: dict[str, WireType] = {
    CAMERA_TOPIC: IMAGE,
    POLICY_TOPIC: DRIVE,
    TELEOP_TOPIC: DRIVE,
    DRIVE_TOPIC: DRIVE,
    DIAGNOSTICS_TOPIC: DIAGNOSTICS,
    CLOCK_TOPIC: CLOCK,
    COMMAND_TOPIC: STRING,
    CALIBRATION_TOPIC: STRING,
    MODEL_TOPIC: STRING,
    SIM_CAMERA_TOPIC: IMAGE,
    SIM_SERVO_TOPIC: SERVO,
    POLICY_INPUT_TOPIC: IMAGE,
    POLICY_OUTPUT_TOPIC: MULTIARRAY,
    SIM_POSE_TOPIC: POSE,
    **dict.fromkeys(SIM_TRACK_TOPICS.values(), POLYGON),
}


def wire_type(topic: str) -> WireType:
    try:
        return TOPIC_TYPES[topic]
    except KeyError:
        raise WireError(f"unknown topic {topic!r}; the car's topics are {', '.join(sorted(TOPIC_TYPES))}") from None
