"""A Pololu Maestro on the far end of a real pty, reached through a symlink as udev makes /dev/ttyACM*.

It parses the compact and Pololu protocols byte by byte (Set Target, Set Speed, Set Acceleration,
Set Multiple Targets, Get Position, Get Moving State, Get Errors, Go Home), answers queries, and
records every target and every complete packet. A data byte where a command byte belongs, an
unknown command or a packet cut short by a new command sets the serial protocol error bit, and
any error sends the channels home (0 = no pulses), as the Maestro does. `unplug()` closes the pty
and removes the link; a new emulator started on the same link is the device coming back.
"""
from __future__ import annotations

import os
import select
import threading
import time
import tty
from pathlib import Path

POLOLU_START = 0xAA
SERIAL_PROTOCOL_ERROR = 1 << 4
SET_MULTIPLE_TARGETS = 0x1F
DATA_LENGTHS = {0x04: 3, 0x07: 3, 0x09: 3, 0x10: 1, 0x13: 0, 0x21: 0, 0x22: 0}


class MaestroEmulator:
    """A Mini Maestro with `channels` servo channels and Pololu device number `device_number`."""

    def __init__(self, link: Path, channels: int = 6, device_number: int = 12) -> None:
        self.link = Path(link)
        self.device_number = device_number
        self.positions = [0] * channels
        self.targets: list[tuple[int, int]] = []
        self.packets: list[bytes] = []
        self.errors = 0
        self._raw = bytearray()
        self._code: int | None = None
        self._data = bytearray()
        self._pololu_stage = 0
        self._addressed = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master = self._slave = -1

    def start(self) -> MaestroEmulator:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        staged = self.link.with_name(self.link.name + ".new")
        staged.unlink(missing_ok=True)
        staged.symlink_to(os.ttyname(self._slave))
        os.replace(staged, self.link)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f"maestro-{self.link.name}", daemon=True)
        self._thread.start()
        return self

    def unplug(self) -> None:
        """The USB cable pulled: the port and its /dev link disappear."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1
        self.link.unlink(missing_ok=True)

    def __enter__(self) -> MaestroEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.unplug()

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.02)
            if not ready:
                continue
            reply = self.feed(os.read(self._master, 256))
            if reply:
                os.write(self._master, reply)

    def wait_for(self, count: int, timeout_s: float = 2.0) -> list[tuple[int, int]]:
        """The recorded targets once at least `count` have arrived."""
        deadline = time.monotonic() + timeout_s
        while len(self.targets) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.targets)} targets received, waited for {count}")
            time.sleep(0.005)
        return list(self.targets)

    def set_target_packets(self) -> list[bytes]:
        return [packet for packet in self.packets if packet[0] == 0x84]

    def feed(self, data: bytes) -> bytes:
        """Take bytes as the serial port delivers them; return what the Maestro sends back."""
        reply = bytearray()
        for byte in data:
            reply += self._take(byte)
        return bytes(reply)

    def _take(self, byte: int) -> bytes:
        if byte & 0x80:
            if self._code is not None or self._pololu_stage:
                self._protocol_error()
            self._reset()
            self._raw.append(byte)
            if byte == POLOLU_START:
                self._pololu_stage = 1
                return b""
            return self._begin(byte & 0x7F, addressed=True)
        if self._code is None and not self._pololu_stage:
            self._protocol_error()
            return b""
        self._raw.append(byte)
        if self._pololu_stage == 1:
            self._pololu_stage = 2
            self._addressed = byte == self.device_number
            return b""
        if self._pololu_stage == 2:
            self._pololu_stage = 0
            return self._begin(byte, addressed=self._addressed)
        self._data.append(byte)
        return self._finish_if_complete()

    def _begin(self, code: int, addressed: bool) -> bytes:
        if code not in DATA_LENGTHS and code != SET_MULTIPLE_TARGETS:
            self._protocol_error()
            self._reset()
            return b""
        self._code = code
        self._addressed = addressed
        return self._finish_if_complete()

    def _finish_if_complete(self) -> bytes:
        data = self._data
        if self._code == SET_MULTIPLE_TARGETS:
            needed = 2 + 2 * data[0] if data else 1
        else:
            needed = DATA_LENGTHS[self._code]
        if len(data) < needed:
            return b""
        code, packet, addressed = self._code, bytes(self._raw), self._addressed
        self._reset()
        if not addressed:
            return b""
        self.packets.append(packet)
        return self._execute(code, bytes(data[:needed]))

    def _execute(self, code: int, data: bytes) -> bytes:
        if code == 0x04:
            self._set(data[0], data[1] | data[2] << 7)
        elif code == SET_MULTIPLE_TARGETS:
            for index in range(data[0]):
                self._set(data[1] + index, data[2 + 2 * index] | data[3 + 2 * index] << 7)
        elif code == 0x10:
            position = self.positions[data[0]] if data[0] < len(self.positions) else 0
            return bytes((position & 0xFF, position >> 8))
        elif code == 0x13:
            return b"\x00"
        elif code == 0x21:
            errors, self.errors = self.errors, 0
            return bytes((errors & 0xFF, errors >> 8))
        elif code == 0x22:
            self._go_home()
        return b""

    def _set(self, channel: int, target: int) -> None:
        if channel >= len(self.positions):
            self._protocol_error()
            return
        self.positions[channel] = target
        self.targets.append((channel, target))

    def _go_home(self) -> None:
        self.positions = [0] * len(self.positions)

    def _protocol_error(self) -> None:
        self.errors |= SERIAL_PROTOCOL_ERROR
        self._go_home()

    def _reset(self) -> None:
        self._raw = bytearray()
        self._code = None
        self._data = bytearray()
        self._pololu_stage = 0
