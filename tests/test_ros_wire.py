"""racer's CDR and real rclpy's serialisation decode each other, for every message type the car puts on the wire."""
import importlib

import numpy as np
import pytest

import ros_support  # noqa: F401  (first: without `make ros` it says so)
from car.messages import Image
from car.transport.wire import wire_type
from test_dds_wire import MESSAGES, rosbags_message

# rclpy only after ros_support, which turns a missing `make ros` into its one-line hint
# isort: split
from rclpy.serialization import deserialize_message, serialize_message


def rclpy_class(ros_type: str) -> type:
    package, kind, name = ros_type.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def to_rclpy(value, ros_type: str):
    """A rosbags message as the generated rclpy class, field by field (independent of car.transport.wire)."""
    msg = rclpy_class(ros_type)()
    for field, field_type in msg.get_fields_and_field_types().items():
        item = getattr(value, field)
        nested = field_type.removeprefix("sequence<").removesuffix(">")
        if "/" in nested:  # a message type, alone or in a sequence
            item = ([to_rclpy(v, nested.replace("/", "/msg/")) for v in item] if field_type.startswith("sequence<")
                    else to_rclpy(item, nested.replace("/", "/msg/")))
        elif isinstance(item, np.ndarray):
            item = item.tobytes()
        elif field_type == "octet":  # ROS `byte` (DiagnosticStatus.level) is a bytes object in rclpy
            item = bytes([item])
        setattr(msg, field, item)
    return msg


def on_the_wire(topic: str):
    """The car's message as it is after one trip over the wire (float32 fields rounded)."""
    wire = wire_type(topic)
    return wire.decode(wire.encode(MESSAGES[topic]))


def same(a, b) -> bool:
    if isinstance(a, Image):
        return a.header == b.header and a.encoding == b.encoding and np.array_equal(a.data, b.data)
    return a == b


@pytest.mark.parametrize("topic", sorted(MESSAGES))
def test_rclpy_decodes_racers_bytes(topic):
    wire, msg = wire_type(topic), on_the_wire(topic)
    decoded = deserialize_message(wire.encode(msg), rclpy_class(wire.ros_type))
    assert decoded == to_rclpy(rosbags_message(topic, msg), wire.ros_type)


@pytest.mark.parametrize("topic", sorted(MESSAGES))
def test_racer_decodes_rclpys_bytes(topic):
    wire, msg = wire_type(topic), on_the_wire(topic)
    data = serialize_message(to_rclpy(rosbags_message(topic, msg), wire.ros_type))
    assert same(wire.decode(data), msg)


def test_the_bytes_differ_at_most_in_padding():
    """Fast CDR leaves the alignment padding after a string unzeroed; every other byte is the same."""
    topic = "/drive"
    wire, msg = wire_type(topic), on_the_wire(topic)
    ours, theirs = wire.encode(msg), serialize_message(to_rclpy(rosbags_message(topic, msg), wire.ros_type))
    assert len(theirs) == len(ours) == 40  # encapsulation 4, stamp 8, frame_id "x" 4 + 2, padding 2, drive 5 x 4
    differing = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
    assert all(18 <= i < 20 for i in differing), differing  # the 2 bytes after "x\0"
