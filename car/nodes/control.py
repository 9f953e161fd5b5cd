"""Control node core: modes + mux + watchdog -> the one /drive command the actuator obeys."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from car.control.modes import Mode, ModeState
from car.control.mux import Mux
from car.control.watchdog import Watchdog
from car.messages import (AckermannDrive, AckermannDriveStamped, DiagnosticStatus, Header, KeyValue, Time,
                          ERROR, OK)


@dataclass(frozen=True)
class ControlParams:
    policy_timeout_s: float = 0.25
    teleop_timeout_s: float = 0.25
    camera_timeout_s: float = 0.25
    max_speed: float = 0.5
    max_steering_rad: float = 0.5236
    max_speed_mps: float = 4.0

    @classmethod
    def from_params(cls, params: dict[str, dict[str, Any]]) -> "ControlParams":
        """The control section of the parameter file (car.config.load_params); other keys are other nodes'."""
        return cls(**{k: v for k, v in params.get("control", {}).items() if k in cls.__dataclass_fields__})


NEUTRAL = AckermannDrive()


class ControlCore:
    """Decides what the car does; output is always a command, neutral when anything is wrong."""

    def __init__(self, params: ControlParams = ControlParams()):
        self.params = params
        self.state = ModeState(params.max_speed)
        self.mux: Mux[AckermannDriveStamped] = Mux({
            "policy": params.policy_timeout_s,
            "teleop": params.teleop_timeout_s,
            "calibration": float("inf"),
        })
        self.watchdog = Watchdog({"camera": params.camera_timeout_s})
        self.estopped = False
        self.last_output: AckermannDriveStamped = AckermannDriveStamped()
        self.last_reason = "stopped"

    def on_policy(self, msg: AckermannDriveStamped, now: float) -> AckermannDriveStamped:
        self.mux.put("policy", msg, now)
        self.watchdog.clear("policy")
        return self.tick(now)

    def on_policy_error(self, reason: str, now: float) -> AckermannDriveStamped:
        self.mux.clear("policy")
        self.watchdog.fault("policy", reason)
        return self.tick(now)

    def on_teleop(self, msg: AckermannDriveStamped, now: float) -> AckermannDriveStamped:
        self.mux.put("teleop", msg, now)
        return self.tick(now)

    def on_camera(self, now: float) -> None:
        self.watchdog.beat("camera", now)

    def set_mode(self, mode: Mode | str, now: float) -> AckermannDriveStamped:
        if self.state.set_mode(mode):
            self.mux.clear()
        return self.tick(now)

    def start(self, now: float) -> AckermannDriveStamped:
        self.estopped = False
        self.watchdog.clear("policy")
        self.state.start()
        return self.tick(now)

    def stop(self, now: float) -> AckermannDriveStamped:
        self.state.stop()
        self.mux.clear()
        return self.tick(now)

    def emergency_stop(self, now: float) -> AckermannDriveStamped:
        """Latched until the next start()."""
        self.estopped = True
        return self.stop(now)

    def set_max_speed(self, value: float) -> None:
        self.state.set_max_speed(value)

    def calibrate(self, steering: float, throttle: float, now: float) -> AckermannDriveStamped:
        """Raw normalised command for the calibration wizard (calibration mode only)."""
        if self.state.mode is not Mode.CALIBRATION:
            raise ValueError("calibration commands need calibration mode")
        for name, v in (("steering", steering), ("throttle", throttle)):
            if not -1.0 <= v <= 1.0:
                raise ValueError(f"calibration {name} must be within -1..1, got {v}")
        p = self.params
        msg = AckermannDriveStamped(Header(Time.from_seconds(now)),
                                    AckermannDrive(steering_angle=steering * p.max_steering_rad,
                                                   speed=throttle * p.max_speed_mps))
        self.mux.put("calibration", msg, now)
        return self.tick(now)

    def tick(self, now: float) -> AckermannDriveStamped:
        drive, reason = self._select(now)
        if drive is None:
            out = AckermannDriveStamped(Header(Time.from_seconds(now)), NEUTRAL)
        else:
            out = drive
        self.last_output, self.last_reason = out, reason
        return out

    def _select(self, now: float) -> tuple[AckermannDriveStamped | None, str]:
        if self.estopped:
            return None, "emergency stop"
        faults = self.watchdog.faults(now)
        if faults:
            return None, "; ".join(faults.values())
        mode = self.state.mode
        if mode is Mode.CALIBRATION:
            msg = self.mux.get("calibration", now)
            return msg, "calibration" if msg else "calibration: no command"
        if mode is Mode.AUTONOMOUS:
            if not self.state.running:
                return None, "stopped"
            msg = self.mux.get("policy", now)
            if msg is None:
                return None, "policy command stale"
        else:
            msg = self.mux.get("teleop", now)
            if msg is None:
                return None, "no teleop command"
        scale = self.state.max_speed
        return AckermannDriveStamped(msg.header, AckermannDrive(steering_angle=msg.drive.steering_angle,
                                                                speed=msg.drive.speed * scale)), mode.value

    def diagnostics(self, now: float) -> DiagnosticStatus:
        faults = self.watchdog.faults(now)
        return DiagnosticStatus(
            level=ERROR if faults or self.estopped else OK,
            name="control",
            message=self.last_reason,
            values=(KeyValue("mode", self.state.mode.value), KeyValue("running", str(self.state.running).lower()),
                    KeyValue("max_speed", f"{self.state.max_speed:.2f}"),
                    KeyValue("watchdog", "ok" if not faults else "; ".join(sorted(faults)))),
        )
