"""Transports carry the node messages: `local` (in-process), `dds` (Cyclone DDS, ROS 2 wire), `ros` (rclpy);
`wire` is the ROS 2 wire format both process transports speak, `qos` each topic's QoS, `rosbag` the bag types."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from car.clock import Clock

PROCESS_TRANSPORTS = ("dds", "ros")


class NodeBus(Protocol):
    """What a node process needs of its transport: the graph's Bus plus an executor, timers and a deadline watch."""

    def subscribe(self, topic: str, callback: Callable[[Any], None]) -> None: ...

    def publisher(self, topic: str) -> Callable[[Any], None]: ...

    def watch_deadline(self, topic: str, period_s: float, on_missed: Callable[[], None]) -> None: ...

    def timer(self, period_s: float, callback: Callable[[], None], clock: Clock) -> None: ...

    def node_clock(self, sim_time: bool) -> Clock: ...

    def post(self, fn: Callable[[], None]) -> None: ...

    def spin(self) -> None: ...

    def spin_once(self, max_wait_s: float = ...) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


def open_bus(transport: str, name: str, ros_args: Sequence[str] = (), domain: int | None = None) -> NodeBus:
    """A node's bus on ROS domain `domain` (default: ROS_DOMAIN_ID); rclpy is imported only for `ros`, so the
    car runs without ROS 2 installed. `ros_args` (`--ros-args ...` of ros2 launch) only mean something to rclpy."""
    if transport == "dds":
        from car.transport.dds import DdsBus
        return DdsBus(name, domain)
    if transport == "ros":
        from car.transport.ros import RosBus
        return RosBus(name, ros_args, domain)
    raise ValueError(f"unknown transport {transport!r} for a node process: expected {' or '.join(PROCESS_TRANSPORTS)}")
