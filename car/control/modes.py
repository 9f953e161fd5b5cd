"""Drive modes, start/stop, the latch and the speed limits: the car's one state machine.

The car never moves without a user action, and a fault that clears never restarts it:

- autonomous drives only after `start`;
- manual drives on teleop commands, the user's action in that mode;
- any fault latches: the car stays at neutral until the user acts again. `start` clears every
  latch; in manual mode a teleop command at zero throttle (the stick let go) clears a latch too,
  except an emergency stop, which only `start` clears. A latch is never cleared while the fault
  that caused it is still present.

The two speed limits are separate settings, as on the stock DeepRacer: `max_speed` (autonomous,
the console's `max_nav_throttle`) and `manual_max_speed` (the `max_speed` of `manual_drive`).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

EMERGENCY_STOP = "emergency stop"


class Mode(str, Enum):
    MANUAL = "manual"
    AUTONOMOUS = "autonomous"
    CALIBRATION = "calibration"


@dataclass(frozen=True)
class Latch:
    """Why the car is held at neutral until a user acts, and when (node clock, s) it latched."""

    reason: str
    since: float

    @property
    def emergency(self) -> bool:
        return self.reason == EMERGENCY_STOP


def brief(value: object, limit: int = 40) -> str:
    """repr() for an error message, cut to `limit` characters (a hostile client's 5,000-digit number included)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** limit:
        return f"an integer of {len(str(abs(value))) if abs(value) < 10 ** 4000 else 'over 4000'} digits"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_speed_limit(value: object, name: str = "max speed") -> float:
    """A speed limit 0..1 (a fraction of full throttle); ValueError otherwise (NaN, inf and huge integers too)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {brief(value)}")
    return float(value)


class ModeState:
    """Mode, running, latch and limits; every method is one atomic transition (the caller emits neutral)."""

    def __init__(self, max_speed: float = 0.5, manual_max_speed: float = 0.5):
        self.mode = Mode.MANUAL
        self.running = False
        self.latch: Latch | None = None
        self.max_speed = check_speed_limit(max_speed)
        self.manual_max_speed = check_speed_limit(manual_max_speed, "manual max speed")

    def set_mode(self, mode: Mode | str, driving: bool = False) -> bool:
        """Returns True when the mode changed. Calibration is entered only from stopped (`driving`: outputs live)."""
        try:
            mode = Mode(mode)
        except ValueError:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(m.value for m in Mode)}") from None
        moving = driving or (self.running and self.mode is Mode.AUTONOMOUS)  # manual moves only on teleop
        if mode is Mode.CALIBRATION and mode is not self.mode and moving:
            raise ValueError("stop the car before calibrating (calibration mode is entered only from stopped)")
        changed = mode is not self.mode
        self.mode = mode
        if changed:
            self.running = False
            if self.latch is not None and not self.latch.emergency:
                self.latch = None  # choosing a mode is a user action; an emergency stop still needs start
        return changed

    def start(self) -> None:
        self.latch = None
        self.running = True

    def stop(self) -> None:
        self.running = False

    def trip(self, reason: str, now: float) -> None:
        """Latch a fault (the first reason is kept until a user clears it; an emergency stop overrides)."""
        self.running = False
        if self.latch is None or (reason == EMERGENCY_STOP and not self.latch.emergency):
            self.latch = Latch(reason, now)

    def rearm(self) -> bool:
        """A user action that is not `start` (zero-throttle teleop, a calibration step): clears a latch but
        an e-stop."""
        if self.latch is not None and not self.latch.emergency:
            self.latch = None
        return self.latch is None

    def set_max_speed(self, value: float) -> None:
        self.max_speed = check_speed_limit(value)

    def set_manual_max_speed(self, value: float) -> None:
        self.manual_max_speed = check_speed_limit(value, "manual max speed")
