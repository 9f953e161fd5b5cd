"""A temp-dir sysfs with the kernel's PWM and GPIO attribute rules.

The tree is real directories and files, laid out like /sys (class links into devices, a
`device` link per chip); writes go through `write`, which checks each value the way the
kernel's store callbacks do (Documentation/driver-api/pwm.rst, Documentation/admin-guide/
gpio/sysfs.rst) before it changes the file, so a driver bug surfaces as the same errno.
"""
from __future__ import annotations

import errno
import itertools
import os
from pathlib import Path

PCI_DEVICE = "0000:00:17.0"
_staging = itertools.count()


def _fail(code: int, path: Path) -> OSError:
    return OSError(code, os.strerror(code), str(path))


def _store(path: Path, text: str) -> None:
    """Swap the file's content in one step: the kernel never shows a half-written attribute."""
    staged = path.with_name(f".{path.name}.{next(_staging)}")
    staged.write_text(text)
    os.replace(staged, path)


def _parse_uint(text: str, path: Path) -> int:
    """kstrtou64 with base 0: decimal, 0x hex or 0 octal, one trailing newline allowed."""
    body = text[:-1] if text.endswith("\n") else text
    if not body or body != body.strip() or "_" in body:
        raise _fail(errno.EINVAL, path)
    try:
        value = int(body, 0)
    except ValueError:
        raise _fail(errno.EINVAL, path) from None
    if value < 0:
        raise _fail(errno.EINVAL, path)
    return value


class PwmSysfsModel:
    """/sys/class/pwm with the DeepRacer chip (plus a decoy chip) and /sys/class/gpio under `root`."""

    def __init__(self, root: Path, npwm: int = 4) -> None:
        self.root = root
        self.pwm_dir = root / "class" / "pwm"
        self.gpio_dir = root / "class" / "gpio"
        self.writes: list[tuple[str, str]] = []
        self._add_chip("platform/INT34C8:00", "pwmchip0", npwm)
        self.chip = self._add_chip(f"pci0000:00/{PCI_DEVICE}", "pwmchip1", npwm)
        self.gpio_dir.mkdir(parents=True)
        for name in ("export", "unexport"):
            _store(self.gpio_dir / name, "")

    def _add_chip(self, device: str, name: str, npwm: int) -> Path:
        device_dir = self.root / "devices" / device
        chip = device_dir / "pwm" / name
        chip.mkdir(parents=True)
        (chip / "device").symlink_to(os.path.relpath(device_dir, chip))
        _store(chip / "npwm", f"{npwm}\n")
        for attribute in ("export", "unexport"):
            _store(chip / attribute, "")
        self.pwm_dir.mkdir(parents=True, exist_ok=True)
        link = self.pwm_dir / name
        link.symlink_to(os.path.relpath(chip, self.pwm_dir))
        return link

    def read(self, path: Path) -> str:
        return Path(path).read_text().strip()

    def write(self, path: Path, value: str) -> None:
        real = Path(os.path.realpath(path))
        if not real.exists():
            raise _fail(errno.ENOENT, Path(path))
        if real.is_dir():
            raise _fail(errno.EISDIR, Path(path))
        handler = {
            "export": self._export, "unexport": self._unexport, "period": self._pwm_state,
            "duty_cycle": self._pwm_state, "enable": self._pwm_state, "polarity": self._polarity,
            "direction": self._direction, "value": self._value,
        }.get(real.name)
        if handler is None:
            raise _fail(errno.EACCES, Path(path))
        handler(real, value)
        self.writes.append((str(Path(path).relative_to(self.root)), value))

    def _is_gpio(self, real: Path) -> bool:
        return real.is_relative_to(os.path.realpath(self.gpio_dir))

    def _export(self, real: Path, value: str) -> None:
        number = _parse_uint(value, real)
        if self._is_gpio(real):
            line = real.parent / f"gpio{number}"
            if line.exists():
                raise _fail(errno.EBUSY, real)
            line.mkdir()
            _store(line / "direction", "in\n")
            _store(line / "value", "0\n")
            return
        if number >= int((real.parent / "npwm").read_text()):
            raise _fail(errno.ENODEV, real)
        channel = real.parent / f"pwm{number}"
        if channel.exists():
            raise _fail(errno.EBUSY, real)
        channel.mkdir()
        for attribute, initial in (("period", "0"), ("duty_cycle", "0"), ("enable", "0"),
                                   ("polarity", "normal")):
            _store(channel / attribute, initial + "\n")

    def _unexport(self, real: Path, value: str) -> None:
        number = _parse_uint(value, real)
        gpio = self._is_gpio(real)
        target = real.parent / (f"gpio{number}" if gpio else f"pwm{number}")
        if not target.is_dir():
            raise _fail(errno.EINVAL if gpio else errno.ENODEV, real)
        for child in target.iterdir():
            child.unlink()
        target.rmdir()

    def _pwm_state(self, real: Path, value: str) -> None:
        """pwm_apply_state: period must be nonzero and duty_cycle <= period; enable is 0 or 1."""
        channel = real.parent
        state = {name: int((channel / name).read_text()) for name in ("period", "duty_cycle", "enable")}
        state[real.name] = _parse_uint(value, real)
        if state["enable"] not in (0, 1) or state["period"] == 0 or state["duty_cycle"] > state["period"]:
            raise _fail(errno.EINVAL, real)
        _store(real, f"{state[real.name]}\n")

    def _polarity(self, real: Path, value: str) -> None:
        text = value.strip()
        if text not in ("normal", "inversed"):
            raise _fail(errno.EINVAL, real)
        if int((real.parent / "enable").read_text()):
            raise _fail(errno.EBUSY, real)
        _store(real, text + "\n")

    def _direction(self, real: Path, value: str) -> None:
        text = value.strip()
        if text not in ("in", "out", "low", "high"):
            raise _fail(errno.EINVAL, real)
        _store(real, ("in" if text == "in" else "out") + "\n")
        if text != "in":
            _store(real.parent / "value", "1\n" if text == "high" else "0\n")

    def _value(self, real: Path, value: str) -> None:
        if (real.parent / "direction").read_text().strip() != "out":
            raise _fail(errno.EPERM, real)
        _store(real, "1\n" if _parse_uint(value, real) else "0\n")

    def channel(self, number: int) -> Path:
        return Path(os.path.realpath(self.chip)) / f"pwm{number}"

    def attribute(self, number: int, name: str) -> int:
        return int((self.channel(number) / name).read_text())

    def gpio(self, number: int) -> Path:
        return self.gpio_dir / f"gpio{number}"

    def outputs_enabled(self) -> bool:
        """True when GPIO 436 (active low) lets the PWM signals through to the servo and ESC."""
        line = self.gpio(436)
        return (line.is_dir() and (line / "direction").read_text().strip() == "out"
                and (line / "value").read_text().strip() == "0")
