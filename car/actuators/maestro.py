"""Pololu Maestro USB servo controller, compact serial protocol; channel 0 ESC, channel 1 servo.

Targets are in quarter-microseconds (DeepRacer ns / 250); target 0 stops a channel's pulses. The
Maestro latches errors (and sends channels home) until Get Errors reads them, so the driver polls
the register and reports any bit as an ActuatorFault. A port that vanishes (USB unplugged) is
reopened at the same path when the device returns, as udev recreates /dev/ttyACM* links.
"""
from __future__ import annotations

import errno
import logging
import time

import serial

from car.actuators.base import ActuatorFault
from car.actuators.calibration import Calibration
from car.actuators.pulse import PulseDriver

SET_TARGET = 0x84
GET_ERRORS = 0xA1
OFF = 0
MOTOR_CHANNEL = 0
SERVO_CHANNEL = 1
ERROR_BITS = (
    "serial signal", "serial overrun", "serial RX buffer full", "serial CRC", "serial protocol",
    "serial timeout", "script stack", "script call stack", "script program counter",
)

log = logging.getLogger(__name__)


def quarter_us(pulse_ns: int) -> int:
    return round(pulse_ns / 250)


def set_target(channel: int, target: int) -> bytes:
    """Compact Set Target: 0x84, channel, target bits 0-6, target bits 7-13."""
    return bytes((SET_TARGET, channel, target & 0x7F, (target >> 7) & 0x7F))


def decode_errors(register: int) -> list[str]:
    """Names of the set bits of the Maestro error register (unknown bits as `bit N`)."""
    return [ERROR_BITS[bit] if bit < len(ERROR_BITS) else f"bit {bit}"
            for bit in range(16) if register >> bit & 1]


class MaestroDriver(PulseDriver):
    """ESC and servo on a Maestro's command port (e.g. /dev/ttyACM0)."""

    def __init__(self, calibration: Calibration, port: str, error_check_s: float = 0.5,
                 reply_timeout_s: float = 0.1, baudrate: int = 115200) -> None:
        self.port = port
        self.error_check_s = error_check_s
        self.reply_timeout_s = reply_timeout_s
        self.baudrate = baudrate
        self._serial: serial.Serial | None = None
        self._next_check = 0.0
        super().__init__(calibration, f"maestro:{port}")

    def _connect(self) -> None:
        self._disconnect()
        self._serial = serial.Serial(self.port, self.baudrate, timeout=self.reply_timeout_s,
                                     write_timeout=self.reply_timeout_s, exclusive=True)
        stale = self._read_errors()
        if stale:
            log.warning("%s: cleared errors latched before connecting: %s", self.name,
                        ", ".join(decode_errors(stale)))
        self._next_check = time.monotonic() + self.error_check_s
        self._write(self.calibration.motor.mid, self.calibration.servo.mid)

    def _open_port(self) -> serial.Serial:
        if self._serial is None:
            raise OSError(errno.ENODEV, "port not open")
        return self._serial

    def _send_targets(self, motor: int, servo: int) -> None:
        self._open_port().write(set_target(MOTOR_CHANNEL, motor) + set_target(SERVO_CHANNEL, servo))

    def _read_errors(self) -> int:
        port = self._open_port()
        port.reset_input_buffer()
        port.write(bytes((GET_ERRORS,)))
        reply = port.read(2)
        if len(reply) != 2:
            raise TimeoutError(errno.ETIMEDOUT, "no reply to Get Errors")
        return reply[0] | reply[1] << 8

    def _write(self, motor_ns: int, servo_ns: int) -> None:
        self._send_targets(quarter_us(motor_ns), quarter_us(servo_ns))
        if time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + self.error_check_s
            errors = self._read_errors()
            if errors:
                raise ActuatorFault(f"{self.name}: Maestro error register {errors:#06x}: "
                                    + ", ".join(decode_errors(errors)))

    def _disable(self) -> None:
        self._send_targets(OFF, OFF)

    def _disconnect(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except (OSError, serial.SerialException):
                pass
