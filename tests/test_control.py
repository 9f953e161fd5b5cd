"""Modes, mux, watchdog and the control/actuator cores, driven with explicit clock values."""
import math

import pytest

from car.actuators.base import ActuatorFault
from car.actuators.core import ActuatorCore
from car.config import ControlParams
from car.control.core import CALIBRATION_FRAME, NEUTRAL, ControlCore
from car.control.modes import Mode, ModeState
from car.control.mux import Mux
from car.control.watchdog import Watchdog
from car.messages import ERROR, OK, Time, drive_msg


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
    with pytest.raises(ValueError, match="stop the car before calibrating"):
        s.set_mode(Mode.CALIBRATION)
    assert s.mode is Mode.AUTONOMOUS and s.running
    s.stop()
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
    c.set_max_speed(1.0, 0.15)
    assert c.tick(0.2).drive.speed == pytest.approx(2.0)


def test_stale_policy_and_camera_loss_go_neutral():
    c = ControlCore(ControlParams(policy_timeout_s=0.25, camera_timeout_s=0.25))
    c.set_mode("autonomous", 0.0)
    c.start(0.0)
    c.on_camera(0.0)
    c.on_policy(cmd(0.0), 0.0)
    c.on_camera(0.2)
    assert c.tick(0.25).drive.speed > 0
    out = c.tick(0.2501)
    assert out.drive.speed == 0.0 and c.last_reason.startswith("policy command stale (latched")
    c.on_camera(0.3)
    c.on_policy(cmd(0.3), 0.3)
    assert c.last_output.drive.speed == 0.0  # the policy is back, but a fault that clears never restarts
    c.start(0.3)
    c.on_policy(cmd(0.31), 0.31)
    assert c.last_output.drive.speed > 0
    c.on_policy(cmd(0.56), 0.56)  # policy still talking but the camera went quiet at 0.3
    assert c.last_output.drive.speed == 0.0
    assert "camera stale" in c.last_reason
    assert c.diagnostics(0.56).level == ERROR


def test_a_repeated_start_while_driving_keeps_the_policy_watch_armed():
    """A client that sends start twice (a retry whose first answer was slow) must not turn a policy
    that goes quiet into a wait that drives again by itself when the policy comes back."""
    c = ControlCore(ControlParams(policy_timeout_s=0.25))
    c.set_mode("autonomous", 0.0)
    c.start(0.0)
    assert c.on_policy(cmd(0.0), 0.0).drive.speed > 0
    assert c.start(0.1).drive.speed > 0  # the retry: still driving on the policy's last command
    out = c.tick(0.2501)
    assert out.drive.speed == 0.0 and c.last_reason.startswith("policy command stale (latched")
    assert c.on_policy(cmd(0.3), 0.3).drive.speed == 0.0  # the policy is back; the car waits for a user
    c.start(0.4)
    assert c.on_policy(cmd(0.41), 0.41).drive.speed > 0


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
    c.on_teleop(cmd(1.0, 0.0, 0.0), 1.0)  # the stick let go: re-armed
    c.on_teleop(cmd(1.0, 0.1, 1.0), 1.0)
    assert c.last_output.drive.speed == pytest.approx(0.5)
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
    assert c.last_reason == "emergency stop (latched: start to drive again)"
    c.set_mode("manual", 0.2)
    c.on_teleop(cmd(0.3, 0.0, 0.0), 0.3)  # letting go of the stick does not clear an emergency stop
    assert c.on_teleop(cmd(0.31, 0.1, 1.0), 0.31).drive.speed == 0.0 and c.estopped
    c.start(0.4)
    assert c.on_teleop(cmd(0.41, 0.1, 1.0), 0.41).drive.speed == pytest.approx(0.5)


def test_calibration_mode_raw_commands():
    c = ControlCore(ControlParams(max_steering_rad=0.5, max_speed_mps=4.0))
    with pytest.raises(ValueError, match="calibration mode"):
        c.calibrate(0.5, 0.0, 0.0)
    c.set_mode("calibration", 0.0)
    out = c.calibrate(0.5, -0.25, 0.0)
    assert out.drive.steering_angle == pytest.approx(0.25) and out.drive.speed == pytest.approx(-1.0)
    assert out.header.frame_id == CALIBRATION_FRAME
    assert c.tick(0.25).drive.steering_angle == pytest.approx(0.25)  # holds for one deadman
    out = c.tick(0.2501)
    assert out.drive == NEUTRAL and out.header.frame_id == ""  # the wizard went silent: the car's own mapping
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


def started(mode="autonomous"):
    c = ControlCore()
    c.set_mode(mode, 0.0)
    c.start(0.0)
    return c


def test_camera_fault_that_clears_stays_latched_and_start_is_refused_meanwhile():
    c = started()
    c.on_camera(0.0)
    c.on_policy(cmd(0.0), 0.0)
    assert c.last_output.drive.speed > 0
    out = c.on_policy(cmd(0.3), 0.3)  # the camera went quiet at 0
    assert out.drive == NEUTRAL and "camera stale" in c.last_reason and not c.state.running
    with pytest.raises(ValueError, match="cannot start: camera stale"):
        c.start(0.3)
    for t in (2.0, 2.05, 2.1):  # the camera is back, the policy drives again
        c.on_camera(t)
        assert c.on_policy(cmd(t), t).drive == NEUTRAL
    status = c.diagnostics(2.1)
    assert status.level == ERROR and status.value("start_needed") == "true"
    assert "camera stale" in status.value("latched")
    c.start(2.2)
    c.on_camera(2.2)
    assert c.on_policy(cmd(2.2), 2.2).drive.speed > 0 and c.diagnostics(2.2).value("start_needed") == "false"


def test_node_exit_latches_so_a_restarted_node_cannot_resume():
    c = started()
    c.on_policy(cmd(0.0), 0.0)
    c.fault("actuator killed by SIGKILL", 0.1)
    for t in (0.2, 0.3, 5.0):
        assert c.on_policy(cmd(t), t).drive == NEUTRAL
    assert c.last_reason.startswith("actuator killed by SIGKILL (latched")


def test_policy_that_never_answered_after_start_waits_without_latching():
    c = started()
    assert c.tick(1.0).drive == NEUTRAL and c.last_reason == "waiting for the policy"
    assert c.on_policy(cmd(1.0), 1.0).drive.speed > 0


def test_teleop_latch_drops_late_commands_and_needs_the_stick_let_go():
    c = ControlCore()
    assert c.on_teleop(cmd(0.0, 0.1, 1.0), 0.0).drive.speed == pytest.approx(0.5)
    c.fault("teleop deadman: no command for 180 ms", 0.18)
    assert c.last_output.drive == NEUTRAL
    assert c.on_teleop(cmd(0.17, 0.1, 1.0), 0.2).drive == NEUTRAL  # sent before the deadman fired: dropped
    assert c.on_teleop(cmd(0.2, 0.1, 1.0), 0.2).drive == NEUTRAL  # still pushing the stick: latched
    c.on_teleop(cmd(0.21, 0.0, 0.0), 0.21)
    assert c.on_teleop(cmd(0.22, 0.1, 1.0), 0.22).drive.speed == pytest.approx(0.5)
    assert c.on_teleop(cmd(0.0, 0.1, 1.0), 0.6).drive == NEUTRAL  # older than the deadman when it arrives
    c.on_teleop(cmd(0.6, 0.0, 0.0), 0.6)
    c.on_teleop(cmd(0.61, 0.1, 1.0), 0.61)
    assert c.tick(0.87).drive == NEUTRAL and c.last_reason.startswith("teleop command stale (latched")


def test_teleop_cannot_rearm_while_the_fault_is_present():
    c = ControlCore()
    c.on_camera(0.0)
    c.on_teleop(cmd(0.5, 0.0, 0.0), 0.5)  # camera stale at 0.5: latched
    assert "camera stale" in c.last_reason
    c.on_teleop(cmd(0.6, 0.0, 0.0), 0.6)  # the stick let go, but the camera is still gone
    c.on_camera(0.7)
    assert c.on_teleop(cmd(0.7, 0.1, 1.0), 0.7).drive == NEUTRAL
    c.on_teleop(cmd(0.71, 0.0, 0.0), 0.71)
    assert c.on_teleop(cmd(0.72, 0.1, 1.0), 0.72).drive.speed > 0


def test_manual_and_autonomous_speed_limits_are_separate():
    c = ControlCore(ControlParams(max_speed=0.3, manual_max_speed=0.5))
    c.set_manual_max_speed(1.0, 0.0)
    assert c.state.max_speed == 0.3
    assert c.on_teleop(cmd(0.0, 0.0, 1.0), 0.0).drive.speed == pytest.approx(1.0)
    c.set_mode("autonomous", 0.1)
    c.start(0.1)
    assert c.on_policy(cmd(0.1, 0.0, 1.0), 0.1).drive.speed == pytest.approx(0.3)
    for bad in (1.5, -0.1, float("nan"), True, 10 ** 400):
        with pytest.raises(ValueError, match="max speed"):
            c.set_manual_max_speed(bad, 0.0)


def test_calibration_only_from_stopped_and_output_frames_cannot_be_forged():
    c = ControlCore()
    c.on_teleop(cmd(0.0, 0.1, 1.0), 0.0)
    with pytest.raises(ValueError, match="stop the car before calibrating"):
        c.set_mode("calibration", 0.01)
    forged = drive_msg(Time.from_seconds(0.02), 0.1, 1.0, CALIBRATION_FRAME)
    assert c.on_teleop(forged, 0.02).header.frame_id == ""  # only control puts a command in the raw frame
    c.set_mode("autonomous", 0.03)
    c.start(0.03)
    c.on_policy(cmd(0.04), 0.04)
    with pytest.raises(ValueError, match="stop the car before calibrating"):
        c.set_mode("calibration", 0.05)
    c.stop(0.06)
    c.set_mode("calibration", 0.07)
    assert c.state.mode is Mode.CALIBRATION


class CalibratedDriver(RecordingDriver):
    """A pulse driver's view for the actuator core: it maps through whatever table `calibration` holds."""

    def __init__(self):
        super().__init__()
        self.calibration = "car table"

    def set(self, steering, throttle):
        super().set(steering, throttle)
        self.calls[-1] += (self.calibration,)

    def neutral(self):
        super().neutral()
        self.calls[-1] += (self.calibration,)


def test_actuator_switches_calibration_per_command_through_neutral():
    d = CalibratedDriver()
    a = ActuatorCore(d, 0.5, 4.0)
    a.on_drive(drive_msg(Time.from_seconds(0.0), 0.25, 1.0, CALIBRATION_FRAME), 0.0)
    assert d.calls[-1] == ("neutral", "car table") and a.fault == "no raw calibration on the actuator"
    a.set_calibrations("car table", "raw table")
    a.on_drive(drive_msg(Time.from_seconds(0.1), 0.25, 1.0, CALIBRATION_FRAME), 0.1)
    assert d.calls[-3:] == [("neutral", "car table"), ("neutral", "raw table"), ("set", 0.5, 0.25, "raw table")]
    a.on_drive(cmd(0.2, 0.25, 1.0), 0.2)
    assert d.calls[-3:] == [("neutral", "raw table"), ("neutral", "car table"), ("set", 0.5, 0.25, "car table")]
    assert a.diagnostics(0.2).value("calibration") == "car"


def test_leaving_calibration_or_stopping_is_not_a_stale_teleop():
    c = ControlCore()
    c.set_mode("calibration", 0.0)
    c.calibrate(0.5, 0.1, 0.0)
    c.set_mode("manual", 0.1)  # the wizard's last raw command was live: the mode change is not a fault
    assert c.state.latch is None and c.last_reason == "idle: waiting for teleop"
    c.on_teleop(cmd(0.2, 0.1, 1.0), 0.2)
    c.stop(0.3)
    assert c.state.latch is None and c.tick(0.6).drive == NEUTRAL and c.state.latch is None


def test_a_policy_error_does_not_stop_manual_driving():
    c = ControlCore()
    c.on_policy_error("RuntimeError: inference failed", 0.0)
    assert c.on_teleop(cmd(0.1, 0.1, 1.0), 0.1).drive.speed == pytest.approx(0.5)
    c.on_policy(cmd(0.15), 0.15)  # it answers again
    c.set_mode("autonomous", 0.2)
    assert c.state.latch is None
    c.start(0.2)
    c.on_policy_error("RuntimeError: inference failed", 0.3)
    assert c.state.latch.reason == "RuntimeError: inference failed"
    assert c.on_policy(cmd(0.4), 0.4).drive == NEUTRAL  # answering again does not restart the car
