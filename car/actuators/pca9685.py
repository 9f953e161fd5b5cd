"""Raspberry Pi builds: an NXP PCA9685 16-channel PWM chip on I2C; channel 0 ESC, channel 1 servo.

Register use follows the PCA9685 datasheet: the prescaler can only be written while MODE1.SLEEP is
set, the oscillator needs 500 us after waking before RESTART, and bit 4 of LEDn_OFF_H ("full
off") is how a channel's output is disabled.
"""
from __future__ import annotations

import errno
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from smbus2 import SMBus

from car.actuators.pulse import ActuatorCalibration, PulseDriver

MODE1 = 0x00
MODE2 = 0x01
LED0_ON_L = 0x06
PRE_SCALE = 0xFE

RESTART = 0x80
AI = 0x20
SLEEP = 0x10
OUTDRV = 0x04
FULL = 0x10

OSCILLATOR_HZ = 25_000_000
PWM_HZ = 50
PERIOD_NS = 1_000_000_000 // PWM_HZ
COUNTS = 4096
PRESCALE = round(OSCILLATOR_HZ / (COUNTS * PWM_HZ)) - 1
OSCILLATOR_SETTLE_S = 0.0005

MOTOR_CHANNEL = 0
SERVO_CHANNEL = 1


class SMBusLike(Protocol):
    """The part of smbus2.SMBus the driver uses."""

    def read_byte_data(self, i2c_addr: int, register: int) -> int: ...

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None: ...

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: Sequence[int]) -> None: ...

    def close(self) -> None: ...


def led_registers(on_counts: int, off_counts: int, full_off: bool = False) -> list[int]:
    """LEDn_ON_L, ON_H, OFF_L, OFF_H for one channel."""
    off_high = (off_counts >> 8) | (FULL if full_off else 0)
    return [on_counts & 0xFF, on_counts >> 8, off_counts & 0xFF, off_high]


def pulse_counts(pulse_ns: int) -> int:
    """The pulse as a count of the 4096 steps of a 20 ms period."""
    return round(pulse_ns * COUNTS / PERIOD_NS)


class Pca9685Driver(PulseDriver):
    """ESC and servo on a PCA9685 at `address` on /dev/i2c-`bus`; reinitialises the chip after a bus fault."""

    def __init__(self, calibration: ActuatorCalibration, bus: int, address: int,
                 open_bus: Callable[[int], SMBusLike] = SMBus) -> None:
        self.bus_number = bus
        self.address = address
        self._open_bus = open_bus
        self._bus: SMBusLike | None = None
        super().__init__(calibration, f"pca9685:{bus}:{address:#04x}")

    def _connect(self) -> None:
        self._disconnect()
        self._bus = self._open_bus(self.bus_number)
        mode1 = self._bus.read_byte_data(self.address, MODE1)
        for channel in (MOTOR_CHANNEL, SERVO_CHANNEL):
            self._bus.write_byte_data(self.address, LED0_ON_L + 4 * channel + 3, FULL)
        self._bus.write_byte_data(self.address, MODE2, OUTDRV)
        asleep = (mode1 & ~RESTART) | SLEEP | AI
        self._bus.write_byte_data(self.address, MODE1, asleep)
        self._bus.write_byte_data(self.address, PRE_SCALE, PRESCALE)
        awake = asleep & ~SLEEP
        self._bus.write_byte_data(self.address, MODE1, awake)
        time.sleep(OSCILLATOR_SETTLE_S)
        self._bus.write_byte_data(self.address, MODE1, awake | RESTART)
        self._write(self.calibration.motor.mid, self.calibration.servo.mid)

    def _write_channels(self, motor: list[int], servo: list[int]) -> None:
        """ESC (LED0) and servo (LED1) registers are adjacent: one auto-incremented block sets both."""
        if self._bus is None:
            raise OSError(errno.ENODEV, "bus not open")
        self._bus.write_i2c_block_data(self.address, LED0_ON_L + 4 * MOTOR_CHANNEL, motor + servo)

    def _write(self, motor_ns: int, servo_ns: int) -> None:
        self._write_channels(led_registers(0, pulse_counts(motor_ns)), led_registers(0, pulse_counts(servo_ns)))

    def _disable(self) -> None:
        self._write_channels(led_registers(0, 0, full_off=True), led_registers(0, 0, full_off=True))

    def _disconnect(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            try:
                bus.close()
            except OSError:
                pass
