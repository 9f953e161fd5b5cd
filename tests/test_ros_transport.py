"""RosBus on real rclpy (Fast DDS, loopback, a private domain): messages, QoS, the /drive deadline, sim time,
posted work, the discovery range, and what a missing message package says."""
import math
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import ros_support  # noqa: F401  (first: without `make ros` it says so)
from car.clock import WallClock
from car.messages import CAMERA_TOPIC, DRIVE_TOPIC, Time, drive_msg
from car.transport.ros import (
    LOCALHOST_ONLY,
    SHIPPED_PROFILE,
    USER_SETUP_VARIABLES,
    RosBus,
    RosUnavailable,
    _interface_class,
    _message_class,
    install_hint,
    loopback_ros_environment,
    ros_environment,
)
from car.transport.wire import CLOCK_TOPIC, WireType
from dds_support import PYTHON, loopback_domain, wait_for

# rclpy only after ros_support, which turns a missing `make ros` into its one-line hint
# isort: split
from rclpy.node import NodeNameNonExistentError
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def nodes(*names: str) -> Iterator[list[RosBus]]:
    """RosBus nodes in this process on a private loopback domain, closed at the end."""
    with loopback_domain():
        buses = [RosBus(name) for name in names]
        try:
            yield buses
        finally:
            for bus in buses:
                bus.close()


def spin_until_matched(writer: RosBus, topic: str, *buses: RosBus) -> None:
    """Spin each bus on its own thread (close() ends them) until a reader of `topic` matches `writer`."""
    for bus in buses:
        threading.Thread(target=bus.spin, daemon=True).start()
    wait_for(lambda: writer.node.count_subscribers(topic) >= 1, 30, f"a reader of {topic} to match")


def test_discovery_stays_on_this_machine_unless_the_user_chose():
    profile = str(SHIPPED_PROFILE)
    racers = {"FASTRTPS_DEFAULT_PROFILES_FILE": profile, "FASTDDS_DEFAULT_PROFILES_FILE": profile,
              "ROS_AUTOMATIC_DISCOVERY_RANGE": "SYSTEM_DEFAULT", "SKIP_DEFAULT_XML_FILE": "1"}
    # nothing chosen, or this machine alone: racer's profile on Fast DDS (LOCALHOST would bring shared memory)
    for local in ({}, {"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}, {"ROS_AUTOMATIC_DISCOVERY_RANGE": ""},
                  {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}, {"ROS_LOCALHOST_ONLY": "1"}):
        assert ros_environment(local) == ({**local, **racers} if LOCALHOST_ONLY not in local else racers)
    cyclone = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    assert ros_environment(cyclone) == {**cyclone, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    # the user's own: a wider range, a Fast DDS profile, builtin transports, static peers
    for own in ({"ROS_LOCALHOST_ONLY": "0"}, {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"},
                {"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/my.xml"}, {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/my.xml"},
                {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"}, {"ROS_STATIC_PEERS": "192.168.1.7"},
                {"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/my.xml", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}):
        assert ros_environment(own) == own
    # forced (the tests, the soak): whatever was chosen
    chosen = {"ROS_LOCALHOST_ONLY": "0", "FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/my.xml",
              "FASTDDS_BUILTIN_TRANSPORTS": "SHM", "ROS_STATIC_PEERS": "192.168.1.7"}
    assert loopback_ros_environment(chosen) == racers
    assert loopback_ros_environment(cyclone) == {**cyclone, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def test_a_missing_fast_dds_profile_stops_the_node_instead_of_opening_it_to_the_network(tmp_path, monkeypatch):
    """Without its profile Fast DDS falls back to defaults that listen on every interface; a broken install
    must refuse to start a node (the car stays at neutral), not join the network."""
    missing = tmp_path / "fastdds.xml"
    monkeypatch.setattr("car.transport.ros.SHIPPED_PROFILE", missing)
    for env in ({}, {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}, {"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}):
        with pytest.raises(RosUnavailable, match=f"Fast DDS profile {missing} is missing.*reinstall racer"):
            ros_environment(env)
    for name in (*USER_SETUP_VARIABLES, "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "RMW_IMPLEMENTATION"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RosUnavailable, match="is missing"):
        RosBus("policy")
    # a setup of the user's own, or another rmw, does not need it
    own = {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/my.xml"}
    assert ros_environment(own) == own
    cyclone = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    assert ros_environment(cyclone) == {**cyclone, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


CAMERA_PROCESS = """
import numpy as np
from car.clock import WallClock
from car.messages import CAMERA_TOPIC, Header, Image
from car.transport.ros import RosBus
bus = RosBus("camera")
publish = bus.publisher(CAMERA_TOPIC)
frame = Image(Header(), np.zeros((480, 640, 3), np.uint8))
bus.timer(1 / 15, lambda: publish(frame), WallClock())
bus.spin()
"""


def shared_memory_and_udp_addresses(pid: int) -> tuple[set[str], set[str]]:
    """The Fast DDS files under /dev/shm process `pid` maps, and the local IPv4 addresses of its UDP sockets."""
    with open(f"/proc/{pid}/maps") as maps:
        shared = {line.split()[-1] for line in maps if "/dev/shm/fastrtps" in line}
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed meanwhile
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    with open("/proc/net/udp") as table:  # local address as little-endian hex, then :port; inode 10th
        rows = [line.split() for line in list(table)[1:]]
    addresses = {socket.inet_ntoa(struct.pack("<I", int(row[1].split(":")[0], 16))) for row in rows if row[9] in inodes}
    return shared, addresses


def test_camera_frames_cross_processes_over_loopback_udp_without_shared_memory():
    """In a user's plain environment a node's Fast DDS maps no shared memory and binds UDP on loopback
    alone (racer's fastdds.xml), where rmw_fastrtps's LOCALHOST range would bring shared memory: there
    a reader killed mid-stream can stop a topic for its other readers, and the car's nodes are restarted
    after exactly that. A 640x480 frame (the real camera's) crosses whole."""
    with nodes("policy") as (policy,):
        plain = {k: v for k, v in os.environ.items() if k not in loopback_ros_environment({})}
        camera = subprocess.Popen([PYTHON, "-c", CAMERA_PROCESS], env=plain)
        try:
            frames = []
            policy.subscribe(CAMERA_TOPIC, frames.append)
            threading.Thread(target=policy.spin, daemon=True).start()
            wait_for(lambda: len(frames) >= 10, 60, "ten frames from the camera process")
            shared, addresses = shared_memory_and_udp_addresses(camera.pid)
        finally:
            camera.kill()
            camera.wait()
    assert shared == set()
    assert addresses and addresses <= {"127.0.0.1", "239.255.0.1"}, addresses  # and the discovery multicast group
    assert frames[-1].data.shape == (480, 640, 3)


def test_drive_commands_cross_between_nodes_with_the_topics_qos():
    with nodes("control", "actuator") as (control, actuator):
        got = []
        actuator.subscribe(DRIVE_TOPIC, got.append)
        publish = control.publisher(DRIVE_TOPIC)
        control.publisher(CAMERA_TOPIC)
        spin_until_matched(control, DRIVE_TOPIC, control, actuator)
        sent = drive_msg(Time(12, 345), 0.25, 1.5, "base_link")
        control.post(lambda: publish(sent))
        wait_for(lambda: got, 10, "the command")
        assert got[0] == sent  # both values are exact in float32
        (drive_writer,) = actuator.node.get_publishers_info_by_topic(DRIVE_TOPIC)
        assert drive_writer.node_name == "control"
        assert drive_writer.topic_type == "ackermann_msgs/msg/AckermannDriveStamped"
        assert drive_writer.qos_profile.reliability == ReliabilityPolicy.RELIABLE
        assert drive_writer.qos_profile.deadline.nanoseconds == 50_000_000  # what the actuator's deadline matches
        (image_writer,) = wait_for(lambda: actuator.node.get_publishers_info_by_topic(CAMERA_TOPIC), 10,
                                   "the camera writer in discovery")  # matched apart from /drive's
        assert image_writer.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
        assert image_writer.qos_profile.durability == DurabilityPolicy.VOLATILE


def test_a_node_brings_only_its_topics_to_discovery():
    """No parameter, type-description or logger services and no /rosout: 15 fewer endpoints a node to match."""
    with nodes("control", "observer") as (control, observer):
        control.publisher(DRIVE_TOPIC)
        def publishers():
            try:
                return {name for name, _ in observer.node.get_publisher_names_and_types_by_node("control", "/")}
            except NodeNameNonExistentError:  # not discovered yet
                return set()

        wait_for(lambda: DRIVE_TOPIC in publishers(), 30, "control's topics")
        assert publishers() == {DRIVE_TOPIC, "/parameter_events"}
        assert observer.node.get_service_names_and_types_by_node("control", "/") == []


def test_a_silent_drive_writer_trips_the_readers_deadline():
    with nodes("control", "actuator") as (control, actuator):
        missed = []
        actuator.watch_deadline(DRIVE_TOPIC, 0.2, lambda: missed.append(time.monotonic()))
        actuator.subscribe(DRIVE_TOPIC, lambda msg: None)
        publish = control.publisher(DRIVE_TOPIC)
        spin_until_matched(control, DRIVE_TOPIC, control, actuator)
        control.post(lambda: publish(drive_msg(Time(1, 0), 0.0, 1.0)))
        wait_for(lambda: missed, 10, "a missed deadline")


def test_a_node_on_sim_time_follows_clock_and_runs_posted_work_on_its_thread():
    with nodes("sim", "follower") as (sim, node):
        clock = node.node_clock(sim_time=True)
        ticks, ran_on = [], []
        node.timer(0.5, lambda: ticks.append(clock.now()), clock)
        publish = sim.publisher(CLOCK_TOPIC)
        spin_until_matched(sim, CLOCK_TOPIC, sim, node)
        t = [100.0]

        def step():
            t[0] += 0.05
            publish(Time.from_seconds(t[0]))

        sim.timer(0.01, step, WallClock())
        wait_for(lambda: len(ticks) >= 4, 30, "four timer ticks on sim time")
        assert all(100.0 <= tick < 200.0 for tick in ticks)  # simulation time, not wall time
        # the first tick may come with the jump from 0 to 100 s; then one in each 0.5 s of /clock
        periods = [math.floor(tick / 0.5 + 1e-6) for tick in ticks[1:]]
        assert periods == list(range(periods[0], periods[0] + len(periods)))
        node.post(lambda: ran_on.append(threading.current_thread().name))
        wait_for(lambda: ran_on, 10, "the posted call")
        assert ran_on[0] != threading.current_thread().name


def test_a_missing_message_package_is_one_line_that_says_what_to_install():
    with pytest.raises(RosUnavailable) as caught:
        _message_class(WireType("ackermann_msgz/msg/AckermannDriveStamped", None, None, None))
    assert str(caught.value) == ("ROS 2 message ackermann_msgz/msg/AckermannDriveStamped cannot be loaded "
                                 "(No module named 'ackermann_msgz'): `make ros` installs it into racer's venv; "
                                 "on a ROS 2 install, apt install ros-jazzy-ackermann-msgz")
    assert install_hint("deepracer_interfaces_pkg").endswith("build that folder with colcon")
    with pytest.raises(RosUnavailable, match=r"^ROS 2 service deepracer_interfaces_pkg/srv/NoSuchSrv cannot be loaded"):
        _interface_class("deepracer_interfaces_pkg/srv/NoSuchSrv")
    assert str(ROOT / "car" / "interfaces" / "ackermann_msgs") in install_hint("ackermann_msgs")


def test_a_node_without_ackermann_msgs_exits_with_that_line(tmp_path):
    """What a user without the package sees: `racer node control --transport ros` prints one line, exit 2."""
    shadow = tmp_path / "ackermann_msgs"  # a package without its generated `msg` module, as a broken install
    shadow.mkdir()
    (shadow / "__init__.py").write_text("")
    with loopback_domain() as env:
        proc = subprocess.run([PYTHON, "-m", "racer.cli", "node", "control", "--transport", "ros"],
                              env={**env, "PYTHONPATH": f"{tmp_path}:{ROOT}"}, capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "racer node control: ROS 2 message ackermann_msgs/msg/AckermannDriveStamped cannot be loaded "
        f"(No module named 'ackermann_msgs.msg'): `make ros` builds it into racer's venv from "
        f"{ROOT / 'car' / 'interfaces' / 'ackermann_msgs'}; on a ROS 2 install, apt install ros-jazzy-ackermann-msgs")
    assert "Traceback" not in proc.stderr


@pytest.mark.timeout(180)
def test_the_supervisor_gives_up_on_nodes_that_cannot_load_their_messages(tmp_path):
    """`racer car --transport ros` without ackermann_msgs: each node that needs it says so in one line, three
    times, then the supervisor stops restarting it; the nodes that do not need it keep running."""
    shadow = tmp_path / "ackermann_msgs"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("")
    log = tmp_path / "racer.log"
    with loopback_domain() as env, open(log, "w") as out:
        proc = subprocess.Popen([PYTHON, "-m", "racer.cli", "car", "--transport", "ros", "--sim", "reinvent_base"],
                                env={**env, "PYTHONPATH": f"{tmp_path}:{ROOT}"}, stdout=out, stderr=subprocess.STDOUT)
        try:
            needing = ("policy", "control", "actuator")
            wait_for(lambda: all(f"{name} exited with status 2 at start-up 3 times in a row: not restarting"
                                 in log.read_text() for name in needing), 150, "the supervisor to give up")
            assert proc.poll() is None  # the supervisor, the simulator and the camera run on
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
    text = log.read_text()
    assert code == 0 and "Traceback" not in text, text[-3000:]
    for name in needing:
        assert text.count(f"racer node {name}: ROS 2 message ackermann_msgs/msg/AckermannDriveStamped cannot be "
                          "loaded (No module named 'ackermann_msgs.msg')") == 3
    assert "camera exited" not in text and "sim exited" not in text
