"""Steering and throttle calibration through the console, in the DeepRacer console's units.

The wizard asks for raw pulse widths ("move the wheels to X"), beyond what the current
calibration maps commands to. While the car is in calibration mode the driver therefore runs on
a raw calibration spanning the whole 0.5..2.5 ms pulse range around the current centres, and a
raw pulse becomes the normalised command that lands on exactly that pulse. Leaving calibration
mode puts the saved calibration back on the driver. Drivers without pulse calibration (the
simulator) just receive the normalised commands.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Protocol

from car.console.errors import ApiError
from car.control.modes import Mode
from car.runtime import CarRuntime

KINDS = {"angle": "Servo", "throttle": "Motor"}


class CalibrationFormat(Protocol):
    """What the console needs of `calibration.servo` (the DeepRacer calibration.json).

    The composer passes that module in: the car package does not import the calibration package.
    Calibrations and pulse ranges are its frozen dataclasses, changed here with dataclasses.replace.
    """

    MIN_PULSE_NS: int
    MAX_PULSE_NS: int
    FACTORY_DEFAULT: Any

    def load(self, path: Path) -> Any: ...

    def save(self, calibration: Any, path: Path) -> None: ...

    def validate_range(self, pulses: Any, where: str) -> None: ...

    def pulse_from_ui(self, output: str, ui_value: float) -> int: ...

    def ui_from_pulse(self, output: str, pulse_ns: int) -> float: ...


def _number(body: dict[str, Any], key: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ApiError(400, f"{key} must be a number, got {value!r}")
    return float(value)


class CalibrationService:
    """Owns the calibration file and what the driver runs on; calls run under the graph lock."""

    def __init__(self, runtime: CarRuntime, path: Path, fmt: CalibrationFormat):
        self.runtime = runtime
        self.path = path
        self.fmt = fmt
        self.saved = fmt.load(path) if path.is_file() else fmt.FACTORY_DEFAULT
        self.raw_mids = self.raw_pulses = (self.saved.servo.mid, self.saved.motor.mid)
        self._apply(self.saved)

    def _apply(self, calibration: Any) -> None:
        driver = self.runtime.stack.actuator.core.driver
        if hasattr(driver, "calibration"):
            self.runtime.call(setattr, driver, "calibration", calibration)

    def _range(self, kind: str) -> tuple[str, Any]:
        if kind not in KINDS:
            raise ApiError(404, f"unknown calibration {kind!r}; expected angle or throttle")
        output = KINDS[kind]
        return output, self.saved.servo if output == "Servo" else self.saved.motor

    def _raw_range(self, pulses: Any) -> Any:
        """All of 0.5..2.5 ms around the current centre, + command = longer pulse."""
        return dataclasses.replace(pulses, min=self.fmt.MIN_PULSE_NS, max=self.fmt.MAX_PULSE_NS, polarity=1)

    def _raw_command(self, pulse_ns: int, mid: int) -> float:
        """The command that the raw range around `mid` maps to `pulse_ns`."""
        if pulse_ns >= mid:
            return (pulse_ns - mid) / (self.fmt.MAX_PULSE_NS - mid)
        return (pulse_ns - mid) / (mid - self.fmt.MIN_PULSE_NS)

    def enter(self) -> None:
        """Calibration mode at neutral, the driver on raw pulses."""
        self.runtime.command("set_mode", "calibration")
        self.raw_mids = self.raw_pulses = (self.saved.servo.mid, self.saved.motor.mid)
        self._apply(dataclasses.replace(self.saved, servo=self._raw_range(self.saved.servo),
                                        motor=self._raw_range(self.saved.motor)))

    def leave(self) -> None:
        self._apply(self.saved)

    def get(self, kind: str) -> dict[str, Any]:
        output, pulses = self._range(kind)
        ui = self.fmt.ui_from_pulse
        return {"mid": ui(output, pulses.mid), "min": ui(output, pulses.min), "max": ui(output, pulses.max),
                "polarity": pulses.polarity, "success": True}

    def set(self, kind: str, body: dict[str, Any]) -> None:
        """Validate, save atomically, and use the new values (at once unless still calibrating)."""
        output, current = self._range(kind)
        polarity = body.get("polarity")
        if polarity not in (1, -1) or isinstance(polarity, bool):
            raise ApiError(400, f"polarity must be 1 or -1, got {polarity!r}")
        try:
            pulses = dataclasses.replace(current, polarity=polarity, **{
                key: self.fmt.pulse_from_ui(output, _number(body, key)) for key in ("min", "mid", "max")})
            self.fmt.validate_range(pulses, f"Calibration.{output}")
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        updated = dataclasses.replace(self.saved, **{"servo" if output == "Servo" else "motor": pulses})
        try:
            self.fmt.save(updated, self.path)
        except OSError as exc:
            raise ApiError(500, f"cannot save {self.path}: {exc.strerror or exc}") from None
        self.saved = updated
        if self.runtime.stack.control.core.state.mode is not Mode.CALIBRATION:
            self._apply(updated)

    def adjust(self, kind: str, body: dict[str, Any]) -> None:
        """Hold one output at a raw pulse (DeepRacer console units), the other where it was."""
        output, _ = self._range(kind)
        try:
            pulse = self.fmt.pulse_from_ui(output, _number(body, "pwm"))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        low, high = self.fmt.MIN_PULSE_NS, self.fmt.MAX_PULSE_NS
        if not low <= pulse <= high:
            raise ApiError(400, f"pwm {body['pwm']} is a {pulse} ns pulse, outside {low}..{high} ns")
        servo, motor = self.raw_pulses
        self.raw_pulses = (pulse, motor) if output == "Servo" else (servo, pulse)
        steering, throttle = (self._raw_command(p, mid) for p, mid in zip(self.raw_pulses, self.raw_mids))
        try:
            self.runtime.command("calibrate", steering, throttle)
        except ValueError as exc:
            raise ApiError(409, f"{exc}; call /api/set_calibration_mode first") from None
