"""The car's four nodes on one bus: the node classes every transport runs (`car.graph.multiprocess`).

`racer car --transport local` and `racer demo` spin them on a `LocalBus`; the simulator's fast drives
(evaluation, training validation) and the pipeline benchmark step them by hand, one camera frame
through the whole chain at a time.
"""
from __future__ import annotations

import logging

from car.actuators.base import Driver
from car.clock import Clock
from car.config import CarConfig
from car.graph.adapters import CameraSource
from car.graph.multiprocess import ActuatorProcess, CameraProcess, ControlProcess, PolicyProcess
from car.policy.core import PolicyModel
from car.process import close_all
from car.transport import NodeBus
from car.transport.local import LocalBus

log = logging.getLogger("racer.car")


class CarGraph:
    """camera -> policy -> control -> actuator on `bus` (a LocalBus of its own by default)."""

    def __init__(self, clock: Clock, source: CameraSource, driver: Driver, model: PolicyModel,
                 config: CarConfig = CarConfig(), bus: NodeBus | None = None, model_name: str = ""):
        self.clock = clock
        self.bus = bus if bus is not None else LocalBus()
        self.camera = CameraProcess(self.bus, clock, source)
        self.policy = PolicyProcess(self.bus, clock, model, config, model_name)
        self.control = ControlProcess(self.bus, clock, config, config.autostart)
        self.actuator = ActuatorProcess(self.bus, clock, driver, config)
        self.faults = 0
        self.last_fault = ""
        self.stopped_by_fault = False

    def frame(self) -> None:
        """One camera frame through the graph by hand, then control's and the actuator's ticks."""
        self.camera.node.spin_once()
        self.tick()

    def tick(self) -> None:
        self.control.tick()
        self.actuator.tick()

    def fault(self, where: str, exc: BaseException) -> None:
        """An exception in a node on the in-process executor (LocalBus.on_error): emergency stop, latched.

        The hardware is reached first, so nothing else in the handler can delay neutral. Control must
        then hold the stop; when it cannot (its request raises or is refused, or it is not latched
        after it), the executor ends (`bus.stop`) with `stopped_by_fault` set: nothing else would keep
        a later command from moving the car, and `racer car` closes at neutral and fails."""
        try:
            self.actuator.core.neutral()  # a device fault stays the actuator's diagnostic
        except Exception:
            log.exception("the actuator could not go to neutral")
        self.faults += 1
        try:
            self.last_fault = f"{where}: {type(exc).__name__}: {exc}"
        except Exception:  # an exception that cannot be printed is still a fault
            self.last_fault = f"{where}: {type(exc).__name__}"
        log.error("fault in %s, emergency stop", self.last_fault)
        try:
            latched = self.control.request("emergency_stop") == "ok" and self.control.core.estopped
        except Exception:
            log.exception("control's emergency stop raised")
            latched = False
        if not latched:
            log.critical("control did not take the emergency stop: stopping the car")
            self.stopped_by_fault = True
            self.bus.stop()

    def close(self) -> None:
        """The actuator ends at neutral with its outputs off, then the camera's reader ends."""
        close_all([self.actuator.close, self.camera.close])
