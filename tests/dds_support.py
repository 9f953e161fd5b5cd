"""Shared by the DDS and bag tests: a private loopback domain, a monitor on the graph's topics, the driving
model, and replaying a bag as the camera into a policy."""
from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsParticipant
from cyclonedds.domain import DomainParticipant
from rosbags.highlevel import AnyReader

from car.camera.bag import BagSource
from car.clock import SimClock
from car.config import DEFAULT_MODEL, ControlParams
from car.control.requests import control_request_json
from car.graph.adapters import CameraNode, PolicyNode
from car.messages import CAMERA_TOPIC, DIAGNOSTICS_TOPIC, POLICY_TOPIC, DiagnosticStatus, Time
from car.policy.bundle import load_bundle
from car.policy.core import PolicyCore
from car.policy.inference import Policy
from car.transport import open_bus
from car.transport.dds import SHIPPED_CONFIG
from car.transport.local import LocalBus
from car.transport.ros import loopback_ros_environment
from car.transport.rosbag import typestore
from car.transport.wire import CONTROL_REQUEST_TOPIC

PYTHON = sys.executable
DOMAIN_PROBE_S = 0.2


def driving_model() -> Path:
    """The bundled model (or RACER_TEST_MODEL): the lap and replay tests need a model that drives."""
    model = Path(os.environ.get("RACER_TEST_MODEL", DEFAULT_MODEL))
    if not (model / "model_metadata.json").exists() and not model.is_file():
        pytest.skip(f"no driving model at {model}")
    return model


@contextmanager
def loopback_domain() -> Iterator[dict[str, str]]:
    """This process and its children on a random free ROS domain over the shipped loopback-only config.

    The tests force the shipped config even where CYCLONEDDS_URI is set, and rclpy's nodes to loopback
    (`loopback_ros_environment`: racer's Fast DDS profile) whatever the environment says, so no test sends
    DDS traffic beyond 127.0.0.1; a random domain that nobody answers on keeps concurrent runs (and any
    graph left running) on one machine apart."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CYCLONEDDS_URI", SHIPPED_CONFIG.as_uri())
        loopback = loopback_ros_environment()
        for name in set(os.environ) - set(loopback):  # ROS_LOCALHOST_ONLY, a user's Fast DDS setup
            mp.delenv(name)
        for name, value in loopback.items():
            mp.setenv(name, value)
        mp.setenv("ROS_DOMAIN_ID", str(free_domain()))
        yield dict(os.environ)


def free_domain(tries: int = 20) -> int:
    """A random ROS domain (1..230) in which no participant answers on loopback within DOMAIN_PROBE_S
    (a participant answers a newcomer's announcement at once, in a few ms; Fast DDS ones too)."""
    for _ in range(tries):
        domain = random.randint(1, 230)
        probe = DomainParticipant(domain)
        participants = BuiltinDataReader(probe, BuiltinTopicDcpsParticipant)
        deadline = time.monotonic() + DOMAIN_PROBE_S
        busy = False
        while not busy and time.monotonic() < deadline:
            busy = any(s.key != probe.guid for s in participants.take(16))
            time.sleep(0.01)
        del participants, probe
        if not busy:
            return domain
    raise RuntimeError(f"no free ROS domain in {tries} tries: is something flooding every domain on this machine?")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (a console to start there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str,
             detail: Callable[[], str] | None = None) -> Any:
    """`predicate()`'s first truthy value within `timeout_s`; else AssertionError naming `what`, followed by
    `detail()` (read at the timeout: what the test saw instead)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}" + (detail() if detail else ""))


class Monitor:
    """A node in the test process (DdsBus, or RosBus on real rclpy), spinning on its own thread, that keeps every
    message it receives."""

    def __init__(self, topics: tuple[str, ...], transport: str = "dds"):
        self.bus = open_bus(transport, "test_monitor")
        self.lock = threading.Lock()
        self.messages: list[tuple[str, float, Any]] = []
        for topic in topics:
            self.bus.subscribe(topic, lambda msg, t=topic: self._keep(t, msg))
        self._thread = threading.Thread(target=self.bus.spin, daemon=True)
        self._thread.start()

    def _keep(self, topic: str, msg: Any) -> None:
        with self.lock:
            self.messages.append((topic, time.monotonic(), msg))

    def arrivals(self, topic: str, since: float = 0.0) -> list[tuple[float, Any]]:
        """(monotonic arrival time, message) for `topic` since `since`: for ordering, never for speed."""
        with self.lock:
            return [(at, m) for t, at, m in self.messages if t == topic and at >= since]

    def received(self, topic: str, since: float = 0.0) -> list[Any]:
        return [m for _, m in self.arrivals(topic, since)]

    def statuses(self, name: str, since: float = 0.0) -> list[tuple[float, DiagnosticStatus]]:
        """(stamp, status) of every /diagnostics status called `name`, in arrival order."""
        return [(array.header.stamp.to_seconds(), status) for array in self.received(DIAGNOSTICS_TOPIC, since)
                for status in array.status if status.name == name]

    def publisher(self, topic: str) -> Callable[[Any], None]:
        """Publish from the test thread, on the bus's own thread."""
        publish = self.bus.publisher(topic)
        return lambda msg: self.bus.post(lambda: publish(msg))

    def close(self) -> None:
        self.bus.stop()
        self._thread.join(timeout=5)
        self.bus.close()


def assert_a_lap(monitor: Monitor, timeout_s: float, traced_share: float) -> None:
    """Wait for the simulator's first lap and check it: a sane lap time, never off track, and at least
    `traced_share` of the policy's commands carrying the stamp of a camera frame the monitor saw."""
    restart = user_restarts(monitor, only_when_latched=True)

    def lapped():
        restart()
        return [s for _, s in monitor.statuses("simulator") if int(s.value("laps") or 0) >= 1]
    laps = explained(monitor, lapped, timeout_s, "a completed lap")
    lap_time = float(laps[0].value("lap_times").split(",")[0])
    assert 4.0 < lap_time < 30.0
    assert all(s.value("off_track") == "false" for _, s in monitor.statuses("simulator"))
    assert len(monitor.received(POLICY_TOPIC)) > 50
    assert_traced(monitor, traced_share)


def traceable_commands(monitor: Monitor) -> list[Any]:
    """The policy's commands on frames no older than the first camera frame the monitor saw (none before
    it saw one): the older ones it cannot trace, whether discovery came late or best-effort frames were lost."""
    stamps = [m.header.stamp.to_seconds() for m in monitor.received(CAMERA_TOPIC)]
    if not stamps:
        return []
    return [c for c in monitor.received(POLICY_TOPIC) if c.header.stamp.to_seconds() >= min(stamps)]


def assert_traced(monitor: Monitor, traced_share: float) -> None:
    """At least `traced_share` of the traceable commands carry the stamp of a camera frame the monitor saw."""
    frames = {m.header.stamp for m in monitor.received(CAMERA_TOPIC)}
    assert frames, "the monitor saw no camera frame"
    commands = traceable_commands(monitor)
    traced = [c for c in commands if c.header.stamp in frames]  # a command carries its camera frame's stamp
    assert len(traced) >= traced_share * len(commands), f"{len(traced)} of {len(commands)} commands traced"


def assert_it_drives(monitor: Monitor, timeout_s: float, traced_share: float) -> None:
    """Start the car as a user does (again after a latched stop) until the actuator drives on the policy's
    commands: at least 30 traceable commands (the monitor, a best-effort reader, may miss frames for a while
    on a busy machine), `traced_share` of them carrying the stamp of a camera frame the monitor saw.
    Control's last words are in the failure."""
    restart = user_restarts(monitor)

    def driving():
        restart()
        states = monitor.statuses("actuator")
        return len(traceable_commands(monitor)) >= 30 and states and states[-1][1].message == "driving"
    explained(monitor, driving, timeout_s, "the actuator to drive on 30 commands traceable to the monitor's frames")
    assert_traced(monitor, traced_share)


def user_restarts(monitor: Monitor, only_when_latched: bool = False) -> Callable[[], None]:
    """A user at the console, called while waiting: autonomous and start, at most once a second (again
    after a latched stop: on a loaded machine a camera frame can come late enough to latch one);
    with `only_when_latched`, only when control says a start is needed."""
    command = monitor.publisher(CONTROL_REQUEST_TOPIC)
    next_start = [0.0]

    def restart() -> None:
        if time.monotonic() < next_start[0]:
            return
        reports = monitor.statuses("control")
        if only_when_latched and not (reports and reports[-1][1].value("start_needed") == "true"):
            return
        command(control_request_json("set_mode", mode="autonomous"))
        command(control_request_json("start"))
        next_start[0] = time.monotonic() + 1.0
    return restart


def explained(monitor: Monitor, predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """wait_for, with control's last three reports in the failure (a latched stop says why)."""
    def detail() -> str:
        said = [s.message for _, s in monitor.statuses("control")][-3:]
        seen = {topic: len(monitor.received(topic)) for topic in (CAMERA_TOPIC, POLICY_TOPIC)}
        return f"; control said {said}; the monitor saw {seen}"
    return wait_for(predicate, timeout_s, what, detail)


def racer(log: Path, *args: str) -> subprocess.Popen:
    """`racer ARGS` in the background, its output (and its children's) in `log`."""
    with open(log, "w") as out:
        return subprocess.Popen([PYTHON, "-m", "racer.cli", *args], stdout=out, stderr=subprocess.STDOUT)


def as_float32(drive) -> tuple[np.float32, np.float32]:
    """AckermannDrive carries float32: what a command is once it has been on the wire."""
    return np.float32(drive.steering_angle), np.float32(drive.speed)


def replay_policy(bag, model_path):
    """Replay the bag's frames as the camera into a policy node: {stamp: (steering, speed)}."""
    bus, clock = LocalBus(), SimClock()
    bundle = load_bundle(model_path)
    cp = ControlParams()
    PolicyNode(bus, clock, PolicyCore.for_model(Policy(bundle).model(), cp.max_steering_rad, cp.max_speed_mps))
    out = {}
    bus.subscribe(POLICY_TOPIC, lambda m: out.setdefault(m.header.stamp, as_float32(m.drive)))
    source = BagSource(bag, realtime=False)
    source.open()
    camera = CameraNode(bus, clock, source)
    with AnyReader([bag], default_typestore=typestore()) as reader:
        frames = sum(c.msgcount for c in reader.connections if c.topic == CAMERA_TOPIC)
    for _ in range(frames):
        camera.spin_once()
    source.release()
    return out


def recorded_commands(bag):
    store = typestore()
    with AnyReader([bag], default_typestore=store) as reader:
        return {Time(m.header.stamp.sec, m.header.stamp.nanosec): as_float32(m.drive)
                for m in (reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()
                          if c.topic == POLICY_TOPIC)}
