"""Actuator node core: /drive in ROS units -> normalised servo/ESC commands, with its own watchdog.

The actuator trusts nobody upstream: no fresh /drive within the timeout puts it at neutral, so a
dead control process cannot leave the car driving. Its own lock lets a watchdog thread act while
the rest of the graph is stuck.

Calibration: a pulse driver (`CalibratedDriver`) maps commands through a calibration. Each /drive
says which one in its frame_id (control decides, `car.control.core.CALIBRATION_FRAME` for the wizard's
raw pulses); a change of mapping is made at neutral, so no command is ever mapped through the wrong table.
"""
from __future__ import annotations

import math
import threading

from car.actuators.base import ActuatorFault, CalibratedDriver, Driver
from car.actuators.calibration import Calibration
from car.config import STALE_INPUT_S, CarConfig
from car.control.core import CALIBRATION_FRAME
from car.messages import ERROR, OK, AckermannDriveStamped, DiagnosticStatus, KeyValue


class ActuatorCore:
    def __init__(self, driver: Driver, max_steering_rad: float, max_speed_mps: float,
                 timeout_s: float = STALE_INPUT_S):
        if max_steering_rad <= 0 or max_speed_mps <= 0:
            raise ValueError("max_steering_rad and max_speed_mps must be positive")
        self.driver = driver
        self.max_steering_rad = max_steering_rad
        self.max_speed_mps = max_speed_mps
        self.timeout_s = timeout_s
        self.last_received = float("-inf")
        self.command = (0.0, 0.0)
        self.at_neutral = True
        self.fault: str | None = None
        self.lock = threading.RLock()
        # None: a driver without pulse calibration (the simulator) takes normalised commands as they are
        self.pulses = driver if isinstance(driver, CalibratedDriver) else None
        self.calibrations: dict[str, Calibration] = {"car": self.pulses.calibration} if self.pulses else {}
        self.profile = "car"
        self._safe(self.driver.neutral)

    @classmethod
    def from_config(cls, driver: Driver, config: CarConfig) -> ActuatorCore:
        """The same vehicle constants as control, and the actuator's own timeout."""
        return cls(driver, config.control.max_steering_rad, config.control.max_speed_mps, config.actuator.timeout_s)

    def on_drive(self, msg: AckermannDriveStamped, now: float) -> None:
        with self.lock:
            self._drive(msg, now)

    def set_calibrations(self, car: Calibration, raw: Calibration) -> None:
        """The car's calibration and the wizard's bounded raw ranges (`car.actuators.calibration.wizard_ranges`);
        the one in use changes at neutral. A driver without pulse calibration ignores them."""
        with self.lock:
            if self.pulses is None:
                return
            self.calibrations = {"car": car, "raw": raw}
            self._use(self.profile, force=True)

    def _use(self, profile: str, force: bool = False) -> bool:
        """Switch the driver to `profile` through neutral; False (and neutral) when it has no such table."""
        if self.pulses is None or (profile == self.profile and not force):
            return True
        table = self.calibrations.get(profile)
        self.neutral()
        if table is None:
            self.fault = f"no {profile} calibration on the actuator"
            return False
        # A driver whose device (or isolated process) is gone cannot take a table: a fault, not a crash.
        if not self._safe(setattr, self.pulses, "calibration", table):
            return False
        self.profile = profile
        return self._safe(self.driver.neutral)

    def _drive(self, msg: AckermannDriveStamped, now: float) -> None:
        d = msg.drive
        if not (math.isfinite(d.steering_angle) and math.isfinite(d.speed)):
            self.neutral()
            self.fault = "non-finite /drive command"
            return
        if not self._use("raw" if msg.header.frame_id == CALIBRATION_FRAME else "car"):
            return
        steering = max(-1.0, min(1.0, d.steering_angle / self.max_steering_rad))
        throttle = max(-1.0, min(1.0, d.speed / self.max_speed_mps))
        self.last_received = now
        if self._safe(self.driver.set, steering, throttle):
            self.command = (steering, throttle)
            self.at_neutral = steering == 0.0 and throttle == 0.0

    def tick(self, now: float) -> None:
        with self.lock:
            if not self.at_neutral and now - self.last_received > self.timeout_s:
                self.neutral()

    def neutral(self) -> None:
        with self.lock:
            if self._safe(self.driver.neutral):
                self.command = (0.0, 0.0)
                self.at_neutral = True

    def close(self) -> None:
        with self.lock:
            self.neutral()
            self._safe(self.driver.close)

    def _safe(self, fn, *args) -> bool:
        try:
            fn(*args)
        except ActuatorFault as exc:
            self.fault = str(exc)
            self.at_neutral = False
            return False
        self.fault = None
        return True

    def diagnostics(self, now: float) -> DiagnosticStatus:
        age = now - self.last_received
        return DiagnosticStatus(
            level=ERROR if self.fault else OK,
            name="actuator",
            message=self.fault or ("neutral" if self.at_neutral else "driving"),
            values=(KeyValue("steering", f"{self.command[0]:.3f}"), KeyValue("throttle", f"{self.command[1]:.3f}"),
                    KeyValue("calibration", self.profile),
                    KeyValue("drive_age_ms", f"{age * 1000:.0f}" if math.isfinite(age) else "")),
        )
