"""The console as a node of the car graph: it watches the camera, commands and diagnostics, and
publishes teleop commands, so the console drives the car through the same mux and watchdogs as
any other source.

Callbacks run on the graph's thread under its lock and only store references; the web server's
threads read those snapshots and send commands through the runtime, which takes the lock.
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from car.control.modes import Mode
from car.messages import (CAMERA_TOPIC, DRIVE_TOPIC, POLICY_TOPIC, TELEOP_TOPIC, AckermannDriveStamped,
                          DiagnosticStatus, Image, Time, drive_msg)
from car.graph.runtime import CarRuntime

CAMERA_STALE_S = 1.0
FPS_WINDOW_S = 2.0
# Control's reason when it applies a source's command -> that source.
DRIVEN_BY = {Mode.AUTONOMOUS.value: "policy", Mode.MANUAL.value: "teleop", Mode.CALIBRATION.value: "calibration"}


@dataclass(frozen=True)
class Frame:
    number: int
    image: np.ndarray


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


class ConsoleNode:
    def __init__(self, runtime: CarRuntime, model_name: str):
        self.runtime = runtime
        self.stack = runtime.stack
        self.model_name = model_name
        control = self.stack.control.core.params
        self.max_steering_rad = control.max_steering_rad
        self.max_speed_mps = control.max_speed_mps
        self.frame: Frame | None = None
        self._frame_times: deque[float] = deque()
        self.latency_ms: float | None = None
        self.command = (0.0, 0.0)
        self._teleop = self.stack.bus.publisher(TELEOP_TOPIC)
        runtime.call(self._subscribe)

    def _subscribe(self) -> None:
        bus = self.stack.bus
        bus.subscribe(CAMERA_TOPIC, self._on_image)
        bus.subscribe(POLICY_TOPIC, self._on_policy)
        bus.subscribe(DRIVE_TOPIC, self._on_drive)

    def _on_image(self, msg: Image) -> None:
        times = self._frame_times
        times.append(time.monotonic())
        while times[0] < times[-1] - FPS_WINDOW_S:
            times.popleft()
        self.frame = Frame(self.frame.number + 1 if self.frame else 1, msg.data)

    def _on_policy(self, msg: AckermannDriveStamped) -> None:
        """Camera stamp to policy command, on the node clock: the end-to-end latency."""
        self.latency_ms = max(0.0, (self.stack.clock.now() - msg.header.stamp.to_seconds()) * 1000.0)

    def _on_drive(self, msg: AckermannDriveStamped) -> None:
        self.command = (msg.drive.steering_angle / self.max_steering_rad, msg.drive.speed / self.max_speed_mps)

    def now(self) -> float:
        """The graph's clock (s): teleop commands are stamped when they arrive, not when they are handled."""
        return self.stack.clock.now()

    def teleop(self, steering: float, throttle: float, stamp: float | None = None) -> None:
        """One teleop command, normalised (+ = left, + = forward), stamped `stamp` (node clock, s; default
        now). Control drops it if it is older than the deadman or than the latest latch, and applies
        the manual speed limit."""
        when = Time.from_seconds(self.now() if stamp is None else stamp)
        msg = drive_msg(when, steering * self.max_steering_rad, throttle * self.max_speed_mps, "console")
        self.runtime.call(self._teleop, msg)

    def teleop_lost(self, reason: str) -> None:
        """The teleop client went silent or away while driving: neutral, latched until the user acts."""
        self.runtime.command("fault", reason)

    @property
    def fps(self) -> float:
        """Camera frames per second over the last FPS_WINDOW_S of wall time."""
        times = list(self._frame_times)
        if len(times) < 2 or time.monotonic() - times[-1] > CAMERA_STALE_S:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def camera_connected(self) -> bool:
        times = self._frame_times
        return bool(times) and time.monotonic() - times[-1] < CAMERA_STALE_S

    def diagnostic(self, name: str) -> DiagnosticStatus | None:
        return self.stack.diagnostics.get(name)

    def battery_level(self) -> float | None:
        """The battery node's level (DeepRacer scale 0..11) when the car has one."""
        status = self.diagnostic("battery")
        return _float(status.value("level")) if status else None

    def domain_shift(self) -> float | None:
        """The domain-shift monitor's score, when a node publishes one in /diagnostics."""
        for status in list(self.stack.diagnostics.values()):
            score = _float(status.value("domain_shift"))
            if score is not None:
                return score
        return None

    def status(self) -> dict[str, Any]:
        control, policy = self.runtime.call(self._snapshot)
        state = self.stack.control.core.state
        steering, throttle = self.command
        infer_ms = _float(policy.value("infer_ms"))
        latency_ms = self.latency_ms
        if latency_ms is not None and infer_ms is not None:
            # Under a simulator the node clock stands still while the stack computes, so a command
            # is never later than its frame on it; it is at least the policy's own frame-to-command time.
            latency_ms = max(latency_ms, infer_ms)
        return {
            "success": True,
            "mode": state.mode.value,
            "running": state.running,
            "max_speed": state.max_speed,
            "manual_max_speed": state.manual_max_speed,
            "latched": state.latch.reason if state.latch else None,
            "start_needed": state.latch is not None,
            "model": self.model_name,
            "fps": round(self.fps, 1),
            "latency_ms": round(latency_ms, 1) if latency_ms is not None and state.mode is Mode.AUTONOMOUS else None,
            # who moves the car now: control applies a command in the mode's own name (car/control/core.py)
            "driven_by": DRIVEN_BY.get(control.message),
            "infer_ms": round(infer_ms, 2) if infer_ms is not None else None,
            "watchdog": control.value("watchdog"),
            "reason": control.message,
            "emergency_stop": self.stack.control.core.estopped,
            "command": {"steering": round(steering, 3), "throttle": round(throttle, 3)},
            "camera": "connected" if self.camera_connected() else "not_connected",
            "battery_level": self.battery_level(),
            "domain_shift": self.domain_shift(),
            "faults": self.runtime.faults,
            "last_fault": self.runtime.last_fault or None,
        }

    def _snapshot(self) -> tuple[DiagnosticStatus, DiagnosticStatus]:
        stack = self.stack
        return stack.control.core.diagnostics(stack.clock.now()), stack.policy.core.diagnostics()
