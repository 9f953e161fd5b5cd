"""rclpy transport: the same node processes as `dds`, as real ROS 2 nodes (the Docker image runs these).

Messages cross rclpy as serialized CDR (raw subscriptions, publishing bytes), encoded by `car.transport.wire`,
so both transports put the same bytes on the wire and no per-type conversion lives here. rclpy is
imported when a RosBus is made, never before: the car runs without ROS 2 installed.
"""
from __future__ import annotations

import importlib
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from car.clock import Clock, WallClock
from car.transport.qos import TOPIC_QOS, TopicQos
from car.transport.wire import WireType, wire_type

SPIN_PERIOD_S = 0.1
INTERFACES = Path(__file__).resolve().parents[1] / "interfaces"  # the car's own message packages (make ros)
NOT_IN_ROS = ("deepracer_interfaces_pkg",)  # the DeepRacer device software's own package: no apt release
DISCOVERY_RANGE = "ROS_AUTOMATIC_DISCOVERY_RANGE"
LOCALHOST_ONLY = "ROS_LOCALHOST_ONLY"  # before Jazzy's range: 1 is LOCALHOST
FAST_DDS_RMWS = ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")  # Jazzy's default rmw is the first
# Fast DDS 2.x (Jazzy's) reads the first name, Fast DDS 3 the second
FAST_DDS_PROFILE_VARIABLES = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
# a DDS setup of the user's own: racer leaves the environment as it is
USER_SETUP_VARIABLES = (*FAST_DDS_PROFILE_VARIABLES, "FASTDDS_BUILTIN_TRANSPORTS", "ROS_STATIC_PEERS")
SHIPPED_PROFILE = Path(__file__).resolve().with_name("fastdds.xml")


def loopback_ros_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with every ROS 2 node it starts kept to 127.0.0.1, whatever it chose.

    On Fast DDS: racer's profile (`fastdds.xml`: UDP on 127.0.0.1, no shared memory; no
    DEFAULT_FASTRTPS_PROFILES.xml from the working directory) with the discovery range SYSTEM_DEFAULT,
    so that rmw_fastrtps keeps the profile's transports alone. Its LOCALHOST range would add its own,
    shared memory among them, where a node killed mid-stream can leave a topic's shared buffers held
    so that its other readers get nothing more (eProsima/Fast-DDS#5469; seen here as a restarted
    policy that never saw another frame). On any other rmw: the range LOCALHOST.

    RosUnavailable on Fast DDS when the profile is missing (a broken install): Fast DDS would log an XML
    error and fall back to its defaults, which listen on every interface."""
    out = dict(os.environ if env is None else env)
    out.pop(LOCALHOST_ONLY, None)
    if out.get("RMW_IMPLEMENTATION", "") not in ("", *FAST_DDS_RMWS):
        return {**out, DISCOVERY_RANGE: "LOCALHOST"}
    if not SHIPPED_PROFILE.is_file():
        raise RosUnavailable(f"racer's Fast DDS profile {SHIPPED_PROFILE} is missing, so ROS 2 would not be kept "
                             "to this machine: reinstall racer (`make install`)")
    for name in USER_SETUP_VARIABLES:
        out.pop(name, None)
    return {**out, **dict.fromkeys(FAST_DDS_PROFILE_VARIABLES, str(SHIPPED_PROFILE)),
            DISCOVERY_RANGE: "SYSTEM_DEFAULT", "SKIP_DEFAULT_XML_FILE": "1"}


def ros_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with ROS 2 kept on this machine, unless the user chose otherwise.

    Jazzy's own default is SUBNET (multicast on every interface); racer keeps to loopback as its dds
    transport does with its shipped config. Left as they are: a DDS setup of the user's own (a Fast DDS
    profile, FASTDDS_BUILTIN_TRANSPORTS, ROS_STATIC_PEERS) and a range other than LOCALHOST (or
    ROS_LOCALHOST_ONLY=0). No range, LOCALHOST or ROS_LOCALHOST_ONLY=1 get `loopback_ros_environment`:
    on Fast DDS that is this machine alone, as LOCALHOST means, without its shared memory."""
    out = dict(os.environ if env is None else env)
    chosen = out.get(DISCOVERY_RANGE) or {"1": "LOCALHOST", "0": "SUBNET"}.get(out.get(LOCALHOST_ONLY, ""), "")
    if any(out.get(name) for name in USER_SETUP_VARIABLES) or chosen not in ("", "LOCALHOST"):
        return out
    return loopback_ros_environment(out)


class RosUnavailable(RuntimeError):
    """rclpy or a message package the car uses cannot be imported; the message says what to install."""


def install_hint(package: str) -> str:
    """What installs ROS 2 package `package` (an import name such as `ackermann_msgs`) for racer."""
    own = INTERFACES / package
    venv = (f"`make ros` builds it into racer's venv from {own}" if own.is_dir()
            else "`make ros` installs it into racer's venv")
    if package in NOT_IN_ROS:
        return f"{venv}; on a ROS 2 install, build that folder with colcon"
    distro = os.environ.get("ROS_DISTRO", "jazzy")
    return f"{venv}; on a ROS 2 install, apt install ros-{distro}-{package.replace('_', '-')}"


def _interface_class(ros_type: str) -> type:
    """The generated class of `pkg/msg/Name` or `pkg/srv/Name`; RosUnavailable says what to install."""
    package, kind, name = ros_type.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as exc:  # missing, or generated for another Python or ROS release
        what = "service" if kind == "srv" else "message"
        raise RosUnavailable(f"ROS 2 {what} {ros_type} cannot be loaded ({exc}): {install_hint(package)}") from None


def _message_class(wire: WireType) -> type:
    return _interface_class(wire.ros_type)


def _fields(msg: Any) -> dict[str, Any]:
    """A generated request's fields as plain Python values (its arrays, array.array or numpy, as lists)."""
    fields = {}
    for name in msg.get_fields_and_field_types():
        value = getattr(msg, name)
        fields[name] = value if isinstance(value, (bool, int, float, str, bytes)) else list(value)
    return fields


# The nodes read their parameters from the YAML file and log through Python's logging, so the parameter
# and type-description services and /rosout (15 DDS endpoints a node) serve nothing; without them the
# graph's discovery is a fraction of the traffic, and the nodes match sooner and cost less at start-up.
LEAN_NODE = {"start_parameter_services": False, "enable_rosout": False}


class _RosClock:
    def __init__(self, node: Any):
        self._clock = node.get_clock()

    def now(self) -> float:
        return self._clock.now().nanoseconds * 1e-9

    def started(self) -> bool:
        return self._clock.now().nanoseconds > 0  # use_sim_time's ROS time is 0 until the first /clock


class RosBus:
    """`car.transport.NodeBus` on one rclpy node and a single-threaded executor."""

    def __init__(self, name: str, ros_args: Sequence[str] = (), domain: int | None = None):
        """`domain` defaults to ROS_DOMAIN_ID, as for any ROS 2 node."""
        os.environ.update(ros_environment())  # the rmw reads it when the context starts
        try:
            import rclpy
            from rclpy.executors import SingleThreadedExecutor
        except ImportError as exc:
            raise RosUnavailable(f"--transport ros needs rclpy ({exc}): {install_hint('rclpy')}") from None

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(args=["racer", "--ros-args", *ros_args] if ros_args else None, context=self.context,
                   domain_id=domain)
        from rclpy.parameter import Parameter
        self.node = rclpy.create_node(name, context=self.context, **LEAN_NODE,
                                      parameter_overrides=[Parameter("start_type_description_service", value=False)])
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stopping = threading.Event()
        self._keep: list[Any] = []
        self._deadlines: dict[str, tuple[float, Callable[[], None]]] = {}
        self._posted: deque[Callable[[], None]] = deque()
        self._guard = self.node.create_guard_condition(self._run_posted)

    def _qos(self, qos: TopicQos, deadline_s: float | None) -> Any:
        from rclpy.duration import Duration
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        profile = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=qos.depth,
                             reliability=ReliabilityPolicy.RELIABLE if qos.reliable else ReliabilityPolicy.BEST_EFFORT,
                             durability=DurabilityPolicy.VOLATILE)
        if deadline_s is not None:
            profile.deadline = Duration(nanoseconds=int(deadline_s * 1e9))
        return profile

    def publisher(self, topic: str) -> Callable[[Any], None]:
        wire, qos = wire_type(topic), TOPIC_QOS[topic]
        pub = self.node.create_publisher(_message_class(wire), topic, self._qos(qos, qos.deadline_s))
        return lambda msg: pub.publish(wire.encode(msg))

    def subscribe(self, topic: str, callback: Callable[[Any], None]) -> None:
        wire = wire_type(topic)
        deadline = self._deadlines.get(topic)
        events = {}
        if deadline:
            try:
                from rclpy.event_handler import SubscriptionEventCallbacks
            except ImportError:  # Humble
                from rclpy.qos_event import SubscriptionEventCallbacks
            events["event_callbacks"] = SubscriptionEventCallbacks(deadline=lambda info: deadline[1]())
        self._keep.append(self.node.create_subscription(
            _message_class(wire), topic, lambda data: callback(wire.decode(data)),
            self._qos(TOPIC_QOS[topic], deadline[0] if deadline else None), raw=True, **events))

    def serve(self, name: str, ros_type: str, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Answer ROS 2 service `name` of type `ros_type` (`pkg/srv/Name`) on the executor's thread: `handler`
        gets the request's fields and returns the response's (plain Python values, named as in the .srv)."""
        srv_type = _interface_class(ros_type)

        def answer(request: Any, response: Any) -> Any:
            for field, value in handler(_fields(request)).items():
                setattr(response, field, value)
            return response

        self._keep.append(self.node.create_service(srv_type, name, answer))

    def watch_deadline(self, topic: str, period_s: float, on_missed: Callable[[], None]) -> None:
        """As DdsBus.watch_deadline: later subscriptions to `topic` request the deadline."""
        self._deadlines[topic] = (period_s, on_missed)

    def timer(self, period_s: float, callback: Callable[[], None], clock: Clock) -> None:
        """On the node's clock when `clock` follows /clock (use_sim_time), else on ROS 2's steady clock:
        a timer on the system clock would wait out a backward step of the wall clock."""
        from rclpy.clock import Clock as RclpyClock, ClockType
        steady = RclpyClock(clock_type=ClockType.STEADY_TIME) if isinstance(clock, WallClock) else None
        self._keep.append(self.node.create_timer(period_s, callback, clock=steady))

    def node_clock(self, sim_time: bool) -> Clock:
        """The simulator's /clock as the node follows it (use_sim_time), else `WallClock` (steady, wall-time stamps)."""
        if not sim_time:
            return WallClock()
        from rclpy.parameter import Parameter
        self.node.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, True)])
        return _RosClock(self.node)

    def post(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the executor's thread (safe from any thread: triggering a guard condition is)."""
        self._posted.append(fn)
        self._guard.trigger()

    def _run_posted(self) -> None:
        while self._posted:
            self._posted.popleft()()

    def stop(self) -> None:
        self._stopping.set()

    def spin(self) -> None:
        while not self._stopping.is_set() and self._rclpy.ok(context=self.context):
            self.spin_once()

    def spin_once(self, max_wait_s: float = SPIN_PERIOD_S) -> None:
        self.executor.spin_once(timeout_sec=max_wait_s)

    def close(self) -> None:
        self._stopping.set()
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)
