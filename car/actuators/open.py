"""Actuator spec strings (`--actuator SPEC`) to drivers.

`sim` is not opened here: the simulated car lives in sim2real, which the car package never
imports, so whoever composes the stack resolves it before calling open_actuator.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from car.actuators.calibration import Calibration
from car.actuators.maestro import MaestroDriver
from car.actuators.pca9685 import Pca9685Driver
from car.actuators.pulse import PulseDriver
from car.actuators.pwm_sysfs import PWM_CLASS_DIR, PwmSysfsDriver

SPEC_FORMS = "pwm-sysfs[:CHIP_DIR], pca9685:BUS:ADDR or maestro:PORT"
PCA9685_ADDRESSES = range(0x40, 0x80)


@dataclass(frozen=True)
class ActuatorSpec:
    """A parsed spec: kind plus its location (a sysfs dir, an I2C bus and address, a serial port)."""

    kind: str
    path: str = ""
    bus: int = 0
    address: int = 0


def _integer(text: str, what: str, spec: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"actuator spec {spec!r}: {what} {text!r} is not an integer") from None


def parse_actuator_spec(spec: str) -> ActuatorSpec:
    """Check a spec without touching hardware; ValueError with a one-line reason if malformed."""
    kind, _, rest = spec.partition(":")
    if kind == "sim":
        raise ValueError("actuator spec 'sim' is the simulator, which the caller provides; "
                         f"open_actuator drives hardware: {SPEC_FORMS}")
    if kind == "pwm-sysfs":
        if ":" in spec and not rest:
            raise ValueError(f"actuator spec {spec!r}: empty CHIP_DIR (omit ':' for /sys/class/pwm)")
        return ActuatorSpec("pwm-sysfs", path=rest)
    if kind == "maestro":
        if not rest:
            raise ValueError(f"actuator spec {spec!r}: expected maestro:PORT, e.g. maestro:/dev/ttyACM0")
        return ActuatorSpec("maestro", path=rest)
    if kind == "pca9685":
        parts = rest.split(":")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"actuator spec {spec!r}: expected pca9685:BUS:ADDR, e.g. pca9685:1:0x40")
        bus = _integer(parts[0], "I2C bus", spec)
        address = _integer(parts[1], "address", spec)
        if bus < 0:
            raise ValueError(f"actuator spec {spec!r}: I2C bus {bus} is negative")
        if address not in PCA9685_ADDRESSES:
            raise ValueError(f"actuator spec {spec!r}: address {address:#x} is outside the PCA9685's 0x40..0x7f")
        return ActuatorSpec("pca9685", bus=bus, address=address)
    raise ValueError(f"unknown actuator spec {spec!r}: expected {SPEC_FORMS}")


def open_actuator(spec: str, calibration: Calibration) -> PulseDriver:
    """Open the hardware named by spec at neutral; ActuatorFault if the device is absent or fails."""
    parsed = parse_actuator_spec(spec)
    if parsed.kind == "pwm-sysfs":
        return PwmSysfsDriver(calibration, Path(parsed.path) if parsed.path else PWM_CLASS_DIR)
    if parsed.kind == "pca9685":
        return Pca9685Driver(calibration, parsed.bus, parsed.address)
    return MaestroDriver(calibration, parsed.path)
