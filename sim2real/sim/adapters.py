"""The simulator seen through the car stack's hardware interfaces, so the same nodes drive either."""
from __future__ import annotations

import numpy as np

from car.actuators.base import ActuatorFault

from .world import Simulator


class SimActuator:
    """A `car.actuators.base.Driver` whose servo and ESC are the simulated car's."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self._closed = False
        sim.apply(0.0, 0.0)

    def set(self, steering: float, throttle: float) -> None:
        if self._closed:
            raise ActuatorFault("simulated actuator is closed")
        self._sim.apply(steering, throttle)

    def neutral(self) -> None:
        if not self._closed:
            self._sim.apply(0.0, 0.0)

    def close(self) -> None:
        self.neutral()
        self._closed = True


class SimCamera:
    """A camera source: the frame at the car's current pose, stamped with simulated time."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def read(self) -> tuple[np.ndarray, float]:
        return self._sim.render(), self._sim.time
