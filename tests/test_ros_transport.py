"""The rclpy transport without ROS 2: a stand-in rclpy records the calls RosBus makes.

rclpy cannot be installed here (it runs in the Docker image); this pins down what the adapter asks
of it: serialized CDR both ways (the dds transport's bytes), the topics' QoS, the /drive deadline,
sim time through use_sim_time, and work posted through a guard condition.
"""
import sys
import types

import numpy as np
import pytest

from car.messages import CAMERA_TOPIC, DRIVE_TOPIC, Header, Image, Time, drive_msg
from car.wire import IMAGE, DRIVE


class Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class FakeNode:
    def __init__(self, name):
        self.name, self.publishers, self.subscriptions, self.timers, self.parameters = name, [], [], [], []
        self.published = []

    def create_publisher(self, msg_type, topic, qos):
        self.publishers.append((msg_type, topic, qos))
        return types.SimpleNamespace(publish=lambda data: self.published.append((topic, data)))

    def create_subscription(self, msg_type, topic, callback, qos, raw=False, event_callbacks=None):
        self.subscriptions.append(types.SimpleNamespace(msg_type=msg_type, topic=topic, callback=callback, qos=qos,
                                                        raw=raw, events=event_callbacks))
        return self.subscriptions[-1]

    def create_timer(self, period, callback):
        self.timers.append((period, callback))

    def create_guard_condition(self, callback):
        return types.SimpleNamespace(trigger=callback)

    def set_parameters(self, parameters):
        self.parameters.extend(parameters)

    def get_clock(self):
        return types.SimpleNamespace(now=lambda: types.SimpleNamespace(nanoseconds=1_500_000_000))


@pytest.fixture
def rclpy(monkeypatch):
    """Just enough of rclpy's module layout for RosBus."""
    modules = {
        "rclpy": types.SimpleNamespace(Context=object, init=lambda args, context: None, ok=lambda context: True,
                                       create_node=lambda name, context: FakeNode(name),
                                       try_shutdown=lambda context: None),
        "rclpy.executors": types.SimpleNamespace(SingleThreadedExecutor=lambda context: types.SimpleNamespace(
            add_node=lambda node: None)),
        "rclpy.qos": types.SimpleNamespace(QoSProfile=Recorder, HistoryPolicy=types.SimpleNamespace(KEEP_LAST="keep_last"),
                                           ReliabilityPolicy=types.SimpleNamespace(RELIABLE="reliable",
                                                                                   BEST_EFFORT="best_effort"),
                                           DurabilityPolicy=types.SimpleNamespace(VOLATILE="volatile")),
        "rclpy.duration": types.SimpleNamespace(Duration=lambda nanoseconds: ("duration", nanoseconds)),
        "rclpy.parameter": types.SimpleNamespace(Parameter=type("Parameter", (Recorder,), {
            "Type": types.SimpleNamespace(BOOL="bool")})),
        "rclpy.event_handler": types.SimpleNamespace(SubscriptionEventCallbacks=Recorder),
        "sensor_msgs.msg": types.SimpleNamespace(Image="sensor_msgs/Image"),
        "ackermann_msgs.msg": types.SimpleNamespace(AckermannDriveStamped="ackermann_msgs/AckermannDriveStamped"),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    from car.transport.ros import RosBus
    return RosBus


def test_messages_cross_rclpy_as_the_same_cdr_bytes(rclpy):
    bus = rclpy("camera", ["-r", "__node:=camera"])
    image = Image(Header(Time(1, 2), "camera"), np.zeros((2, 3, 3), np.uint8))
    bus.publisher(CAMERA_TOPIC)(image)
    assert bus.node.published == [(CAMERA_TOPIC, IMAGE.encode(image))]
    msg_type, topic, qos = bus.node.publishers[0]
    assert (msg_type, topic) == ("sensor_msgs/Image", CAMERA_TOPIC)
    assert qos.kwargs == {"history": "keep_last", "depth": 1, "reliability": "best_effort", "durability": "volatile"}
    got = []
    bus.subscribe(DRIVE_TOPIC, got.append)
    (sub,) = bus.node.subscriptions
    assert sub.raw and sub.events is None and sub.qos.kwargs["reliability"] == "reliable"
    sub.callback(DRIVE.encode(drive_msg(Time(5, 6), 0.25, 1.0)))
    assert got[0].header.stamp == Time(5, 6) and got[0].drive.speed == 1.0


def test_drive_deadline_sim_time_and_posted_work(rclpy):
    bus = rclpy("actuator")
    missed = []
    bus.watch_deadline(DRIVE_TOPIC, 0.2, lambda: missed.append(True))
    bus.subscribe(DRIVE_TOPIC, lambda msg: None)
    (sub,) = bus.node.subscriptions
    assert sub.qos.deadline == ("duration", 200_000_000)
    sub.events.kwargs["deadline"]("info")
    assert missed == [True]
    bus.publisher(DRIVE_TOPIC)
    assert bus.node.publishers[0][2].deadline == ("duration", 50_000_000)  # what the actuator's deadline matches
    clock = bus.node_clock(sim_time=True)
    assert bus.node.parameters[0].args == ("use_sim_time", "bool", True) and clock.now() == 1.5
    ran = []
    bus.post(lambda: ran.append("posted"))
    assert ran == ["posted"]
