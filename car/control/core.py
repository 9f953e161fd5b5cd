"""Control node core: modes + mux + watchdog -> the one /drive command the actuator obeys."""
from __future__ import annotations

import math
from typing import Any

from car.config import ControlParams
from car.control.modes import EMERGENCY_STOP, Mode, ModeState
from car.control.mux import Mux
from car.control.watchdog import Watchdog
from car.messages import ERROR, OK, AckermannDrive, AckermannDriveStamped, DiagnosticStatus, Header, KeyValue, Time

NEUTRAL = AckermannDrive()
# header.frame_id of a /drive command in raw calibration pulses (the wizard's); any other frame_id
# is a command the actuator maps through the car's calibration.
CALIBRATION_FRAME = "calibration"


class ControlCore:
    """Decides what the car does; output is always a command, neutral when anything is wrong.

    The one owner of drive mode, the speed limits and which calibration the actuator applies
    (each /drive says it in its frame_id, so a mode change and the mapping cannot race). A fault
    latches (`car.control.modes`): the outputs stay at neutral until a user acts again.
    """

    def __init__(self, params: ControlParams = ControlParams()):
        self.params = params
        self.state = ModeState(params.max_speed, params.manual_max_speed)
        self.mux: Mux[AckermannDriveStamped] = Mux({
            "policy": params.policy_timeout_s,
            "teleop": params.teleop_timeout_s,
            "calibration": params.teleop_timeout_s,  # the wizard's deadman: it refreshes while a value is shown
        })
        self.watchdog = Watchdog({"camera": params.camera_timeout_s})
        self.last_output: AckermannDriveStamped = AckermannDriveStamped()
        self.last_reason = "stopped"
        self.calibration: dict[str, Any] | None = None
        self._policy_since_start = False

    @property
    def estopped(self) -> bool:
        latch = self.state.latch
        return latch is not None and latch.emergency

    @property
    def driving(self) -> bool:
        return self.last_output.drive != NEUTRAL

    def _faults(self, now: float) -> dict[str, str]:
        """The watchdog's faults that matter in this mode: a policy error stops only autonomous driving."""
        faults = self.watchdog.faults(now)
        if self.state.mode is not Mode.AUTONOMOUS:
            faults.pop("policy", None)
        return faults

    def on_policy(self, msg: AckermannDriveStamped, now: float) -> AckermannDriveStamped:
        self.mux.put("policy", msg, now)
        self.watchdog.clear("policy")  # the policy answers again; a latch it caused stays until start
        if self.state.running:
            self._policy_since_start = True
        return self.tick(now)

    def on_policy_error(self, reason: str, now: float) -> AckermannDriveStamped:
        self.mux.clear("policy")
        self.watchdog.fault("policy", reason)
        return self.tick(now)

    def fault(self, reason: str, now: float) -> AckermannDriveStamped:
        """A fault reported from outside (teleop client lost, an actuator fault, a node that died, so
        its restart cannot resume driving): neutral, latched."""
        self.mux.clear()
        self.state.trip(reason, now)
        return self.tick(now)

    def on_teleop(self, msg: AckermannDriveStamped, now: float) -> AckermannDriveStamped:
        """A teleop command; dropped when it was sent before the latest latch or is older than the deadman."""
        stamp = msg.header.stamp.to_seconds()
        latch = self.state.latch
        if (latch is not None and stamp < latch.since) or now - stamp > self.params.teleop_timeout_s:
            return self.tick(now)
        if latch is not None and self.state.mode is Mode.MANUAL and msg.drive.speed == 0.0 \
                and not self._faults(now):
            self.state.rearm()  # the stick let go after the fault: the user is back in control
        self.mux.put("teleop", msg, min(stamp, now))  # its deadman runs from when the driver sent it
        return self.tick(now)

    def on_camera(self, now: float) -> None:
        self.watchdog.beat("camera", now)

    def set_mode(self, mode: Mode | str, now: float) -> AckermannDriveStamped:
        if self.state.set_mode(mode, self.driving):
            self.mux.clear()
        return self.tick(now)

    def start(self, now: float) -> AckermannDriveStamped:
        """The user's start: clears every latch (a policy error gets a new try); refused while a fault is present."""
        self.watchdog.clear("policy")
        faults = self._faults(now)
        if faults:
            raise ValueError(f"cannot start: {'; '.join(faults.values())}")
        if not self.state.running:  # a repeated start (a client's retry) keeps the policy's silence a fault
            self._policy_since_start = False
        self.state.start()
        return self.tick(now)

    def stop(self, now: float) -> AckermannDriveStamped:
        self.state.stop()
        self.mux.clear()
        return self.tick(now)

    def emergency_stop(self, now: float) -> AckermannDriveStamped:
        """Latched until the next start(), in every mode."""
        return self.fault(EMERGENCY_STOP, now)

    def set_max_speed(self, value: float, now: float) -> AckermannDriveStamped:
        """The autonomous limit, 0..1 (the console's max_nav_throttle)."""
        self.state.set_max_speed(value)
        return self.tick(now)

    def set_manual_max_speed(self, value: float, now: float) -> AckermannDriveStamped:
        """The manual limit, 0..1 (manual_drive's max_speed); never changes the autonomous one."""
        self.state.set_manual_max_speed(value)
        return self.tick(now)

    def set_calibration(self, document: dict[str, Any], now: float) -> AckermannDriveStamped:
        """The car's calibration for the actuator (the DeepRacer calibration.json document, checked
        by the actuator's parser): refused while the car drives; in calibration mode the wizard's
        held pulse ends, so the outputs are at neutral when the actuator switches tables. The adapter
        hands it on (`calibration` holds the newest)."""
        if self.driving and self.state.mode is not Mode.CALIBRATION:
            raise ValueError("stop the car before changing its calibration")
        if not isinstance(document, dict) or not isinstance(document.get("Calibration"), dict):
            raise ValueError("a calibration is a calibration.json document: {\"Calibration\": {...}}")
        self.mux.clear("calibration")
        self.calibration = document
        return self.tick(now)

    def calibrate(self, steering: float, throttle: float, now: float) -> AckermannDriveStamped:
        """Raw normalised command in the calibration frame (calibration mode only; the actuator maps it
        onto its bounded raw pulse ranges). Lasts the teleop deadman unless repeated."""
        if self.state.mode is not Mode.CALIBRATION:
            raise ValueError("calibration commands need calibration mode")
        for name, v in (("steering", steering), ("throttle", throttle)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not -1.0 <= v <= 1.0:
                raise ValueError(f"calibration {name} must be within -1..1, got {v!r}")
        if not self._faults(now):
            self.state.rearm()
        p = self.params
        msg = AckermannDriveStamped(Header(Time.from_seconds(now), CALIBRATION_FRAME),
                                    AckermannDrive(steering_angle=steering * p.max_steering_rad,
                                                   speed=throttle * p.max_speed_mps))
        self.mux.put("calibration", msg, now)
        return self.tick(now)

    def tick(self, now: float) -> AckermannDriveStamped:
        faults = self._faults(now)
        if faults:
            self.state.trip("; ".join(faults.values()), now)
        drive, reason = self._select(now)
        out = drive if drive is not None else AckermannDriveStamped(Header(Time.from_seconds(now)), NEUTRAL)
        self.last_output, self.last_reason = out, reason
        return out

    def _select(self, now: float) -> tuple[AckermannDriveStamped | None, str]:
        state = self.state
        if state.latch is not None:
            again = "start" if state.latch.emergency or state.mode is not Mode.MANUAL \
                else "start, or let go of the throttle,"
            return None, f"{state.latch.reason} (latched: {again} to drive again)"
        if state.mode is Mode.CALIBRATION:
            msg = self.mux.get("calibration", now)
            return msg, "calibration" if msg else "calibration: waiting for a wizard step"
        if state.mode is Mode.AUTONOMOUS:
            if not state.running:
                return None, "stopped"
            msg = self.mux.get("policy", now)
            if msg is None:
                if self._policy_since_start:
                    state.trip("policy command stale", now)
                    return self._select(now)
                return None, "waiting for the policy"
            scale = state.max_speed
        else:
            msg = self.mux.get("teleop", now)
            if msg is None:
                if self.driving and math.isfinite(self.mux.age("teleop", now)):  # expired, not cleared
                    state.trip("teleop command stale", now)
                    return self._select(now)
                return None, "idle: waiting for teleop"
            scale = state.manual_max_speed
        return AckermannDriveStamped(Header(msg.header.stamp), AckermannDrive(
            steering_angle=msg.drive.steering_angle, speed=msg.drive.speed * scale)), state.mode.value

    def diagnostics(self, now: float) -> DiagnosticStatus:
        faults = self._faults(now)
        latch = self.state.latch
        return DiagnosticStatus(
            level=ERROR if faults or latch is not None else OK,
            name="control",
            message=self.last_reason,
            values=(KeyValue("mode", self.state.mode.value), KeyValue("running", str(self.state.running).lower()),
                    KeyValue("max_speed", f"{self.state.max_speed:.2f}"),
                    KeyValue("manual_max_speed", f"{self.state.manual_max_speed:.2f}"),
                    KeyValue("latched", latch.reason if latch else ""),
                    KeyValue("emergency_stop", str(self.estopped).lower()),
                    KeyValue("start_needed", str(latch is not None).lower()),
                    KeyValue("watchdog", "ok" if not faults else "; ".join(sorted(faults)))),
        )
