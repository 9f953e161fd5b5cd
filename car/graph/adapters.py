"""Thin node adapters: they connect the pure cores to a transport (publisher/subscribe) and a clock."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from car.actuators.core import ActuatorCore
from car.clock import Clock
from car.control.core import ControlCore
from car.messages import (
    CAMERA_TOPIC,
    DIAGNOSTICS_TOPIC,
    DRIVE_TOPIC,
    ERROR,
    POLICY_INPUT_TOPIC,
    POLICY_OUTPUT_TOPIC,
    POLICY_TOPIC,
    TELEOP_TOPIC,
    AckermannDriveStamped,
    DiagnosticArray,
    DiagnosticStatus,
    Header,
    Image,
    Time,
)
from car.policy.core import PolicyCore
from car.policy.introspect import input_image, output_array


class Bus(Protocol):
    def subscribe(self, topic: str, callback: Callable[[Any], None]) -> None: ...

    def publisher(self, topic: str) -> Callable[[Any], None]: ...


class CameraSource(Protocol):
    def read(self) -> tuple[Any, float]: ...


def _diagnostics(bus: Bus, clock: Clock) -> Callable[[DiagnosticStatus], None]:
    publish = bus.publisher(DIAGNOSTICS_TOPIC)
    return lambda status: publish(DiagnosticArray(Header(Time.from_seconds(clock.now())), (status,)))


class CameraNode:
    def __init__(self, bus: Bus, clock: Clock, source: CameraSource, frame_id: str = "camera"):
        self.source, self.clock, self.frame_id = source, clock, frame_id
        self._publish = bus.publisher(CAMERA_TOPIC)
        self._diag = _diagnostics(bus, clock)
        self.frames = 0

    def spin_once(self) -> Image:
        return self.publish_frame(*self.source.read())

    def publish_frame(self, frame: Any, stamp: float) -> Image:
        """Publish a frame read elsewhere (a reader thread must not hold the graph while it waits)."""
        msg = Image(Header(Time.from_seconds(stamp), self.frame_id), frame)
        self.frames += 1
        self._publish(msg)
        return msg


class PolicyNode:
    """/policy/drive for each frame, then what the model saw and answered (/policy/input, /policy/output)."""

    def __init__(self, bus: Bus, clock: Clock, core: PolicyCore):
        self.core, self.clock = core, clock
        self._publish = bus.publisher(POLICY_TOPIC)
        self._input = bus.publisher(POLICY_INPUT_TOPIC)
        self._output = bus.publisher(POLICY_OUTPUT_TOPIC)
        self._diag = _diagnostics(bus, clock)
        bus.subscribe(CAMERA_TOPIC, self._on_image)

    def _on_image(self, msg: Image) -> None:
        result = self.core.on_image(msg)
        if result.drive is not None:
            assert result.tensor is not None and result.output is not None  # a drive comes from a model run
            self._publish(result.drive)
            self._input(Image(Header(msg.header.stamp, "model_input"),
                              input_image(result.tensor, self.core.preprocessor.spec.layout), "32FC1"))
            self._output(output_array(result.output, self.core.decoder.metadata.discrete))
        else:
            self._diag(self.core.diagnostics())


class ControlNode:
    """Publishes /drive on every input and on every timer tick, so staleness is acted on promptly."""

    def __init__(self, bus: Bus, clock: Clock, core: ControlCore):
        self.core, self.clock = core, clock
        self._publish = bus.publisher(DRIVE_TOPIC)
        self._diag = _diagnostics(bus, clock)
        bus.subscribe(POLICY_TOPIC, self._timed(lambda m: self._publish(core.on_policy(m, clock.now()))))
        bus.subscribe(TELEOP_TOPIC, self._timed(lambda m: self._publish(core.on_teleop(m, clock.now()))))
        bus.subscribe(CAMERA_TOPIC, self._timed(lambda m: core.on_camera(clock.now())))
        bus.subscribe(DIAGNOSTICS_TOPIC, self._on_diagnostics)

    def _timed(self, handle: Callable[[Any], None]) -> Callable[[Any], None]:
        """`handle`, for inputs that arrive once the node's clock runs. Before its first /clock there is no
        time to take them at: a frame taken at 0 made the camera look seconds stale at the first tick and
        latched a car that had just started."""
        def handler(msg: Any) -> None:
            if self.clock.started():
                handle(msg)
        return handler

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        """Faults other nodes report: a policy error, an actuator fault, a node that died (the supervisor's)."""
        for status in msg.status:
            if status.level < ERROR:
                continue
            if status.name == "policy":
                self._publish(self.core.on_policy_error(status.message, self.clock.now()))
            elif status.name == "actuator":
                self._publish(self.core.fault(f"actuator: {status.message}", self.clock.now()))
            elif status.name.startswith("supervisor/"):
                node = status.name.split("/", 1)[1]
                self._publish(self.core.fault(f"{node} node: {status.message}", self.clock.now()))

    def run_request(self, fn: Callable[..., AckermannDriveStamped], *args: Any) -> AckermannDriveStamped:
        """Run a control request on the core (start, stop, set_mode, ...) and publish its output at once."""
        out = fn(*args, self.clock.now())
        self._publish(out)
        return out

    def tick(self) -> AckermannDriveStamped:
        out = self.core.tick(self.clock.now())
        self._publish(out)
        return out

    def publish_diagnostics(self) -> None:
        self._diag(self.core.diagnostics(self.clock.now()))


class ActuatorNode:
    def __init__(self, bus: Bus, clock: Clock, core: ActuatorCore):
        self.core, self.clock = core, clock
        self._diag = _diagnostics(bus, clock)
        bus.subscribe(DRIVE_TOPIC, lambda m: core.on_drive(m, clock.now()))

    def tick(self) -> None:
        self.core.tick(self.clock.now())

    def publish_diagnostics(self) -> None:
        self._diag(self.core.diagnostics(self.clock.now()))
