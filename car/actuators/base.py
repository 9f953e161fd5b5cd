"""The contract every actuator driver meets, hardware or simulated."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from car.actuators.calibration import Calibration


class ActuatorFault(RuntimeError):
    """The driver could not deliver a command (device gone, bus error)."""


class Driver(Protocol):
    """Normalised commands in the DeepRacer ServoCtrlMsg convention.

    steering: -1 (full right) .. +1 (full left); throttle: -1 (full reverse) .. +1 (full forward).
    Drivers apply calibration themselves, start at neutral and leave outputs disabled on close().
    """

    def set(self, steering: float, throttle: float) -> None: ...

    def neutral(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class CalibratedDriver(Driver, Protocol):
    """A driver of servo/ESC pulses (the hardware drivers): its commands go through `calibration`,
    which the actuator replaces at neutral. A driver without one (the simulator) takes normalised
    commands as they are."""

    calibration: Calibration
