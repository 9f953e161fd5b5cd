"""DeepRacer actuator calibration: the `calibration.json` file, the command-to-pulse mapping the
actuator applies, and the console calibration wizard's units and raw ranges.

The file layout, the nanosecond units and the piecewise-linear mapping are those of the stock
DeepRacer servo_pkg, so a car calibrated with the AWS console keeps its values here and back.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from car.atomicfile import replace_atomically

FILE_VERSION = 1
MIN_PULSE_NS = 500_000
MAX_PULSE_NS = 2_500_000

Output = Literal["Servo", "Motor"]
UI_OFFSET_US = 1500.0
# The ESC band of a calibration wizard step: 0.25 ms either side of neutral, ~1.6x the factory
# calibration's widest offset, so no wizard step can spin the wheels hard.
RAW_THROTTLE_BAND_NS = 250_000
UI_US_PER_UNIT: dict[str, float] = {"Servo": 10.0, "Motor": 4.5}


class CalibrationError(ValueError):
    """A calibration file or value that would drive the car wrongly; the message names the field."""


@dataclass(frozen=True)
class PulseRange:
    """One output's pulse widths in ns (min < mid < max) and the sign that maps commands onto them."""

    min: int
    mid: int
    max: int
    polarity: int

    def pulse_ns(self, command: float) -> int:
        """Pulse width for a normalised command in [-1, 1], piecewise linear around mid.

        servo_pkg truncates a float32 product; this rounds a float64 one to the nearest ns, which
        differs by at most 1 ns and keeps results exact for exact inputs.
        """
        if not -1.0 <= command <= 1.0:
            raise ValueError(f"command {command!r} is outside [-1, 1]")
        value = command * self.polarity
        if value < 0:
            return round(self.mid + value * (self.mid - self.min))
        if value > 0:
            return round(self.mid + value * (self.max - self.mid))
        return self.mid


@dataclass(frozen=True)
class Calibration:
    """Both outputs of a car: the steering servo and the ESC ("Motor" in DeepRacer's words)."""

    servo: PulseRange
    motor: PulseRange


FACTORY_DEFAULT = Calibration(
    servo=PulseRange(min=1_200_000, mid=1_450_000, max=1_700_000, polarity=1),
    motor=PulseRange(min=1_311_000, mid=1_446_000, max=1_603_500, polarity=-1),
)


def _check_pulse(where: str, key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise CalibrationError(f"{where}.{key}: expected a whole number of ns, got {value!r}")
    if not MIN_PULSE_NS <= value <= MAX_PULSE_NS:
        raise CalibrationError(
            f"{where}.{key}: {int(value)} ns is outside {MIN_PULSE_NS}..{MAX_PULSE_NS} ns (0.5..2.5 ms)")


def validate_range(pulses: PulseRange, where: str) -> None:
    """Raise CalibrationError unless every pulse is 0.5..2.5 ms, min < mid < max, polarity is +-1."""
    for key in ("min", "mid", "max"):
        _check_pulse(where, key, getattr(pulses, key))
    if not pulses.min < pulses.mid:
        raise CalibrationError(f"{where}.min: {pulses.min} must be below mid {pulses.mid}")
    if not pulses.mid < pulses.max:
        raise CalibrationError(f"{where}.max: {pulses.max} must be above mid {pulses.mid}")
    if isinstance(pulses.polarity, bool) or pulses.polarity not in (1, -1):
        raise CalibrationError(f"{where}.polarity: expected 1 or -1, got {pulses.polarity!r}")


def _range_from(section: Any, where: str) -> PulseRange:
    if not isinstance(section, dict):
        raise CalibrationError(f"{where}: expected an object with min, mid, max, polarity")
    for key in ("min", "mid", "max", "polarity"):
        if key not in section:
            raise CalibrationError(f"{where}.{key}: missing")
    pulses = PulseRange(section["min"], section["mid"], section["max"], section["polarity"])
    validate_range(pulses, where)
    return PulseRange(int(pulses.min), int(pulses.mid), int(pulses.max), int(pulses.polarity))


def from_dict(document: Any) -> Calibration:
    """Parse the decoded calibration.json document, raising CalibrationError on any bad field."""
    if not isinstance(document, dict) or not isinstance(document.get("Calibration"), dict):
        raise CalibrationError("Calibration: missing top-level object")
    body = document["Calibration"]
    version = body.get("version", FILE_VERSION)
    if version != FILE_VERSION or isinstance(version, bool):
        raise CalibrationError(f"Calibration.version: unsupported version {version!r}, expected {FILE_VERSION}")
    return Calibration(
        servo=_range_from(body.get("Servo"), "Calibration.Servo"),
        motor=_range_from(body.get("Motor"), "Calibration.Motor"),
    )


def wizard_ranges(calibration: Calibration) -> Calibration:
    """The raw ranges of the calibration wizard's pulses for a car calibrated as `calibration`: the
    servo over all of 0.5..2.5 ms, the ESC only within RAW_THROTTLE_BAND_NS of its centre; polarity 1
    (a + command is a longer pulse)."""
    motor = calibration.motor
    return Calibration(servo=PulseRange(MIN_PULSE_NS, calibration.servo.mid, MAX_PULSE_NS, 1),
                       motor=PulseRange(max(MIN_PULSE_NS, motor.mid - RAW_THROTTLE_BAND_NS), motor.mid,
                                        min(MAX_PULSE_NS, motor.mid + RAW_THROTTLE_BAND_NS), 1))


def to_dict(calibration: Calibration) -> dict[str, Any]:
    """The calibration.json document, in the device's layout."""

    def section(pulses: PulseRange) -> dict[str, int]:
        return {"max": pulses.max, "mid": pulses.mid, "min": pulses.min, "polarity": pulses.polarity}

    return {"Calibration": {"Motor": section(calibration.motor), "Servo": section(calibration.servo),
                            "version": FILE_VERSION}}


def load(path: str | os.PathLike[str]) -> Calibration:
    """Read and validate a calibration.json; errors name the file and the field."""
    try:
        document = json.loads(Path(path).read_text())
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{path}: not valid JSON: {exc}") from exc
    try:
        return from_dict(document)
    except CalibrationError as exc:
        raise CalibrationError(f"{path}: {exc}") from None


def save(calibration: Calibration, path: str | os.PathLike[str]) -> None:
    """Validate, then replace the file atomically, keeping the previous one as `<name>.bak`."""
    validate_range(calibration.servo, "Calibration.Servo")
    validate_range(calibration.motor, "Calibration.Motor")
    text = json.dumps(to_dict(calibration), indent=3) + "\n"
    replace_atomically(path, text.encode())


def ui_from_pulse(output: Output, pulse_ns: int) -> float:
    """The DeepRacer console's calibration units: (pulse_us - 1500) / (10 for Servo, 4.5 for Motor)."""
    return (pulse_ns / 1000.0 - UI_OFFSET_US) / UI_US_PER_UNIT[output]


def pulse_from_ui(output: Output, ui_value: float) -> int:
    """Pulse width in ns for a console calibration value; the inverse of ui_from_pulse."""
    if not math.isfinite(ui_value):
        raise ValueError(f"{output} calibration value {ui_value!r} is not a finite number")
    return round((UI_OFFSET_US + ui_value * UI_US_PER_UNIT[output]) * 1000.0)
