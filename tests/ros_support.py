"""Shared by the real-ROS tests: rclpy itself (from `make ros`), and rclpy nodes in the test process."""
from __future__ import annotations

try:
    import ackermann_msgs.msg  # noqa: F401  (racer's own message packages, built by make ros)
    import deepracer_interfaces_pkg.msg  # noqa: F401
    import rclpy
except ImportError as exc:
    raise ImportError(f"the real-ROS tests need rclpy and the car's message packages ({exc}): run `make ros`") from exc

__all__ = ["rclpy"]
