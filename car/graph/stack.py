"""The whole car graph in one process over the local transport (demo, tests, single-process car)."""
from __future__ import annotations

from typing import Any

from car.actuators.base import Driver
from car.actuators.core import ActuatorCore
from car.clock import Clock
from car.control.core import ControlCore, ControlParams
from car.graph.adapters import ActuatorNode, CameraNode, CameraSource, ControlNode, PolicyNode
from car.messages import DIAGNOSTICS_TOPIC, DiagnosticArray
from car.policy.core import PolicyCore, PolicyModel
from car.transport.local import LocalBus


class LocalStack:
    """camera -> policy -> control -> actuator, synchronously: one camera frame runs the whole chain."""

    def __init__(self, clock: Clock, source: CameraSource, driver: Driver, model: PolicyModel,
                 params: dict[str, dict[str, Any]] | None = None):
        params = params or {}
        cp = ControlParams.from_params(params)
        self.clock = clock
        self.bus = LocalBus()
        self.camera = CameraNode(self.bus, clock, source)
        self.policy = PolicyNode(self.bus, clock, PolicyCore.for_model(model, cp.max_steering_rad, cp.max_speed_mps))
        self.control = ControlNode(self.bus, clock, ControlCore(cp))
        self.actuator = ActuatorNode(self.bus, clock, ActuatorCore.from_params(driver, params))
        self.diagnostics: dict[str, Any] = {}
        self.bus.subscribe(DIAGNOSTICS_TOPIC, self._on_diag)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = status

    def frame(self) -> None:
        """One camera frame through the graph, then the timers."""
        self.camera.spin_once()
        self.tick()

    def tick(self) -> None:
        self.control.tick()
        self.actuator.tick()

    def publish_diagnostics(self) -> None:
        for node in (self.policy, self.control, self.actuator):
            node.publish_diagnostics()

    def close(self) -> None:
        self.actuator.core.close()
