"""Modes, mux, watchdog and the control/actuator cores, driven with explicit clock values."""
import math

import pytest

from car.actuators.base import ActuatorFault
from car.control.modes import Mode, ModeState
from car.control.mux import Mux
from car.control.watchdog import Watchdog
from car.messages import ERROR, OK, Time, drive_msg
from car.nodes.actuator import ActuatorCore
from car.nodes.control import ControlCore, ControlParams


class RecordingDriver:
    """Records what the actuator core asks of a driver; can be told to fail like unplugged hardware."""

    def __init__(self):
        self.calls = []
        self.fail = False

    def set(self, steering, throttle):
        if self.fail:
            raise ActuatorFault("device gone")
        self.calls.append(("set", steering, throttle))

    def neutral(self):
        if self.fail:
            raise ActuatorFault("device gone")
        self.calls.append(("neutral",))

    def close(self):
        self.calls.append(("close",))


def cmd(t, steer=0.2, speed=2.0):
    return drive_msg(Time.from_seconds(t), steer, speed)


def test_mode_change_stops_and_rejects_unknown():
    s = ModeState()
    assert s.mode is Mode.MANUAL and not s.running and s.max_speed == 0.5
    s.set_mode("autonomous")
    s.start()
    assert s.running
    assert s.set_mode(Mode.CALIBRATION) is True
    assert not s.running
    assert s.set_mode("calibration") is False
    with pytest.raises(ValueError, match="unknown mode 'race'"):
        s.set_mode("race")
    for bad in (-0.1, 1.5, float("nan"), "0.5"):
        with pytest.raises(ValueError, match="max speed"):
            s.set_max_speed(bad)
    assert s.max_speed == 0.5


def test_mux_timeouts_per_source():
    mux = Mux({"a": 0.25, "b": 1.0})
    assert mux.get("a", 0.0) is None
    mux.put("a", "x", 1.0)
    mux.put("b", "y", 1.0)
    assert mux.get("a", 1.25) == "x"
    assert mux.get("a", 1.2501) is None
    assert mux.get("b", 1.9) == "y"
    mux.clear("b")
    assert mux.get("b", 1.0) is None
    with pytest.raises(ValueError):
        Mux({"a": 0})


def test_watchdog_heartbeat_and_events():
    wd = Watchdog({"camera": 0.25})
    assert wd.ok(100.0)  # not armed before the first beat
    wd.beat("camera", 1.0)
    assert wd.ok(1.25)
    assert "camera stale for 260 ms" in wd.faults(1.26)["camera"]
    wd.fault("policy", "boom")
    wd.beat("camera", 2.0)
    assert wd.faults(2.0) == {"policy": "boom"}
    wd.clear("policy")
    assert wd.ok(2.0)
    with pytest.raises(KeyError):
        wd.beat("lidar", 0.0)


def test_autonomous_needs_start_and_scales_by_max_speed():
    c = ControlCore(ControlParams(max_speed=0.5))
    c.set_mode("autonomous", 0.0)
    out = c.on_policy(cmd(0.0), 0.0)
    assert out.drive.speed == 0.0 and out.drive.steering_angle == 0.0  # never moves without start
    c.start(0.0)
    out = c.on_policy(cmd(0.1), 0.1)
    assert out.drive.speed == pytest.approx(1.0) and out.drive.steering_angle == pytest.approx(0.2)
    assert out.header.stamp == Time.from_seconds(0.1)  # the camera frame's stamp passes through
    c.set_max_speed(1.0)
    assert c.tick(0.2).drive.speed == pytest.approx(2.0)


def test_stale_policy_and_camera_loss_go_neutral():
    c = ControlCore()
    c.set_mode("autonomous", 0.0)
    c.start(0.0)
    c.on_camera(0.0)
    c.on_policy(cmd(0.0), 0.0)
    c.on_camera(0.2)
    assert c.tick(0.25).drive.speed > 0
    out = c.tick(0.2501)
    assert out.drive.speed == 0.0 and c.last_reason == "policy command stale"
    c.on_camera(0.3)
    c.on_policy(cmd(0.3), 0.3)
    c.on_policy(cmd(0.56), 0.56)  # policy still talking but the camera went quiet at 0.3
    assert c.last_output.drive.speed == 0.0
    assert "camera stale" in c.last_reason
    assert c.diagnostics(0.56).level == ERROR


def test_policy_error_latches_neutral_until_start():
    c = ControlCore()
    c.set_mode("autonomous", 0.0)
    c.start(0.0)
    c.on_policy(cmd(0.0), 0.0)
    out = c.on_policy_error("RuntimeError: inference failed", 0.01)
    assert out.drive.speed == 0.0 and "inference failed" in c.last_reason
    c.start(0.02)
    assert c.on_policy(cmd(0.03), 0.03).drive.speed > 0


def test_mode_change_passes_through_neutral_and_teleop_deadman():
    c = ControlCore()
    c.on_teleop(cmd(0.0, 0.1, 1.0), 0.0)
    assert c.last_output.drive.speed == pytest.approx(0.5)
    assert c.tick(0.26).drive.speed == 0.0  # deadman: no teleop for 250 ms
    c.on_teleop(cmd(1.0, 0.1, 1.0), 1.0)
    out = c.set_mode("autonomous", 1.01)
    assert out.drive.speed == 0.0 and out.drive.steering_angle == 0.0
    c.set_mode("manual", 1.02)
    assert c.tick(1.03).drive.speed == 0.0  # old teleop command was dropped at the mode change


def test_emergency_stop_latches():
    c = ControlCore()
    c.set_mode("autonomous", 0.0)
    c.start(0.0)
    c.emergency_stop(0.0)
    assert c.on_policy(cmd(0.1), 0.1).drive.speed == 0.0
    assert c.last_reason == "emergency stop"


def test_calibration_mode_raw_commands():
    c = ControlCore(ControlParams(max_steering_rad=0.5, max_speed_mps=4.0))
    with pytest.raises(ValueError, match="calibration mode"):
        c.calibrate(0.5, 0.0, 0.0)
    c.set_mode("calibration", 0.0)
    out = c.calibrate(0.5, -0.25, 0.0)
    assert out.drive.steering_angle == pytest.approx(0.25) and out.drive.speed == pytest.approx(-1.0)
    assert c.tick(100.0).drive.steering_angle == pytest.approx(0.25)  # holds while calibrating
    with pytest.raises(ValueError, match="within -1..1"):
        c.calibrate(1.5, 0.0, 0.0)


def test_actuator_converts_units_and_times_out():
    d = RecordingDriver()
    a = ActuatorCore(d, max_steering_rad=0.5, max_speed_mps=4.0, timeout_s=0.25)
    assert d.calls == [("neutral",)]
    a.on_drive(cmd(0.0, 0.25, 1.0), 0.0)
    assert d.calls[-1] == ("set", 0.5, 0.25)
    a.on_drive(cmd(0.0, -9.0, 40.0), 0.1)
    assert d.calls[-1] == ("set", -1.0, 1.0)  # clamped to full travel
    a.tick(0.35)
    assert d.calls[-1] == ("set", -1.0, 1.0)
    a.tick(0.3501)
    assert d.calls[-1] == ("neutral",) and a.at_neutral
    a.on_drive(cmd(0.4, math.nan, 1.0), 0.4)
    assert d.calls[-1] == ("neutral",) and a.fault == "non-finite /drive command"


def test_actuator_fault_reported_and_retried():
    d = RecordingDriver()
    a = ActuatorCore(d, 0.5, 4.0)
    a.on_drive(cmd(0.0), 0.0)
    d.fail = True
    a.on_drive(cmd(0.1), 0.1)
    assert a.fault == "device gone" and a.diagnostics(0.1).level == ERROR
    d.fail = False
    a.tick(1.0)
    assert d.calls[-1] == ("neutral",) and a.fault is None and a.diagnostics(1.0).level == OK
    a.close()
    assert d.calls[-2:] == [("neutral",), ("close",)]
