"""/control/command: what other processes (the console) send the control node, and how it answers."""
import json

import numpy as np
import pytest

from car.clock import SimClock
from car.config import CarConfig
from car.control.requests import ControlRequestError, control_request_json, parse_control_request
from car.graph.multiprocess import ControlProcess
from car.messages import DIAGNOSTICS_TOPIC
from car.transport.local import LocalBus


def test_commands_round_trip_through_json():
    text = control_request_json("set_mode", mode="autonomous", id="42")
    assert json.loads(text) == {"command": "set_mode", "mode": "autonomous", "id": "42"}
    command = parse_control_request(text)
    assert (command.name, command.args, command.id) == ("set_mode", ("autonomous",), "42")
    assert parse_control_request('{"command": "calibrate", "steering": 0.5, "throttle": -1}').args == (0.5, -1)


@pytest.mark.parametrize("text, reason, command_id", [
    ("start", "not JSON", ""),
    ("[1]", "must be a JSON object", ""),
    ('{"command": "warp", "id": 3}', "unknown command 'warp'", "3"),
    ('{"command": "start", "speed": 1, "id": "a"}', r"unexpected field\(s\) speed", "a"),
    ('{"command": "set_max_speed"}', "missing field 'value'", ""),
    ('{"command": "set_max_speed", "value": "fast"}', "value must be a number", ""),
    ('{"command": "calibrate", "steering": true, "throttle": 0}', "steering must be a number", ""),
])
def test_bad_commands_are_refused_with_the_reason_and_their_id(text, reason, command_id):
    with pytest.raises(ControlRequestError, match=reason) as info:
        parse_control_request(text)
    assert info.value.id == command_id


def test_control_node_answers_each_command_on_diagnostics():
    bus, clock = LocalBus(), SimClock()  # not spinning: each command is answered as it is sent
    answers = []
    bus.subscribe(DIAGNOSTICS_TOPIC, lambda a: answers.extend(s for s in a.status if s.name == "control"))
    control = ControlProcess(bus, clock, CarConfig())
    send = bus.publisher("/control/command")
    send(control_request_json("set_mode", mode="autonomous", id="1"))
    send(control_request_json("start", id="2"))
    send(control_request_json("set_max_speed", value=0.8, id="3"))
    send('{"command": "set_max_speed", "value": 1.5, "id": "4"}')
    send(control_request_json("calibrate", steering=0.1, throttle=0.0, id="5"))
    result = {s.value("command_id"): s.value("command_result") for s in answers}
    assert result == {"1": "ok", "2": "ok", "3": "ok", "4": "max speed must be between 0 and 1, got 1.5",
                      "5": "calibration commands need calibration mode"}
    last = answers[-1]
    assert (last.value("mode"), last.value("running"), last.value("max_speed")) == ("autonomous", "true", "0.80")
    assert control.core.state.running


def test_control_owns_the_calibration_the_actuator_applies(tmp_path):
    from car.actuators import calibration as servo
    from car.graph.multiprocess import ActuatorProcess
    from car.messages import AckermannDrive, AckermannDriveStamped, Header, Time
    from test_console_api import PulseRecorder

    bus, clock = LocalBus(), SimClock()
    statuses = {}
    bus.subscribe(DIAGNOSTICS_TOPIC, lambda a: statuses.update({s.name: s for s in a.status}))
    control = ControlProcess(bus, clock, CarConfig())
    driver = PulseRecorder(servo.FACTORY_DEFAULT)
    ActuatorProcess(bus, clock, driver, CarConfig())
    send = bus.publisher("/control/command")
    other = servo.Calibration(servo.PulseRange(1_300_000, 1_500_000, 1_700_000, 1), servo.FACTORY_DEFAULT.motor)
    send(control_request_json("set_calibration", calibration=servo.to_dict(other), id="1"))
    assert statuses["control"].value("command_result") == "ok"
    assert driver.calibration == other and driver.writes[-1] == (servo.FACTORY_DEFAULT.motor.mid, 1_500_000)

    send(control_request_json("set_mode", mode="autonomous"))
    send(control_request_json("start"))
    control.core.on_camera(clock.now())  # the camera's heartbeat is not what this test is about
    bus.publisher("/policy/drive")(AckermannDriveStamped(Header(Time.from_seconds(0.0)), AckermannDrive(0.0, 0.0, 1.0)))
    send(control_request_json("set_calibration", calibration=servo.to_dict(servo.FACTORY_DEFAULT), id="2"))
    assert statuses["control"].value("command_result") == "stop the car before changing its calibration"
    assert driver.calibration == other
    send(control_request_json("stop"))

    out_of_range = servo.to_dict(other)
    out_of_range["Calibration"]["Servo"]["max"] = 3_000_000  # 3 ms: no servo takes it
    send(control_request_json("set_calibration", calibration=out_of_range, id="3"))
    assert "outside 500000..2500000 ns" in statuses["actuator"].message and driver.calibration == other
    assert "actuator: calibration refused" in statuses["control"].value("latched")  # control latched the fault
    send('{"command": "set_calibration", "calibration": [1], "id": "4"}')
    assert "calibration.json document" in statuses["control"].value("command_result")


def test_the_policy_node_loads_a_bundle_on_request_after_stopping_the_car(tmp_path):
    from car.graph.multiprocess import PolicyProcess, load_model
    from car.policy.bundle import save_bundle
    from car.policy.preprocess import DEEPRACER_SPEC
    from car.transport.wire import MODEL_TOPIC
    from model_factory import metadata, ov_model

    bundle = tmp_path / "models" / "tiny"
    save_bundle(bundle, ov_model(), metadata(), DEEPRACER_SPEC).close()
    bus, clock = LocalBus(), SimClock()
    statuses, commands = {}, []
    bus.subscribe(DIAGNOSTICS_TOPIC, lambda a: statuses.update({s.name: s for s in a.status}))
    bus.subscribe("/control/command", commands.append)
    policy = PolicyProcess(bus, clock, load_model(bundle, tmp_path / "cache"), CarConfig(), "tiny")
    load = bus.publisher(MODEL_TOPIC)
    load(json.dumps({"path": str(tmp_path / "nowhere"), "cache": str(tmp_path / "cache"), "id": "a"}))
    answer = statuses["policy"]
    assert answer.value("load_id") == "a" and "nowhere" in answer.value("load_result")
    assert answer.value("model") == "tiny" and json.loads(commands[-1])["command"] == "stop"
    load(json.dumps({"path": str(bundle), "cache": str(tmp_path / "cache"), "id": "b"}))
    assert (statuses["policy"].value("load_id"), statuses["policy"].value("load_result")) == ("b", "ok")
    load("{not json")
    assert "Expecting property name" in statuses["policy"].value("load_result")
    assert policy.model_name == "tiny" and len(commands) == 2  # a request that was not even read stops nothing


def test_inputs_before_the_first_clock_do_not_latch_a_car_that_just_started():
    """A node that follows /clock can hear a camera frame or a policy command before its first /clock (DDS
    discovery matches the topics in any order); taken at time 0 they made the first tick see them seconds
    stale, and `--autostart` latched "camera stale" at once."""
    from car.messages import CAMERA_TOPIC, POLICY_TOPIC, AckermannDrive, AckermannDriveStamped, Header, Image, Time

    bus, clock = LocalBus(), SimClock(start=None)
    control = ControlProcess(bus, clock, CarConfig(), autostart=True)
    frame = Image(Header(Time.from_seconds(0.0), "camera"), np.zeros((1, 1, 3), np.uint8))
    bus.publisher(CAMERA_TOPIC)(frame)
    bus.publisher(POLICY_TOPIC)(AckermannDriveStamped(Header(Time.from_seconds(0.0)), AckermannDrive(0.0, 0.0, 1.0)))
    assert not clock.started()
    clock.set(3.4)  # the first /clock, 3.4 s into the simulation
    control.tick()
    assert control.core.state.latch is None and control.core.last_reason == "waiting for the policy"
    bus.publisher(CAMERA_TOPIC)(frame)
    bus.publisher(POLICY_TOPIC)(AckermannDriveStamped(Header(Time.from_seconds(3.4)), AckermannDrive(0.0, 0.0, 1.0)))
    assert control.core.driving


def test_the_camera_reader_posts_nothing_once_the_camera_node_is_closed():
    """At SIGTERM the closers run, then the bus closes: a frame the reader was blocked on when the camera closed
    must not be posted to the bus (on rclpy that raised in the reader thread as the node went away)."""
    import threading

    from car.graph.multiprocess import CameraProcess

    class BlockingSource:
        def __init__(self):
            self.released, self.reading = threading.Event(), threading.Event()

        def read(self):
            self.reading.set()
            self.released.wait()
            return np.zeros((1, 1, 3), np.uint8), 0.0

        def close(self):
            self.released.set()  # as closing a device ends a blocked read, with a last frame

    bus, source = LocalBus(), BlockingSource()
    posts = []
    bus.post = posts.append
    camera = CameraProcess(bus, SimClock(), source)
    camera.start()
    assert source.reading.wait(5)
    camera.close()
    assert not camera._thread.is_alive() and posts == []
