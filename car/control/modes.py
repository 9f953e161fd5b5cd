"""Drive modes. Every change of mode, and every stop, passes through neutral."""
from __future__ import annotations

from enum import Enum


class Mode(str, Enum):
    MANUAL = "manual"
    AUTONOMOUS = "autonomous"
    CALIBRATION = "calibration"


class ModeState:
    """Mode, start/stop and the max-speed setting (0..1, the console's default 0.5).

    The car never moves without a user action: autonomous needs start(); manual needs a teleop
    command; a mode change stops the car.
    """

    def __init__(self, max_speed: float = 0.5):
        self.mode = Mode.MANUAL
        self.running = False
        self.max_speed = 0.0
        self.set_max_speed(max_speed)

    def set_mode(self, mode: Mode | str) -> bool:
        """Returns True when the mode changed (the caller then emits neutral)."""
        try:
            new = Mode(mode)
        except ValueError:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(m.value for m in Mode)}") from None
        changed = new != self.mode
        self.mode = new
        if changed:
            self.running = False
        return changed

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def set_max_speed(self, value: float) -> None:
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"max speed must be between 0 and 1, got {value!r}")
        self.max_speed = float(value)
