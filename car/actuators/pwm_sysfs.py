"""Stock DeepRacer outputs: the kernel PWM sysfs interface of the board's PCI PWM controller.

Channel pwm0 drives the ESC and pwm1 the steering servo, 20 ms period, duty in ns, like
servo_pkg. GPIO 436 gates the output buffer and is active low: 1 cuts both signals.
"""
from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Protocol

from car.actuators.calibration import Calibration
from car.actuators.pulse import PulseDriver

PWM_DEVICE = "0000:00:17.0"
PERIOD_NS = 20_000_000
MOTOR_CHANNEL = 0
SERVO_CHANNEL = 1
OUTPUT_ENABLE_GPIO = 436
PWM_CLASS_DIR = Path("/sys/class/pwm")


class SysfsAttribute(Protocol):
    """One attribute file kept open; each write() is one whole value, as a sysfs store takes it."""

    def write(self, value: str) -> None: ...

    def close(self) -> None: ...


class SysfsFiles(Protocol):
    """How the driver reads and writes attribute files; tests substitute a kernel model."""

    def read(self, path: Path) -> str: ...

    def write(self, path: Path, value: str) -> None: ...

    def open(self, path: Path) -> SysfsAttribute: ...


class KernelAttribute:
    """A real sysfs attribute held open: a value is one pwrite() at offset 0, and needs no new file
    descriptor, so pulses keep flowing when the process has run out of them (EMFILE).

    Raises OSError naming the path (ENODEV once the attribute is gone, e.g. unexported).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)

    def write(self, value: str) -> None:
        try:
            os.pwrite(self._fd, value.encode(), 0)  # after close(), fd -1: EBADF
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class KernelFiles:
    """Real sysfs: one write() per value, as the kernel's store callbacks expect."""

    def read(self, path: Path) -> str:
        return path.read_text().strip()

    def write(self, path: Path, value: str) -> None:
        attribute = self.open(path)
        try:
            attribute.write(value)
        finally:
            attribute.close()

    def open(self, path: Path) -> KernelAttribute:
        return KernelAttribute(path)


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

    def __init__(self, calibration: Calibration, pwm_dir: Path = PWM_CLASS_DIR,
                 gpio_dir: Path | None = None, files: SysfsFiles | None = None) -> None:
        self.pwm_dir = Path(pwm_dir)
        class_dir = self.pwm_dir.parent if (self.pwm_dir / "export").exists() else self.pwm_dir
        self.gpio_dir = Path(gpio_dir) if gpio_dir is not None else class_dir.parent / "gpio"
        self.files = files or KernelFiles()
        self._gpio = self.gpio_dir / f"gpio{OUTPUT_ENABLE_GPIO}"
        # Opened once at connect and kept: a pulse must never need a free file descriptor.
        self._duty: dict[int, SysfsAttribute] = {}
        self._enable: dict[int, SysfsAttribute] = {}
        self._output_off: SysfsAttribute | None = None
        super().__init__(calibration, f"pwm-sysfs:{self.pwm_dir}")

    def _connect(self) -> None:
        self._disconnect()
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
            self._duty[channel] = self.files.open(pwm / "duty_cycle")
            self._enable[channel] = self.files.open(pwm / "enable")
        output_off = self._output_off = self.files.open(self._gpio / "value")
        # Neutral at the calibrated mids first; only then the PWM, and last the output buffer.
        self._write(self.calibration.motor.mid, self.calibration.servo.mid)
        for enable in self._enable.values():
            enable.write("1")
        output_off.write("0")

    def _write(self, motor_ns: int, servo_ns: int) -> None:
        self._duty[MOTOR_CHANNEL].write(str(motor_ns))
        self._duty[SERVO_CHANNEL].write(str(servo_ns))

    def _disable(self) -> None:
        assert self._output_off is not None, "only called while connected"
        self._output_off.write("1")
        for enable in self._enable.values():
            enable.write("0")

    def _disconnect(self) -> None:
        """Close every attribute held open; never raises."""
        handles = [*self._duty.values(), *self._enable.values(), self._output_off]
        self._duty, self._enable, self._output_off = {}, {}, None
        for handle in filter(None, handles):
            with contextlib.suppress(OSError):
                handle.close()
