"""A temp-dir sysfs with the kernel's PWM and GPIO attribute rules.

The tree is real directories and files, laid out like /sys (class links into devices, a
`device` link per chip); writes go through `write` (a one-off open, write, close) or through an
attribute kept open with `open`, each checked the way the kernel's store callbacks do
(Documentation/driver-api/pwm.rst, Documentation/admin-guide/gpio/sysfs.rst) before it changes the
file, so a driver bug surfaces as the same errno. As on sysfs, a store through an open attribute
needs no new file descriptor (the process's open-file limit applies to opening, not to writing),
and one through an attribute removed since (unexport) fails with ENODEV.
"""
from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Callable
from pathlib import Path

PCI_DEVICE = "0000:00:17.0"
_staging = itertools.count()


def _fail(code: int, path: Path) -> OSError:
    return OSError(code, os.strerror(code), str(path))


def _overwrite(fd: int, text: str) -> None:
    """Replace an open file's content in place: the new value padded with blanks to the old length in
    one write, then truncated, so a reader elsewhere sees one whole value (perhaps with trailing
    blanks, which int() and strip() ignore), never a mix of two."""
    data = text.encode()
    os.pwrite(fd, data.ljust(os.fstat(fd).st_size, b" "), 0)
    os.ftruncate(fd, len(data))


def _store(path: Path, text: str) -> None:
    """Set a file's content: in place when it exists, so attributes held open keep seeing it; a new
    file appears whole (the kernel never shows a half-written attribute)."""
    if path.exists():
        fd = os.open(path, os.O_RDWR)
        try:
            _overwrite(fd, text)
        finally:
            os.close(fd)
        return
    staged = path.with_name(f".{path.name}.{next(_staging)}")
    staged.write_text(text)
    os.replace(staged, path)


class _Siblings:
    """The files of one attribute's directory as a store callback sees them: by path (each access
    opens the file), or through descriptors an open attribute holds (no access opens anything)."""

    def __init__(self, folder: Path, fds: dict[str, int] | None = None) -> None:
        self.folder = folder
        self.fds = fds or {}

    def read(self, name: str) -> str:
        fd = self.fds.get(name)
        return (self.folder / name).read_text() if fd is None else os.pread(fd, 4096, 0).decode()

    def store(self, name: str, text: str) -> None:
        fd = self.fds.get(name)
        if fd is None:
            _store(self.folder / name, text)
        else:
            _overwrite(fd, text)


class ModelAttribute:
    """An attribute file held open (PwmSysfsModel.open): descriptors on its directory's files are
    taken now, so a write opens nothing; a write after the attribute was removed is ENODEV."""

    def __init__(self, model: PwmSysfsModel, path: Path) -> None:
        self.model = model
        self.path = Path(path)
        self.real = model.writable(self.path)
        files = [f for f in self.real.parent.iterdir()
                 if f.is_file() and not f.is_symlink() and not f.name.startswith(".")]
        self.siblings = _Siblings(self.real.parent, {})
        try:
            for file in files:
                self.siblings.fds[file.name] = os.open(file, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            self.close()
            raise

    def write(self, value: str) -> None:
        fd = self.siblings.fds.get(self.real.name)
        if fd is None:
            raise _fail(errno.EBADF, self.path)
        if os.fstat(fd).st_nlink == 0:
            raise _fail(errno.ENODEV, self.path)
        self.model.store(self.path, self.real, value, self.siblings)

    def close(self) -> None:
        fds, self.siblings.fds = self.siblings.fds, {}
        for fd in fds.values():
            os.close(fd)


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
        self._handlers: dict[str, Callable[[Path, str, _Siblings], None]] = {
            "export": self._export, "unexport": self._unexport, "period": self._pwm_state,
            "duty_cycle": self._pwm_state, "enable": self._pwm_state, "polarity": self._polarity,
            "direction": self._direction, "value": self._value,
        }
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

    def writable(self, path: Path) -> Path:
        """The real path of an attribute that can be opened for writing; the kernel's errno if not."""
        real = Path(os.path.realpath(path))
        if not real.exists():
            raise _fail(errno.ENOENT, Path(path))
        if real.is_dir():
            raise _fail(errno.EISDIR, Path(path))
        if real.name not in self._handlers:
            raise _fail(errno.EACCES, Path(path))
        return real

    def write(self, path: Path, value: str) -> None:
        """One value to an attribute by path (open, write, close)."""
        real = self.writable(path)
        self.store(Path(path), real, value, _Siblings(real.parent))

    def open(self, path: Path) -> ModelAttribute:
        """The attribute held open, for writes that must not need a free file descriptor."""
        return ModelAttribute(self, path)

    def store(self, path: Path, real: Path, value: str, siblings: _Siblings) -> None:
        """The kernel's store callback for the attribute at `real`; every accepted write is recorded."""
        self._handlers[real.name](real, value, siblings)
        self.writes.append((str(Path(path).relative_to(self.root)), value))

    def _is_gpio(self, real: Path) -> bool:
        return real.is_relative_to(os.path.realpath(self.gpio_dir))

    def _export(self, real: Path, value: str, _: _Siblings) -> None:
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

    def _unexport(self, real: Path, value: str, _: _Siblings) -> None:
        number = _parse_uint(value, real)
        gpio = self._is_gpio(real)
        target = real.parent / (f"gpio{number}" if gpio else f"pwm{number}")
        if not target.is_dir():
            raise _fail(errno.EINVAL if gpio else errno.ENODEV, real)
        for child in target.iterdir():
            child.unlink()
        target.rmdir()

    def _pwm_state(self, real: Path, value: str, siblings: _Siblings) -> None:
        """pwm_apply_state: period must be nonzero and duty_cycle <= period; enable is 0 or 1."""
        state = {name: int(siblings.read(name)) for name in ("period", "duty_cycle", "enable")}
        state[real.name] = _parse_uint(value, real)
        if state["enable"] not in (0, 1) or state["period"] == 0 or state["duty_cycle"] > state["period"]:
            raise _fail(errno.EINVAL, real)
        siblings.store(real.name, f"{state[real.name]}\n")

    def _polarity(self, real: Path, value: str, siblings: _Siblings) -> None:
        text = value.strip()
        if text not in ("normal", "inversed"):
            raise _fail(errno.EINVAL, real)
        if int(siblings.read("enable")):
            raise _fail(errno.EBUSY, real)
        siblings.store(real.name, text + "\n")

    def _direction(self, real: Path, value: str, siblings: _Siblings) -> None:
        text = value.strip()
        if text not in ("in", "out", "low", "high"):
            raise _fail(errno.EINVAL, real)
        siblings.store(real.name, ("in" if text == "in" else "out") + "\n")
        if text != "in":
            siblings.store("value", "1\n" if text == "high" else "0\n")

    def _value(self, real: Path, value: str, siblings: _Siblings) -> None:
        if siblings.read("direction").strip() != "out":
            raise _fail(errno.EPERM, real)
        siblings.store(real.name, "1\n" if _parse_uint(value, real) else "0\n")

    def export_outputs(self) -> None:
        """Export both channels and GPIO 436, as servo_pkg leaves them, so that a driver writing plain
        files (KernelFiles, a driver in another process) finds a working tree."""
        for channel in (0, 1):
            self.write(self.chip / "export", str(channel))
        self.write(self.gpio_dir / "export", "436")

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
