"""The dds transport speaks ROS 2: its bytes are what rosbags serialises, and another process decodes them."""
import json
import math
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from car.clock import WallClock
from car.messages import (
    CAMERA_TOPIC,
    DIAGNOSTICS_TOPIC,
    DRIVE_TOPIC,
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
from car.transport.dds import DdsBus
from car.transport.rosbag import typestore
from car.transport.wire import (
    CLOCK_TOPIC,
    COMMAND_TOPIC,
    IMAGE,
    SIM_CAMERA_TOPIC,
    SIM_POSE_TOPIC,
    SIM_SERVO_TOPIC,
    SIM_TRACK_TOPICS,
    ServoCtrl,
    WireError,
    dds_topic_name,
    dds_type_name,
    wire_type,
)
from dds_support import loopback_domain

STORE = typestore()
T = STORE.types
STAMP = Time(1_732_000_123, 456_789_012)
PIXELS = np.random.default_rng(7).integers(0, 256, (120, 160, 3), dtype=np.uint8)

MESSAGES = {
    CAMERA_TOPIC: Image(Header(STAMP, "camera"), PIXELS),
    SIM_CAMERA_TOPIC: Image(Header(STAMP, "cam"), PIXELS[:5, :7]),  # odd sizes: no alignment to lean on
    POLICY_TOPIC: AckermannDriveStamped(Header(STAMP, "base_link"), AckermannDrive(0.25, 0.0, 1.5, 0.0, 0.0)),
    TELEOP_TOPIC: AckermannDriveStamped(Header(STAMP, "teleop"), AckermannDrive(-0.5, 0.1, -1.0, 0.2, 0.3)),
    DRIVE_TOPIC: AckermannDriveStamped(Header(STAMP, "x"), AckermannDrive(math.pi / 7, 0.0, 2.0, 0.0, 0.0)),
    DIAGNOSTICS_TOPIC: DiagnosticArray(Header(STAMP), (
        DiagnosticStatus(2, "policy", "NaN in output", "ov", (KeyValue("frames", "12"), KeyValue("fps", "14.9"))),
        DiagnosticStatus(0, "caméra", "ok"))),
    CLOCK_TOPIC: STAMP,
    COMMAND_TOPIC: '{"command": "start", "id": "7"}',
    SIM_SERVO_TOPIC: ServoCtrl(-0.75, 0.5),
    # the model's input: float32 pixels, odd width (no alignment to lean on)
    POLICY_INPUT_TOPIC: Image(Header(STAMP, "model_input"), np.linspace(-1, 255, 5 * 7, dtype=np.float32).reshape(5, 7),
                              "32FC1"),
    POLICY_OUTPUT_TOPIC: Float32MultiArray((MultiArrayDimension("action", 3, 3),), (0.125, 0.5, 0.375)),
    SIM_POSE_TOPIC: PoseStamped(Header(STAMP, "map"), Point(1.25, -3.5, 0.0), Quaternion(0.0, 0.0, 0.6, 0.8)),
    SIM_TRACK_TOPICS["center_line"]: PolygonStamped(Header(STAMP, "map"), (Point(0.5, 1.5), Point(-2.25, 3.0, 0.0))),
}


def header(h: Header):
    return T["std_msgs/msg/Header"](T["builtin_interfaces/msg/Time"](h.stamp.sec, h.stamp.nanosec), h.frame_id)


def rosbags_message(topic: str, msg):
    """The same message built with rosbags' own classes, independently of car.transport.wire."""
    ros_type = wire_type(topic).ros_type
    cls = T[ros_type]
    if ros_type == "sensor_msgs/msg/Image":
        return cls(header(msg.header), msg.height, msg.width, msg.encoding, 0, msg.step,
                   np.ascontiguousarray(msg.data).view(np.uint8).reshape(-1))
    if ros_type == "ackermann_msgs/msg/AckermannDriveStamped":
        d = msg.drive
        return cls(header(msg.header), T["ackermann_msgs/msg/AckermannDrive"](
            d.steering_angle, d.steering_angle_velocity, d.speed, d.acceleration, d.jerk))
    if ros_type == "diagnostic_msgs/msg/DiagnosticArray":
        return cls(header(msg.header), [T["diagnostic_msgs/msg/DiagnosticStatus"](
            s.level, s.name, s.message, s.hardware_id, [T["diagnostic_msgs/msg/KeyValue"](kv.key, kv.value)
                                                        for kv in s.values]) for s in msg.status])
    if ros_type == "rosgraph_msgs/msg/Clock":
        return cls(T["builtin_interfaces/msg/Time"](msg.sec, msg.nanosec))
    if ros_type == "std_msgs/msg/String":
        return cls(msg)
    if ros_type == "std_msgs/msg/Float32MultiArray":
        dims = [T["std_msgs/msg/MultiArrayDimension"](d.label, d.size, d.stride) for d in msg.dim]
        return cls(T["std_msgs/msg/MultiArrayLayout"](dims, msg.data_offset), np.array(msg.data, np.float32))
    if ros_type == "geometry_msgs/msg/PoseStamped":
        p, q = msg.position, msg.orientation
        pose = T["geometry_msgs/msg/Pose"](T["geometry_msgs/msg/Point"](p.x, p.y, p.z),
                                           T["geometry_msgs/msg/Quaternion"](q.x, q.y, q.z, q.w))
        return cls(header(msg.header), pose)
    if ros_type == "geometry_msgs/msg/PolygonStamped":
        return cls(header(msg.header), T["geometry_msgs/msg/Polygon"](
            [T["geometry_msgs/msg/Point32"](p.x, p.y, p.z) for p in msg.points]))
    return cls(msg.angle, msg.throttle)


def rosbags_bytes(topic: str) -> bytes:
    return bytes(STORE.serialize_cdr(rosbags_message(topic, MESSAGES[topic]), wire_type(topic).ros_type))


def padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


@pytest.mark.parametrize("topic", sorted(MESSAGES))
def test_encoding_is_byte_for_byte_what_rosbags_serialises(topic):
    wire = wire_type(topic)
    assert wire.encode(MESSAGES[topic]) == rosbags_bytes(topic)
    decoded = wire.decode(rosbags_bytes(topic))
    if isinstance(decoded, Image):
        assert decoded.header == MESSAGES[topic].header and np.array_equal(decoded.data, MESSAGES[topic].data)
    elif topic in (POLICY_TOPIC, TELEOP_TOPIC, DRIVE_TOPIC, SIM_SERVO_TOPIC):
        assert decoded == wire.decode(wire.encode(decoded))  # float32 on the wire: compare after one round
    else:
        assert decoded == MESSAGES[topic]


def test_ros_2_names_on_dds():
    assert dds_topic_name("/camera/image_raw") == "rt/camera/image_raw"
    assert (dds_type_name("ackermann_msgs/msg/AckermannDriveStamped")
            == "ackermann_msgs::msg::dds_::AckermannDriveStamped_")
    with pytest.raises(WireError, match="must be absolute"):
        dds_topic_name("drive")
    with pytest.raises(WireError, match="unknown topic '/cmd_vel'"):
        wire_type("/cmd_vel")


def test_big_endian_cdr_decodes_too():
    msg = MESSAGES[SIM_CAMERA_TOPIC]
    be = bytes(STORE.serialize_cdr(rosbags_message(SIM_CAMERA_TOPIC, msg), "sensor_msgs/msg/Image",
                                   little_endian=False))
    decoded = IMAGE.decode(be)
    assert decoded.header == msg.header and np.array_equal(decoded.data, msg.data)


@pytest.mark.parametrize("topic, data, reason", [
    (CAMERA_TOPIC, b"", "not plain CDR"),
    (CAMERA_TOPIC, b"\x00\x07\x00\x00" + bytes(40), "not plain CDR"),
    (CAMERA_TOPIC, rosbags_bytes(CAMERA_TOPIC)[:200], "57600 bytes announced"),
    (DRIVE_TOPIC, rosbags_bytes(DRIVE_TOPIC)[:20], "cannot decode 20 bytes"),
])
def test_bad_bytes_are_a_clear_error(topic, data, reason):
    with pytest.raises(WireError, match=reason):
        wire_type(topic).decode(data)


def test_images_the_car_cannot_use_are_refused():
    mono = T["sensor_msgs/msg/Image"](header(Header(STAMP)), 2, 2, "mono8", 0, 2, np.zeros(4, np.uint8))
    with pytest.raises(WireError, match="encoding 'mono8' is not supported"):
        IMAGE.decode(bytes(STORE.serialize_cdr(mono, "sensor_msgs/msg/Image")))
    short = T["sensor_msgs/msg/Image"](header(Header(STAMP)), 2, 2, "bgr8", 0, 6, np.zeros(5, np.uint8))
    with pytest.raises(WireError, match="does not match 5 data bytes"):
        IMAGE.decode(bytes(STORE.serialize_cdr(short, "sensor_msgs/msg/Image")))
    with pytest.raises(WireError, match="bgr8 uint8 HxWx3"):
        IMAGE.encode(Image(Header(), np.zeros((4, 4), np.uint8)))


def test_another_process_decodes_what_the_car_publishes_with_rosbags():
    with loopback_domain() as env:
        bus = DdsBus("wire_test")
        publishers = {topic: bus.publisher(topic) for topic in MESSAGES}
        probe = subprocess.Popen([sys.executable, str(Path(__file__).with_name("dds_probe.py")), *MESSAGES],
                                 env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                                 stdout=subprocess.PIPE, text=True)
        bus.timer(0.05, lambda: [publish(MESSAGES[t]) for t, publish in publishers.items()], WallClock())
        spinner = threading.Thread(target=bus.spin, daemon=True)
        spinner.start()
        try:
            out, _ = probe.communicate(timeout=60)
        finally:
            bus.stop()
            spinner.join(timeout=5)
            bus.close()
    report = json.loads(out)
    assert sorted(report["samples"]) == sorted(MESSAGES)
    for topic, sample in report["samples"].items():
        assert bytes.fromhex(sample["hex"]) == padded(rosbags_bytes(topic)), topic
    assert report["samples"][CLOCK_TOPIC]["decoded"] == {"clock": {"sec": STAMP.sec, "nanosec": STAMP.nanosec}}
    drive = report["samples"][DRIVE_TOPIC]["decoded"]
    assert drive["header"]["frame_id"] == "x" and drive["drive"]["speed"] == 2.0
    assert report["samples"][DIAGNOSTICS_TOPIC]["decoded"]["status"][1]["name"] == "caméra"
    writers = report["writers"]
    camera = writers["rt/camera/image_raw"]
    assert camera["type_name"] == "sensor_msgs::msg::dds_::Image_"
    assert "BestEffort" in camera["qos"] and "KeepLast(depth=1)" in camera["qos"]
    for topic in ("rt/drive", "rt/policy/drive", "rt/teleop/drive"):
        assert writers[topic]["type_name"] == "ackermann_msgs::msg::dds_::AckermannDriveStamped_"
        assert "Reliable" in writers[topic]["qos"] and "KeepLast(depth=1)" in writers[topic]["qos"]
    assert "Deadline(deadline=50000000)" in writers["rt/drive"]["qos"]
    assert all("use_cdrv0_representation=True" in w["qos"] for w in writers.values())
