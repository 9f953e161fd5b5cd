"""The contract every actuator driver meets, hardware or simulated."""
from __future__ import annotations

from typing import Protocol


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
