"""Steering and throttle calibration through the console, in the DeepRacer console's units.

The wizard asks for raw pulse widths ("move the wheels to X"), beyond what the current
calibration maps commands to. The actuator therefore holds a second, raw calibration
(`car.actuators.calibration.wizard_ranges`: the servo over the whole 0.5..2.5 ms range around its centre,
the ESC only within a narrow band of its centre, so no wizard step can spin the wheels hard). A raw
pulse becomes the normalised command that lands on exactly that pulse, sent to control (`calibrate`),
which publishes it in the calibration frame, valid in calibration mode only and lasting the teleop
deadman unless the wizard repeats it. A saved calibration goes to control too (`set_calibration`),
which owns what the actuator applies and hands it on. Drivers without pulse calibration (the
simulator) just receive the normalised commands.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from car.actuators import calibration
from car.console import bodies
from car.console.errors import ApiError, storage_error
from car.console.node import ConsoleNode

KINDS: dict[str, calibration.Output] = {"angle": "Servo", "throttle": "Motor"}
# Console units are far smaller; this only keeps hostile numbers (1e308) away from the pulse arithmetic.
UI_LIMIT = 1e6


def _number(body: dict[str, Any], key: str) -> float:
    return bodies.number(body, key, -UI_LIMIT, UI_LIMIT)


class CalibrationService:
    """Owns the calibration file and the wizard's raw pulses; control owns what the actuator applies.

    `initial` is the calibration the car started with (the actuator resolved the same one)."""

    def __init__(self, node: ConsoleNode, path: Path, initial: calibration.Calibration | None = None):
        self.node = node
        self.path = path
        if initial is None:
            initial = calibration.load(path) if path.is_file() else calibration.FACTORY_DEFAULT
        self.saved = initial
        self.raw = calibration.wizard_ranges(self.saved)
        self.raw_pulses = (self.saved.servo.mid, self.saved.motor.mid)

    def _range(self, kind: str) -> tuple[calibration.Output, calibration.PulseRange]:
        if kind not in KINDS:
            raise ApiError(404, f"unknown calibration {kind!r}; expected angle or throttle")
        output = KINDS[kind]
        return output, self.saved.servo if output == "Servo" else self.saved.motor

    @staticmethod
    def _raw_command(pulse_ns: int, pulses: Any) -> float:
        """The command that the raw range `pulses` (polarity 1) maps to `pulse_ns`."""
        if pulse_ns >= pulses.mid:
            return (pulse_ns - pulses.mid) / (pulses.max - pulses.mid)
        return (pulse_ns - pulses.mid) / (pulses.mid - pulses.min)

    def enter(self) -> None:
        """Calibration mode at neutral (control refuses it unless the car is stopped)."""
        try:
            self.node.ask("set_mode", "calibration")
        except ValueError as exc:
            raise ApiError(409, str(exc)) from None
        self.raw_pulses = (self.saved.servo.mid, self.saved.motor.mid)

    def get(self, kind: str) -> dict[str, Any]:
        output, pulses = self._range(kind)
        ui = calibration.ui_from_pulse
        return {"mid": ui(output, pulses.mid), "min": ui(output, pulses.min), "max": ui(output, pulses.max),
                "polarity": pulses.polarity, "success": True}

    def set(self, kind: str, body: dict[str, Any]) -> None:
        """Validate, have control hand it to the actuator (which switches at neutral; 409 while the car
        drives), then save it atomically, so the file never holds what the car refused; a save that
        fails (507 for a full disk) hands the saved calibration back, so the car never runs one it lost."""
        output, current = self._range(kind)
        polarity = bodies.choice(body, "polarity", [1, -1])
        try:
            pulses = dataclasses.replace(current, polarity=polarity, **{
                key: calibration.pulse_from_ui(output, _number(body, key)) for key in ("min", "mid", "max")})
            calibration.validate_range(pulses, f"Calibration.{output}")
        except (ValueError, OverflowError) as exc:
            raise ApiError(400, str(exc)) from None
        updated = dataclasses.replace(self.saved, **{"servo" if output == "Servo" else "motor": pulses})
        try:
            self.node.ask("set_calibration", calibration.to_dict(updated))
        except ValueError as exc:
            raise ApiError(409, str(exc)) from None
        try:
            calibration.save(updated, self.path)
        except OSError as exc:  # the car goes back to what the file holds: it starts with that next time
            self.node.ask("set_calibration", calibration.to_dict(self.saved))
            raise storage_error(exc, f"the calibration in {self.path}") from None
        self.saved, self.raw = updated, calibration.wizard_ranges(updated)
        self.raw_pulses = (updated.servo.mid, updated.motor.mid)

    def adjust(self, kind: str, body: dict[str, Any]) -> None:
        """Hold one output at a raw pulse (DeepRacer console units), the other where it was, for one deadman."""
        output, _ = self._range(kind)
        try:
            pulse = calibration.pulse_from_ui(output, _number(body, "pwm"))
        except (ValueError, OverflowError) as exc:
            raise ApiError(400, str(exc)) from None
        raw = self.raw.servo if output == "Servo" else self.raw.motor
        if not raw.min <= pulse <= raw.max:
            low, high = (calibration.ui_from_pulse(output, p) for p in (raw.min, raw.max))
            raise ApiError(400, f"pwm {body['pwm']} is a {pulse} ns pulse, outside the wizard's "
                                f"{raw.min}..{raw.max} ns (pwm {min(low, high):g}..{max(low, high):g})")
        servo, motor = self.raw_pulses
        self.raw_pulses = (pulse, motor) if output == "Servo" else (servo, pulse)
        steering = self._raw_command(self.raw_pulses[0], self.raw.servo)
        throttle = self._raw_command(self.raw_pulses[1], self.raw.motor)
        try:
            self.node.ask("calibrate", steering, throttle)
        except ValueError as exc:
            raise ApiError(409, f"{exc}; call /api/set_calibration_mode first") from None
