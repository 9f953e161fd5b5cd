"""The console as a node of the car graph, on any transport: it talks to the other nodes only over the bus.

It watches /camera/image_raw (the live stream), /policy/drive (latency), /drive (the command the
outputs get) and /diagnostics (every node's status: control's mode, latch and limits, the policy's
inference time and model), publishes /teleop/drive, and sends its requests as any node does:
to control on /control/command (car.control.requests) and model loads to the policy on /policy/load,
each with an id that the answer on /diagnostics carries back.

Callbacks run on the bus's executor and only store references; the web server's threads read those
snapshots and publish (a publish is safe from any thread on every transport).
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, TimeoutError as FutureTimeout
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from car.clock import Clock
from car.config import CarConfig
from car.console.errors import ApiError
from car.control.modes import Mode
from car.control.requests import FIELDS, control_request_json
from car.messages import (
    CAMERA_TOPIC,
    DIAGNOSTICS_TOPIC,
    DRIVE_TOPIC,
    POLICY_TOPIC,
    TELEOP_TOPIC,
    AckermannDriveStamped,
    DiagnosticArray,
    DiagnosticStatus,
    Image,
    Time,
    drive_msg,
)
from car.transport import NodeBus
from car.transport.wire import CONTROL_REQUEST_TOPIC, MODEL_TOPIC

CAMERA_STALE_S = 1.0
FPS_WINDOW_S = 2.0
# Control's reason when it applies a source's command -> that source.
DRIVEN_BY = {Mode.AUTONOMOUS.value: "policy", Mode.MANUAL.value: "teleop", Mode.CALIBRATION.value: "calibration"}
REQUEST_TIMEOUT_S = 3.0  # control answers in milliseconds; longer means it is down or starved
LOAD_TIMEOUT_S = 120.0  # the console compiled the model first, so the policy's load mostly reads caches


@dataclass(frozen=True)
class Frame:
    number: int
    image: np.ndarray


T = TypeVar("T")


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


class ConsoleNode:
    def __init__(self, bus: NodeBus, clock: Clock, config: CarConfig, model_name: str):
        control = config.control
        self.clock = clock
        self.model_name = model_name
        self.max_steering_rad = control.max_steering_rad
        self.max_speed_mps = control.max_speed_mps
        self.frame: Frame | None = None
        self._frame_times: deque[float] = deque()
        self.latency_ms: float | None = None
        self.command = (0.0, 0.0)
        self.diagnostics: dict[str, DiagnosticStatus] = {}
        self._pending: dict[tuple[str, str], Future[str]] = {}
        self._lock = threading.Lock()
        self._ids = count(1)
        self._prefix = f"console-{os.getpid()}-{time.monotonic_ns() % 1_000_000}"
        self._teleop = bus.publisher(TELEOP_TOPIC)
        self._control = bus.publisher(CONTROL_REQUEST_TOPIC)
        self._load = bus.publisher(MODEL_TOPIC)
        bus.subscribe(CAMERA_TOPIC, self._on_image)
        bus.subscribe(POLICY_TOPIC, self._on_policy)
        bus.subscribe(DRIVE_TOPIC, self._on_drive)
        bus.subscribe(DIAGNOSTICS_TOPIC, self._on_diagnostics)

    def _on_image(self, msg: Image) -> None:
        times = self._frame_times
        times.append(time.monotonic())
        while times[0] < times[-1] - FPS_WINDOW_S:
            times.popleft()
        self.frame = Frame(self.frame.number + 1 if self.frame else 1, msg.data)

    def _on_policy(self, msg: AckermannDriveStamped) -> None:
        """Camera stamp to policy command, on the node clock: the end-to-end latency."""
        self.latency_ms = max(0.0, (self.clock.now() - msg.header.stamp.to_seconds()) * 1000.0)

    def _on_drive(self, msg: AckermannDriveStamped) -> None:
        self.command = (msg.drive.steering_angle / self.max_steering_rad, msg.drive.speed / self.max_speed_mps)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        """Keeps each node's newest status, then settles the request it answers (so a caller that
        waited for the answer reads a status at least as new)."""
        for status in msg.status:
            self.diagnostics[status.name] = status
            for kind, key in (("command", "command_id"), ("load", "load_id")):
                answer_id = status.value(key)
                if answer_id:
                    with self._lock:
                        future = self._pending.pop((kind, answer_id), None)
                    if future is not None:
                        future.set_result(status.value(f"{kind}_result") or "")

    def _ask(self, kind: str, publish: Any, text_for: Any) -> Future[str]:
        request_id = f"{self._prefix}-{next(self._ids)}"
        future: Future[str] = Future()
        with self._lock:
            self._pending[(kind, request_id)] = future
        publish(text_for(request_id))
        return future

    def request(self, name: str, *args: Any) -> Future[str]:
        """Send control the request `name` with `args` (in car.control.requests.FIELDS order); the
        future resolves to control's answer, "ok" or its reason for refusing."""
        fields = dict(zip(FIELDS[name], args, strict=False))
        return self._ask("command", self._control,  # answered in command_id / command_result
                         lambda request_id: control_request_json(name, id=request_id, **fields))

    def _settle(self, future: Future[str], timeout_s: float, what: str) -> None:
        try:
            answer = future.result(timeout_s)
        except FutureTimeout:
            raise ApiError(504, f"{what}: no answer within {timeout_s:.0f} s (is the node running?)") from None
        if answer != "ok":
            raise ValueError(answer)

    def ask(self, name: str, *args: Any) -> None:
        """`request` and wait for the answer: ValueError with control's reason when it refused,
        ApiError(504) when control did not answer within REQUEST_TIMEOUT_S."""
        self._settle(self.request(name, *args), REQUEST_TIMEOUT_S, f"control ({name})")

    async def ask_async(self, name: str, *args: Any) -> None:
        """`ask` on the event loop (the emergency stop): waits without a thread of the pool."""
        future = self.request(name, *args)
        try:
            answer = await asyncio.wait_for(asyncio.wrap_future(future), REQUEST_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ApiError(504, f"control ({name}): no answer within {REQUEST_TIMEOUT_S:.0f} s") from None
        if answer != "ok":
            raise ValueError(answer)

    def load_model(self, path: Path, cache: Path) -> None:
        """Ask the policy node to load the bundle directory `path` (conversions cached under `cache`);
        it stops the car first. ValueError with the policy's reason when it could not."""
        future = self._ask("load", self._load,
                           lambda request_id: json.dumps({"path": str(path), "cache": str(cache), "id": request_id}))
        self._settle(future, LOAD_TIMEOUT_S, "policy (load)")
        self.model_name = path.name

    def now(self) -> float:
        """The graph's clock (s): teleop commands are stamped when they arrive, not when they are handled."""
        return self.clock.now()

    def teleop(self, steering: float, throttle: float, stamp: float | None = None) -> None:
        """One teleop command, normalised (+ = left, + = forward), stamped `stamp` (node clock, s; default
        now). Control drops it if it is older than the deadman or than the latest latch, and applies
        the manual speed limit."""
        when = Time.from_seconds(self.now() if stamp is None else stamp)
        self._teleop(drive_msg(when, steering * self.max_steering_rad, throttle * self.max_speed_mps, "console"))

    def teleop_lost(self, reason: str) -> None:
        """The teleop client went silent or away while driving: neutral, latched until the user acts."""
        self.request("fault", reason)

    def control_value(self, key: str) -> str | None:
        status = self.diagnostics.get("control")
        return status.value(key) if status is not None else None

    @property
    def mode(self) -> str | None:
        """Control's drive mode as its newest status says (None before control was heard)."""
        return self.control_value("mode")

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

    def battery_level(self) -> float | None:
        """The battery node's level (DeepRacer scale 0..11) when the car has one."""
        status = self.diagnostics.get("battery")
        return _float(status.value("level")) if status else None

    def monitor_score(self, key: str) -> float | None:
        """A monitor's score the policy node publishes in /diagnostics under `key` ("domain_shift",
        "uncertainty": the model's own, from a modular model, or "warning": the car's warning score,
        `car.policy.warning`), when one is published."""
        return self.published(key, _float)

    def published(self, key: str, read: Callable[[str | None], T | None]) -> T | None:
        """The first value any node publishes in /diagnostics under `key` that `read` makes something of."""
        return next((value for status in list(self.diagnostics.values())
                     if (value := read(status.value(key))) is not None), None)

    def status(self) -> dict[str, Any]:
        """/api/status from the nodes' newest statuses (control's is fresh after each request)."""
        value = self.control_value
        control = self.diagnostics.get("control")
        policy = self.diagnostics.get("policy")
        steering, throttle = self.command
        infer_ms = _float(policy.value("infer_ms")) if policy else None
        latched = value("latched")
        latency_ms = self.latency_ms
        if latency_ms is not None and infer_ms is not None:
            # Under a simulator the node clock stands still while the stack computes, so a command
            # is never later than its frame on it; it is at least the policy's own frame-to-command time.
            latency_ms = max(latency_ms, infer_ms)
        return {
            "success": True,
            "mode": value("mode"),
            "running": value("running") == "true",
            "max_speed": _float(value("max_speed")),
            "manual_max_speed": _float(value("manual_max_speed")),
            "latched": latched or None,
            "start_needed": value("start_needed") == "true",
            "model": self.model_name,
            "fps": round(self.fps, 1),
            "latency_ms": round(latency_ms, 1) if latency_ms is not None and value("mode") == "autonomous" else None,
            # who moves the car now: control applies a command in the mode's own name (car/control/core.py)
            "driven_by": DRIVEN_BY.get(control.message) if control else None,
            "infer_ms": round(infer_ms, 2) if infer_ms is not None else None,
            "watchdog": value("watchdog"),
            "reason": control.message if control else "control not heard yet",
            "emergency_stop": value("emergency_stop") == "true",
            "command": {"steering": round(steering, 3), "throttle": round(throttle, 3)},
            "camera": "connected" if self.camera_connected() else "not_connected",
            "battery_level": self.battery_level(),
            "domain_shift": self.monitor_score("domain_shift"),
            "uncertainty": self.monitor_score("uncertainty"),
            "warning": self.monitor_score("warning"),
            # "slowing" or "off" when the model asks to slow while its warning is high (car.policy.warning.Caution)
            "caution": self.published("caution", lambda value: value if value in ("slowing", "off") else None),
            "simulator": self.simulator(),
        }

    def simulator(self) -> dict[str, Any] | None:
        """The simulated car's lap (racer node sim's status), when the car is the simulator: progress in
        percent of the lap, laps done, lap times (s), off track."""
        status = self.diagnostics.get("simulator")
        if status is None:
            return None
        times = status.value("lap_times") or ""
        return {"progress": _float(status.value("progress")), "laps": int(status.value("laps") or 0),
                "lap_times": [float(t) for t in times.split(",") if t],
                "off_track": status.value("off_track") == "true"}
