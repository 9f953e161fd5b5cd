"""Stock DeepRacer outputs: the kernel PWM sysfs interface of the board's PCI PWM controller.

Channel pwm0 drives the ESC and pwm1 the steering servo, 20 ms period, duty in ns, like
servo_pkg. GPIO 436 gates the output buffer and is active low: 1 cuts both signals.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Protocol

from car.actuators.pulse import ActuatorCalibration, PulseDriver

PWM_DEVICE = "0000:00:17.0"
PERIOD_NS = 20_000_000
MOTOR_CHANNEL = 0
SERVO_CHANNEL = 1
OUTPUT_ENABLE_GPIO = 436
PWM_CLASS_DIR = Path("/sys/class/pwm")


class SysfsFiles(Protocol):
    """How the driver reads and writes attribute files; tests substitute a kernel model."""

    def read(self, path: Path) -> str: ...

    def write(self, path: Path, value: str) -> None: ...


class KernelFiles:
    """Real sysfs: one write() per value, as the kernel's store callbacks expect."""

    def read(self, path: Path) -> str:
        return path.read_text().strip()

    def write(self, path: Path, value: str) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)


def find_chip(pwm_dir: Path) -> Path:
    """The pwmchipN whose device link leads to the DeepRacer PWM controller (or pwm_dir itself if it is a chip)."""
    if (pwm_dir / "export").exists():
        return pwm_dir
    for chip in sorted(pwm_dir.glob("pwmchip*")):
        if PWM_DEVICE in os.path.realpath(chip / "device"):
            return chip
    raise OSError(errno.ENODEV, f"no pwmchip under {pwm_dir} belongs to PCI device {PWM_DEVICE}")


class PwmSysfsDriver(PulseDriver):
    """ESC and servo pulses through /sys/class/pwm, output buffer through /sys/class/gpio.

    pwm_dir is the PWM class directory or one pwmchipN in it; the GPIO class directory defaults
    to its sibling `gpio`, so a relocated sysfs tree keeps working.
    """

    def __init__(self, calibration: ActuatorCalibration, pwm_dir: Path = PWM_CLASS_DIR,
                 gpio_dir: Path | None = None, files: SysfsFiles | None = None) -> None:
        self.pwm_dir = Path(pwm_dir)
        class_dir = self.pwm_dir.parent if (self.pwm_dir / "export").exists() else self.pwm_dir
        self.gpio_dir = Path(gpio_dir) if gpio_dir is not None else class_dir.parent / "gpio"
        self.files = files or KernelFiles()
        self._gpio = self.gpio_dir / f"gpio{OUTPUT_ENABLE_GPIO}"
        self._channels: dict[int, Path] = {}
        super().__init__(calibration, f"pwm-sysfs:{self.pwm_dir}")

    def _connect(self) -> None:
        chip = find_chip(self.pwm_dir)
        if not self._gpio.exists():
            self.files.write(self.gpio_dir / "export", str(OUTPUT_ENABLE_GPIO))
        # "high" makes it an output that starts high (outputs off) without a glitch through "out" = low.
        self.files.write(self._gpio / "direction", "high")
        for channel in (MOTOR_CHANNEL, SERVO_CHANNEL):
            pwm = chip / f"pwm{channel}"
            if not pwm.exists():
                self.files.write(chip / "export", str(channel))
            if int(self.files.read(pwm / "duty_cycle")) > PERIOD_NS:
                self.files.write(pwm / "duty_cycle", "0")
            self.files.write(pwm / "period", str(PERIOD_NS))
            self._channels[channel] = pwm
        self._write(self.calibration.motor.mid, self.calibration.servo.mid)
        for pwm in self._channels.values():
            self.files.write(pwm / "enable", "1")
        self.files.write(self._gpio / "value", "0")

    def _write(self, motor_ns: int, servo_ns: int) -> None:
        self.files.write(self._channels[MOTOR_CHANNEL] / "duty_cycle", str(motor_ns))
        self.files.write(self._channels[SERVO_CHANNEL] / "duty_cycle", str(servo_ns))

    def _disable(self) -> None:
        self.files.write(self._gpio / "value", "1")
        for pwm in self._channels.values():
            self.files.write(pwm / "enable", "0")

    def _disconnect(self) -> None:
        """Nothing to release: sysfs keeps no handle open between writes."""
