"""The stock DeepRacer services' mapping, without a transport: request fields -> control's command -> response,
through a real ControlProcess and ControlCore, and the model-load service on a real PolicyCore and bundle.
The services on real rclpy, across processes, are tests/test_ros_services.py."""
import json
import math
import shutil
from pathlib import Path

import pytest

import calibration.servo as servo
from car.clock import SimClock
from car.control.commands import CommandError
from car.graph.multiprocess import ControlProcess
from car.messages import (
    CAMERA_TOPIC,
    DIAGNOSTICS_TOPIC,
    DRIVE_TOPIC,
    POLICY_TOPIC,
    DiagnosticArray,
    DiagnosticStatus,
    Header,
    KeyValue,
    Time,
    drive_msg,
)
from car.policy.bundle import load_bundle
from car.policy.core import PolicyCore
from car.policy.inference import Policy
from car.stock_services.ctrl_pkg import (
    LOADING_KEY,
    MODEL_STATUS,
    ControlServices,
    autonomous_throttle,
    cal_type,
    car_cal,
    ctrl_modes,
    enable_state,
    updated_calibration,
    vehicle_state,
)
from car.stock_services.inference_pkg import LOAD_MODEL, MODEL_STATE, ModelLoadService, model_folder, named_folder
from car.transport.local import LocalBus
from car.transport.wire import COMMAND_TOPIC

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "models" / "default"
FACTORY = servo.FACTORY_DEFAULT


class ServiceBus(LocalBus):
    """The in-process bus plus what a node process and a service adapter ask of theirs; timers are run by the
    test (`tick`), services are kept by name and called like a client would."""

    def __init__(self) -> None:
        super().__init__()
        self.services: dict[str, tuple[str, object]] = {}
        self.timers: list = []

    def timer(self, period_s, callback, clock) -> None:
        self.timers.append(callback)

    def serve(self, name, ros_type, handler) -> None:
        assert name not in self.services
        self.services[name] = (ros_type, handler)

    def call(self, name: str, **request) -> dict:
        return self.services[name][1](request)

    def recorder(self, topic: str) -> list:
        got = []
        self.subscribe(topic, got.append)
        return got


@pytest.fixture
def car(tmp_path):
    """A control process answering the services, with the factory calibration and `tmp_path` as state dir."""
    bus, clock = ServiceBus(), SimClock(100.0)
    drives, diagnostics = bus.recorder(DRIVE_TOPIC), bus.recorder(DIAGNOSTICS_TOPIC)
    control = ControlProcess(bus, clock, {})
    state = tmp_path / "state"
    ControlServices(bus, control, servo.CarCalibration(FACTORY, "factory default", state / "calibration.json"), servo)
    return bus, clock, control, drives, diagnostics, state


def drive_on_policy(bus, clock, speed=2.0) -> None:
    clock.set(clock.now() + 0.02)
    bus.publisher(POLICY_TOPIC)(drive_msg(Time.from_seconds(clock.now()), 0.1, speed))


def last_answer(diagnostics) -> tuple[str, str]:
    status = next(s for a in reversed(diagnostics) for s in a.status if s.name == "control")
    return status.value("command_id"), status.value("command_result")


# --- the pure mapping -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("state,mode", [(0, "manual"), (1, "autonomous"), (2, "calibration")])
def test_vehicle_state_is_set_mode_with_the_stock_numbers(state, mode):
    command = vehicle_state({"state": state})
    assert (command.name, command.args) == ("set_mode", (mode,))


@pytest.mark.parametrize("state", [3, -1, 127, -128, True, 1.0, None, "1"])
def test_a_state_the_car_does_not_have_is_refused(state):
    with pytest.raises(CommandError):
        vehicle_state({"state": state})


def test_enable_state_is_start_or_stop_and_nothing_else():
    assert enable_state({"is_active": True}).name == "start"
    assert enable_state({"is_active": False}).name == "stop"
    for value in (1, 0, "true", None):
        with pytest.raises(CommandError, match="is_active must be true or false"):
            enable_state({"is_active": value})


def test_autonomous_throttle_is_the_autonomous_speed_limit():
    command = autonomous_throttle({"throttle": 0.25})
    assert (command.name, command.args) == ("set_max_speed", (0.25,))


def test_ctrl_modes_lists_the_three_stock_modes():
    assert ctrl_modes() == {"modes": [0, 1, 2], "error": 0}


def test_cal_type_0_is_the_servo_and_1_the_motor():
    assert car_cal(FACTORY, {"cal_type": 0}) == {"max": 1_700_000, "mid": 1_450_000, "min": 1_200_000,
                                                  "polarity": 1, "error": 0}
    assert car_cal(FACTORY, {"cal_type": 1}) == {"max": 1_603_500, "mid": 1_446_000, "min": 1_311_000,
                                                  "polarity": -1, "error": 0}
    for kind in (2, -1, True):
        with pytest.raises(CommandError):
            cal_type({"cal_type": kind})


@pytest.mark.parametrize("change,reason", [
    ({"max": 2_600_000}, "2600000 ns is outside 500000..2500000"),
    ({"min": 400_000}, "outside"),
    ({"min": 1_500_000}, "must be below mid"),
    ({"max": 1_400_000}, "must be above mid"),
    ({"polarity": 0}, "expected 1 or -1"),
    ({"polarity": 2}, "expected 1 or -1"),
    ({"mid": 2**31 - 1}, "outside"),
])
def test_an_out_of_range_calibration_is_refused_with_the_field(change, reason):
    request = {"cal_type": 0, "min": 1_200_000, "mid": 1_450_000, "max": 1_700_000, "polarity": 1, **change}
    with pytest.raises(ValueError, match=reason):
        updated_calibration(FACTORY, request, servo)


def test_a_calibration_changes_only_the_output_it_names():
    new = updated_calibration(FACTORY, {"cal_type": 1, "min": 1_300_000, "mid": 1_450_000, "max": 1_600_000,
                                        "polarity": 1}, servo)
    assert new.servo == FACTORY.servo
    assert new.motor == servo.PulseRange(1_300_000, 1_450_000, 1_600_000, 1)


# --- through control's state machine ----------------------------------------------------------------------------

def test_the_services_are_the_stock_names_and_types(car):
    bus = car[0]
    assert {name: ros_type for name, (ros_type, _) in bus.services.items()} == {
        f"/ctrl_pkg/{name}": f"deepracer_interfaces_pkg/srv/{kind}" for name, kind in (
            ("vehicle_state", "ActiveStateSrv"), ("enable_state", "EnableStateSrv"),
            ("autonomous_throttle", "NavThrottleSrv"), ("get_car_cal", "GetCalibrationSrv"),
            ("set_car_cal", "SetCalibrationSrv"), ("get_ctrl_modes", "GetCtrlModesSrv"),
            ("is_model_loading", "GetModelLoadingStatusSrv"))}


def test_autonomous_drives_only_after_enable_and_disable_is_neutral_at_once(car):
    bus, clock, control, drives, diagnostics, _ = car
    assert bus.call("/ctrl_pkg/vehicle_state", state=1) == {"error": 0}
    assert last_answer(diagnostics) == ("/ctrl_pkg/vehicle_state", "ok")
    drive_on_policy(bus, clock)
    assert drives[-1].drive.speed == 0.0  # autonomous, not started: the car does not move
    assert bus.call("/ctrl_pkg/enable_state", is_active=True) == {"error": 0}
    drive_on_policy(bus, clock)
    assert drives[-1].drive.speed == pytest.approx(2.0 * 0.5)  # the policy's speed times the default limit
    assert bus.call("/ctrl_pkg/enable_state", is_active=False) == {"error": 0}
    assert drives[-1].drive.speed == 0.0 and drives[-1].drive.steering_angle == 0.0  # published by the call
    drive_on_policy(bus, clock)
    assert drives[-1].drive.speed == 0.0
    assert last_answer(diagnostics) == ("/ctrl_pkg/enable_state", "ok")


def test_a_mode_change_goes_through_neutral_and_needs_a_new_enable(car):
    bus, clock, control, drives, _, _ = car
    bus.call("/ctrl_pkg/vehicle_state", state=1)
    bus.call("/ctrl_pkg/enable_state", is_active=True)
    drive_on_policy(bus, clock)
    assert drives[-1].drive.speed > 0
    assert bus.call("/ctrl_pkg/vehicle_state", state=0) == {"error": 0}
    assert drives[-1].drive.speed == 0.0 and not control.core.state.running
    assert bus.call("/ctrl_pkg/vehicle_state", state=1) == {"error": 0}
    drive_on_policy(bus, clock)
    assert drives[-1].drive.speed == 0.0  # back in autonomous, still stopped until enabled


def test_calibration_mode_is_refused_while_driving(car):
    bus, clock, control, drives, diagnostics, _ = car
    bus.call("/ctrl_pkg/vehicle_state", state=1)
    bus.call("/ctrl_pkg/enable_state", is_active=True)
    drive_on_policy(bus, clock)
    assert bus.call("/ctrl_pkg/vehicle_state", state=2) == {"error": 1}
    assert control.core.state.mode.value == "autonomous"
    assert last_answer(diagnostics) == ("/ctrl_pkg/vehicle_state", "stop the car before calibrating (calibration "
                                                                    "mode is entered only from stopped)")


def test_an_enable_after_an_emergency_stop_is_the_users_start(car):
    bus, clock, control, drives, _, _ = car
    bus.call("/ctrl_pkg/vehicle_state", state=1)
    bus.call("/ctrl_pkg/enable_state", is_active=True)
    bus.publisher(COMMAND_TOPIC)(json.dumps({"command": "emergency_stop"}))
    drive_on_policy(bus, clock)
    assert drives[-1].drive.speed == 0.0
    assert bus.call("/ctrl_pkg/vehicle_state", state=1) == {"error": 0}  # same mode: the latch stays
    drive_on_policy(bus, clock)
    assert drives[-1].drive.speed == 0.0 and control.core.estopped
    bus.call("/ctrl_pkg/enable_state", is_active=True)
    drive_on_policy(bus, clock)
    assert drives[-1].drive.speed > 0


def test_an_enable_is_refused_while_a_fault_is_present(car):
    bus, clock, control, drives, diagnostics, _ = car
    bus.call("/ctrl_pkg/vehicle_state", state=1)
    bus.publisher(CAMERA_TOPIC)(object())  # the camera's first frame arms its watchdog ...
    clock.set(clock.now() + 1.0)  # ... and then none for a second
    assert bus.call("/ctrl_pkg/enable_state", is_active=True) == {"error": 1}
    assert last_answer(diagnostics)[1].startswith("cannot start: camera stale")
    drive_on_policy(bus, clock)
    assert drives[-1].drive.speed == 0.0 and not control.core.state.running


@pytest.mark.parametrize("throttle", [1.5, -0.1, math.nan, math.inf])
def test_an_autonomous_throttle_out_of_0_to_1_is_refused_and_the_limit_kept(car, throttle):
    bus, _, control, _, diagnostics, _ = car
    assert bus.call("/ctrl_pkg/autonomous_throttle", throttle=throttle) == {"error": 1}
    assert control.core.state.max_speed == 0.5
    assert last_answer(diagnostics)[1].startswith("max speed must be between 0 and 1")


def test_autonomous_throttle_sets_only_the_autonomous_limit(car):
    bus, _, control, _, _, _ = car
    assert bus.call("/ctrl_pkg/autonomous_throttle", throttle=0.8) == {"error": 0}
    assert (control.core.state.max_speed, control.core.state.manual_max_speed) == (0.8, 0.5)


def test_bad_requests_are_refused_without_reaching_control(car):
    bus, _, control, _, diagnostics, _ = car
    before = len(diagnostics)
    assert bus.call("/ctrl_pkg/vehicle_state", state=7) == {"error": 1}
    assert bus.call("/ctrl_pkg/get_car_cal", cal_type=5) == {"error": 1}
    assert len(diagnostics) == before and control.core.state.mode.value == "manual"


def test_set_car_cal_needs_calibration_mode_and_saves_atomically(car):
    bus, _, control, _, _, state = car
    request = {"cal_type": 0, "min": 1_100_000, "mid": 1_400_000, "max": 1_800_000, "polarity": -1}
    assert bus.call("/ctrl_pkg/set_car_cal", **request) == {"error": 1}  # manual mode: refused
    assert not (state / "calibration.json").exists()
    assert bus.call("/ctrl_pkg/vehicle_state", state=2) == {"error": 0}
    assert bus.call("/ctrl_pkg/set_car_cal", **request) == {"error": 0}
    assert bus.call("/ctrl_pkg/get_car_cal", cal_type=0) == {"max": 1_800_000, "mid": 1_400_000, "min": 1_100_000,
                                                             "polarity": -1, "error": 0}
    saved = servo.load(state / "calibration.json")  # the file the car starts with next time
    assert saved.servo == servo.PulseRange(1_100_000, 1_400_000, 1_800_000, -1) and saved.motor == FACTORY.motor


def test_an_out_of_range_set_car_cal_changes_nothing(car):
    bus, _, _, _, _, state = car
    bus.call("/ctrl_pkg/vehicle_state", state=2)
    before = bus.call("/ctrl_pkg/get_car_cal", cal_type=1)
    assert bus.call("/ctrl_pkg/set_car_cal", cal_type=1, min=1_311_000, mid=1_446_000, max=3_000_000,
                    polarity=-1) == {"error": 1}
    assert bus.call("/ctrl_pkg/get_car_cal", cal_type=1) == before
    assert not state.exists()


def test_a_calibration_that_cannot_be_saved_is_refused_and_not_used(car):
    bus, _, _, _, _, state = car
    state.parent.mkdir(exist_ok=True)
    state.write_text("a file where the state dir should be")
    bus.call("/ctrl_pkg/vehicle_state", state=2)
    assert bus.call("/ctrl_pkg/set_car_cal", cal_type=0, min=1_100_000, mid=1_400_000, max=1_800_000,
                    polarity=1) == {"error": 1}
    assert bus.call("/ctrl_pkg/get_car_cal", cal_type=0)["mid"] == FACTORY.servo.mid


def test_is_model_loading_follows_the_policy_nodes_report(car):
    bus = car[0]
    assert bus.call("/ctrl_pkg/is_model_loading") == {"model_loading_status": "loaded", "error": 0}
    report = bus.publisher(DIAGNOSTICS_TOPIC)
    for status in ("loading", "error"):
        report(DiagnosticArray(Header(Time(1, 0)), (DiagnosticStatus(level=0,
            name=MODEL_STATUS, message=status, values=(KeyValue(LOADING_KEY, status),)),)))
        assert bus.call("/ctrl_pkg/is_model_loading") == {"model_loading_status": status, "error": 0}


# --- the model load ---------------------------------------------------------------------------------------------

def test_model_folder_is_a_folder_under_models_and_nothing_else(tmp_path):
    models = tmp_path / "models"
    (models / "fast").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (models / "link").symlink_to(tmp_path / "outside")
    assert model_folder("fast", models) == "fast"
    assert model_folder(str(models / "fast" / "model.xml"), models) == "fast"
    for bad in ("", "  ", str(models), "../outside", "/etc/passwd", str(models / "link"), "fast/../..", None, 3):
        with pytest.raises(ValueError):
            model_folder(bad, models)
    assert named_folder("fast", models) == "fast"
    for bad in ("fast/model.xml", str(models / "fast"), "..", ""):
        with pytest.raises(ValueError):
            named_folder(bad, models)


@pytest.fixture
def policy_node(tmp_path):
    bus, clock = ServiceBus(), SimClock(5.0)
    core = PolicyCore.for_model(Policy(load_bundle(BUNDLE)).model(), 0.5236, 4.0)
    commands, diagnostics = bus.recorder(COMMAND_TOPIC), bus.recorder(DIAGNOSTICS_TOPIC)
    service = ModelLoadService(bus, clock, core, tmp_path)
    return bus, core, service, commands, diagnostics, tmp_path / "models"


def reported(diagnostics) -> list[str]:
    return [s.value(LOADING_KEY) for a in diagnostics for s in a.status if s.name == MODEL_STATUS]


def test_a_load_stops_the_car_then_swaps_the_model(policy_node):
    bus, core, service, commands, diagnostics, models = policy_node
    shutil.copytree(BUNDLE, models / "fast")
    infer = core.infer
    assert bus.call(LOAD_MODEL, artifact_path=str(models / "fast" / "model.xml"), task_type=0, pre_process_type=1,
                    action_space_type=2) == {"error": 0}
    assert [json.loads(c) for c in commands] == [{"command": "stop", "id": LOAD_MODEL}]
    assert reported(diagnostics) == ["loading", "loaded"]
    assert core.infer is not infer
    assert bus.call(MODEL_STATE, model_name="fast") == {"error": 0}  # the stock ctrl_pkg flow, by folder name


def test_a_load_of_nothing_changes_nothing(policy_node):
    bus, core, service, commands, diagnostics, models = policy_node
    models.mkdir()
    infer = core.infer
    for path in ("missing", "/etc", "../models", ""):
        assert bus.call(LOAD_MODEL, artifact_path=path) == {"error": 1}
    assert commands == [] and diagnostics == [] and core.infer is infer


def test_a_broken_model_fails_the_load_and_keeps_the_old_one(policy_node):
    bus, core, service, commands, diagnostics, models = policy_node
    shutil.copytree(BUNDLE, models / "broken")
    (models / "broken" / "model.bin").write_bytes(b"not weights")
    (models / "broken" / "model.onnx").unlink()
    infer = core.infer
    assert bus.call(LOAD_MODEL, artifact_path="broken") == {"error": 1}
    assert [json.loads(c)["command"] for c in commands] == ["stop"]  # stopped all the same: stays stopped
    assert reported(diagnostics) == ["loading", "error"]
    assert core.infer is infer
