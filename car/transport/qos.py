"""The QoS of each topic, one table for every transport (ROS 2 QoS terms; dds and rclpy map them)."""
from __future__ import annotations

from dataclasses import dataclass

from car.messages import (
    CAMERA_TOPIC,
    DIAGNOSTICS_TOPIC,
    DRIVE_TOPIC,
    POLICY_INPUT_TOPIC,
    POLICY_OUTPUT_TOPIC,
    POLICY_TOPIC,
    TELEOP_TOPIC,
)
from car.transport.wire import (
    CALIBRATION_TOPIC,
    CLOCK_TOPIC,
    COMMAND_TOPIC,
    MODEL_TOPIC,
    SIM_CAMERA_TOPIC,
    SIM_POSE_TOPIC,
    SIM_SERVO_TOPIC,
    SIM_TRACK_TOPICS,
)


@dataclass(frozen=True)
class TopicQos:
    """Keep-last depth and reliability (durability is always volatile). `deadline_s` is what the
    topic's writers promise; a reader's deadline must be no shorter, or DDS does not match them."""

    reliable: bool
    depth: int
    deadline_s: float | None = None


SENSOR = TopicQos(reliable=False, depth=1)  # a late frame is worth less than the next one
COMMAND = TopicQos(reliable=True, depth=1)  # only the newest command counts, but it must arrive
DRIVE_DEADLINE_S = 0.05  # control publishes /drive on every tick, far more often than this
TOPIC_QOS: dict[str, TopicQos] = {
    CAMERA_TOPIC: SENSOR,
    SIM_CAMERA_TOPIC: SENSOR,
    CLOCK_TOPIC: SENSOR,
    POLICY_TOPIC: COMMAND,
    TELEOP_TOPIC: COMMAND,
    SIM_SERVO_TOPIC: COMMAND,
    DRIVE_TOPIC: TopicQos(reliable=True, depth=1, deadline_s=DRIVE_DEADLINE_S),
    DIAGNOSTICS_TOPIC: TopicQos(reliable=True, depth=10),
    COMMAND_TOPIC: TopicQos(reliable=True, depth=10),  # commands are not dropped for newer ones
    CALIBRATION_TOPIC: COMMAND,
    MODEL_TOPIC: TopicQos(reliable=True, depth=10),
    # what a visualiser shows: the newest sample is all it wants, and none may hold up its writer
    POLICY_INPUT_TOPIC: SENSOR,
    POLICY_OUTPUT_TOPIC: SENSOR,
    SIM_POSE_TOPIC: SENSOR,
    **dict.fromkeys(SIM_TRACK_TOPICS.values(), SENSOR),
}
