"""What every servo/ESC pulse driver shares: calibration, neutral at start, a close that always wins.

A driver is closed from SIGTERM/SIGINT handlers, which Python runs in the main thread between two
bytecodes, possibly in the middle of set(). close() therefore puts the outputs at neutral and
disables them at once, and an interrupted set() repeats that when it resumes, so a command sent
just before the signal can never outlive the close.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Protocol

from car.actuators.base import ActuatorFault


class PulseMap(Protocol):
    """One output's calibration (calibration.servo.PulseRange has this shape)."""

    @property
    def mid(self) -> int: ...

    def pulse_ns(self, command: float) -> int: ...


class ActuatorCalibration(Protocol):
    """Steering servo and ESC calibrations (calibration.servo.Calibration has this shape)."""

    @property
    def servo(self) -> PulseMap: ...

    @property
    def motor(self) -> PulseMap: ...


class PulseDriver:
    """Base of the hardware drivers; subclasses talk to the device in pulse widths (ns).

    Subclasses implement _connect (open the device and output neutral), _write (both pulses),
    _disable (stop the pulses) and _disconnect (release handles, never raises). Any OSError
    becomes an ActuatorFault and drops the connection; the next command reconnects.
    """

    def __init__(self, calibration: ActuatorCalibration, name: str) -> None:
        self.calibration = calibration
        self.name = name
        self._lock = threading.RLock()
        self._connected = False
        self._busy = False
        self._closed = False
        self._released = False
        self._guarded(self._ensure_connected)

    def _connect(self) -> None:
        raise NotImplementedError

    def _write(self, motor_ns: int, servo_ns: int) -> None:
        raise NotImplementedError

    def _disable(self) -> None:
        raise NotImplementedError

    def _disconnect(self) -> None:
        raise NotImplementedError

    def set(self, steering: float, throttle: float) -> None:
        """Drive both outputs; steering + = left, throttle + = forward, each in [-1, 1]."""
        motor_ns = self.calibration.motor.pulse_ns(throttle)
        servo_ns = self.calibration.servo.pulse_ns(steering)
        with self._lock:
            self._busy = True
            try:
                if self._closed:
                    raise ActuatorFault(f"{self.name}: closed")
                self._guarded(self._send, motor_ns, servo_ns)
            finally:
                self._busy = False
                if self._closed:
                    self._shutdown()

    def neutral(self) -> None:
        self.set(0.0, 0.0)

    def close(self) -> None:
        """Neutral, then outputs disabled, then release; idempotent and callable from a signal handler.

        Raises ActuatorFault (after releasing) when the device did not take the neutral/off writes.
        """
        with self._lock:
            self._closed = True
            if self._released:
                return
            if self._busy:
                self._stop_outputs()
                return
            self._shutdown()

    def _ensure_connected(self) -> None:
        if not self._connected:
            self._connect()
            self._connected = True

    def _send(self, motor_ns: int, servo_ns: int) -> None:
        self._ensure_connected()
        self._write(motor_ns, servo_ns)

    def _guarded(self, action: Callable[..., None], *args: int) -> None:
        try:
            action(*args)
        except OSError as exc:
            self._connected = False
            self._disconnect()
            raise ActuatorFault(f"{self.name}: {exc}") from exc

    def _stop_outputs(self) -> None:
        """Neutral, then outputs off; if neutral fails, still try to disable but report the first fault."""
        self._guarded(self._ensure_connected)
        try:
            self._guarded(self._neutral_pulses)
        except ActuatorFault:
            with contextlib.suppress(ActuatorFault):
                self._guarded(self._disable)
            raise
        self._guarded(self._disable)

    def _neutral_pulses(self) -> None:
        self._write(self.calibration.motor.mid, self.calibration.servo.mid)

    def _shutdown(self) -> None:
        if self._released:
            return
        try:
            self._stop_outputs()
        finally:
            self._released = True
            self._connected = False
            self._disconnect()
