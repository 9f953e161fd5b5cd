"""The registers of an NXP PCA9685 behind an smbus2-like interface, per the datasheet (rev. 4).

Modelled: the register map and reset values, MODE1 SLEEP/RESTART/AI, PRE_SCALE writable only
in sleep (a blocked write is ignored, as the chip does, and recorded as a violation), the 500 us
oscillator settle before RESTART, ALL_LED writes, the full-on/full-off bits, and NACKs (OSError
EREMOTEIO, what Linux i2c-dev returns) for a wrong address or a chip that is gone.
"""
from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Sequence

MODE1, MODE2, PRE_SCALE = 0x00, 0x01, 0xFE
LED0_ON_L, LED_LAST = 0x06, 0x45
ALL_LED_ON_L, ALL_LED_OFF_H = 0xFA, 0xFD
RESTART, EXTCLK, AI, SLEEP = 0x80, 0x40, 0x20, 0x10
FULL = 0x10
OSCILLATOR_HZ = 25_000_000
SETTLE_S = 0.0005
RESET_VALUES = {MODE1: 0x11, MODE2: 0x04, 0x02: 0xE2, 0x03: 0xE4, 0x04: 0xE8, 0x05: 0xE0, PRE_SCALE: 0x1E}


class Pca9685Model:
    """One chip at `address`; `present = False` makes every transfer NACK, `power_cycle()` resets it."""

    def __init__(self, address: int = 0x40, clock: Callable[[], float] = time.monotonic) -> None:
        self.address = address
        self.clock = clock
        self.present = True
        self.closed = False
        self.violations: list[str] = []
        # What the ESC and servo pins put out (pulse_ns of channels 0 and 1), each time a transfer changed it.
        self.outputs: list[tuple[int | None, int | None]] = []
        self.registers = bytearray(256)
        self.power_cycle()

    def power_cycle(self) -> None:
        self.registers[:] = bytes(256)
        for register, value in RESET_VALUES.items():
            self.registers[register] = value
        for channel in range(16):
            self.registers[LED0_ON_L + 4 * channel + 3] = FULL
        self._woke_at: float | None = None

    def _select(self, i2c_addr: int) -> None:
        if self.closed:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        if not self.present or i2c_addr != self.address:
            raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))

    def _store(self, register: int, value: int) -> None:
        if not 0 <= value <= 0xFF:
            raise ValueError(f"byte value {value} out of range")
        if LED_LAST < register < ALL_LED_ON_L:
            self.violations.append(f"write to reserved register {register:#04x}")
        elif register == MODE1:
            self._store_mode1(value)
        elif register == PRE_SCALE:
            if not self.registers[MODE1] & SLEEP:
                self.violations.append("PRE_SCALE written while awake (blocked by the chip)")
            else:
                self.registers[PRE_SCALE] = max(value, 3)
        elif ALL_LED_ON_L <= register <= ALL_LED_OFF_H:
            for channel in range(16):
                self.registers[LED0_ON_L + 4 * channel + register - ALL_LED_ON_L] = value
        else:
            self.registers[register] = value

    def _store_mode1(self, value: int) -> None:
        old = self.registers[MODE1]
        new = (value & ~RESTART) | (old & RESTART) | (old & EXTCLK)
        if value & RESTART and old & RESTART:
            if old & SLEEP:
                self.violations.append("RESTART written while asleep")
            elif self._woke_at is None or self.clock() - self._woke_at < SETTLE_S:
                self.violations.append("RESTART written less than 500 us after waking")
            new &= ~RESTART
        if new & SLEEP and not old & SLEEP and any(self.pulse_counts(c) for c in range(16)):
            new |= RESTART
        if old & SLEEP and not new & SLEEP:
            self._woke_at = self.clock()
        self.registers[MODE1] = new

    def _end_of_led_write(self, registers: range) -> None:
        """With MODE2.OCH = 0, a write to any PWM register followed by STOP clears RESTART."""
        if any(LED0_ON_L <= r <= LED_LAST or ALL_LED_ON_L <= r <= ALL_LED_OFF_H for r in registers):
            self.registers[MODE1] &= ~RESTART

    def _record_outputs(self) -> None:
        pins = (self.pulse_ns(0), self.pulse_ns(1))
        if pins != (self.outputs[-1] if self.outputs else (None, None)):
            self.outputs.append(pins)

    def _next(self, register: int, step: int) -> int:
        return (register + step) & 0xFF if self.registers[MODE1] & AI else register

    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        self._select(i2c_addr)
        return 0 if ALL_LED_ON_L <= register <= ALL_LED_OFF_H else self.registers[register]

    def write_byte_data(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> None:
        self._select(i2c_addr)
        self._store(register, value)
        self._end_of_led_write(range(register, register + 1))
        self._record_outputs()

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: Sequence[int],
                             force: bool | None = None) -> None:
        self._select(i2c_addr)
        if len(data) > 32:
            raise OSError(errno.EINVAL, "SMBus block longer than 32 bytes")
        written = [self._next(register, i) for i in range(len(data))]
        for target, value in zip(written, data, strict=True):
            self._store(target, value)
        self._end_of_led_write(range(min(written, default=register), max(written, default=register) + 1))
        self._record_outputs()

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int,
                            force: bool | None = None) -> list[int]:
        self._select(i2c_addr)
        return [self.read_byte_data(i2c_addr, self._next(register, i)) for i in range(length)]

    def close(self) -> None:
        self.closed = True

    def pulse_counts(self, channel: int) -> int:
        """High time in 1/4096 periods: 0 when full off, 4096 when full on."""
        on_l, on_h, off_l, off_h = self.registers[LED0_ON_L + 4 * channel:LED0_ON_L + 4 * channel + 4]
        if off_h & FULL:
            return 0
        if on_h & FULL:
            return 4096
        return (((off_h & 0x0F) << 8 | off_l) - ((on_h & 0x0F) << 8 | on_l)) & 0xFFF

    def period_s(self) -> float:
        return (self.registers[PRE_SCALE] + 1) * 4096 / OSCILLATOR_HZ

    def pulse_ns(self, channel: int) -> int | None:
        """The pulse the pin puts out, or None while the oscillator sleeps or the channel is off."""
        counts = self.pulse_counts(channel)
        if self.registers[MODE1] & SLEEP or counts == 0:
            return None
        return round(counts * self.period_s() / 4096 * 1e9)
