"""The console's /api/* contract: DeepRacer paths, bodies and shapes, with real status codes."""
from __future__ import annotations

import http.client
import json
import time

import cv2
import numpy as np
import pytest

from browser.harness import car_fixture
from car.actuators import calibration as servo
from car.actuators.pulse import PulseDriver
from car.clock import SimClock
from car.config import CarConfig
from car.console.calibration import CalibrationService
from car.console.errors import ApiError
from car.console.node import ConsoleNode
from car.graph.stack import CarGraph
from car.messages import DiagnosticStatus, KeyValue
from car.policy.core import PolicyModel
from car.policy.metadata import parse_metadata
from car.policy.preprocess import PreprocessSpec
from dds_support import wait_for

car = car_fixture("api")


@pytest.fixture
def api(car):
    client = car.client()
    client.request("POST", "/api/drive_mode", {"drive_mode": "manual"})
    return client


def refused(response, status: int, phrase: str) -> bool:
    return response.status == status and response.body["success"] is False and phrase in response.body["reason"]


def test_server_ready_and_status(api, car):
    assert car.request("GET", "/api/server_ready")[2] == b'{"success":true}'
    status = api.request("GET", "/api/status").body
    assert {"mode": "manual", "running": False, "max_speed": 0.5, "model": "driving", "camera": "connected",
            "emergency_stop": False, "battery_level": None, "domain_shift": None,
            "uncertainty": None, "warning": None, "caution": None}.items() <= status.items()
    assert status["fps"] > 5 and status["watchdog"] == "ok" and status["infer_ms"] > 0
    assert status["loading"]["isModelLoading"] == "loaded"


def driving_status(api) -> dict | None:
    status = api.request("GET", "/api/status").body
    return status if status["command"]["throttle"] > 0 and status["reason"] == "autonomous" else None


def test_drive_mode_start_stop_and_max_speed(api, car):
    assert refused(api.request("POST", "/api/drive_mode", {"drive_mode": "rally"}), 400, "one of manual, auto")
    assert refused(api.request("POST", "/api/drive_mode", {}), 400, "drive_mode")
    assert api.request("PUT", "/api/drive_mode", {"drive_mode": "auto"}).body == {"success": True}
    assert refused(api.request("POST", "/api/start_stop", {"start_stop": "go"}), 400, "one of start, stop")
    assert refused(api.request("POST", "/api/max_nav_throttle", {"throttle": 150}), 400, "0..100")
    assert refused(api.request("POST", "/api/max_nav_throttle", {"throttle": "fast"}), 400, "number")
    assert api.request("POST", "/api/max_nav_throttle", {"throttle": 60}).status == 200
    start = time.monotonic()
    assert api.request("POST", "/api/start_stop", {"start_stop": "start"}).status == 200
    # /drive and control's diagnostics reach the console as two messages: wait for one status that has both
    status = car.wait_for(lambda: driving_status(api), what="a status with the car driving for the policy")
    assert (status["mode"], status["running"], status["max_speed"]) == ("autonomous", True, 0.6)
    assert status["latency_ms"] is not None
    # the simulator's clock stands still while the stack computes: never less than the policy's own time (each
    # figure rounded on its own for display: 0.449 ms is latency 0.4 and infer 0.45)
    assert status["infer_ms"] > 0 and status["latency_ms"] >= status["infer_ms"] - 0.05
    assert status["driven_by"] == "policy"
    assert any(t == pytest.approx(0.6) for when, _, t in car.driver.log if when > start)
    assert api.request("POST", "/api/start_stop", {"start_stop": "stop"}).status == 200
    assert api.request("GET", "/api/status").body["command"] == {"steering": 0.0, "throttle": 0.0}
    api.request("POST", "/api/max_nav_throttle", {"throttle": 50})


def test_emergency_stop_latches_until_the_next_start(api, car):
    api.request("POST", "/api/drive_mode", {"drive_mode": "auto"})
    api.request("POST", "/api/start_stop", {"start_stop": "start"})
    car.wait_for(lambda: api.request("GET", "/api/status").body["command"]["throttle"] > 0, what="driving")
    assert api.request("POST", "/api/emergency_stop").status == 200
    status = api.request("GET", "/api/status").body
    assert status["emergency_stop"] and not status["running"] and status["command"]["throttle"] == 0.0
    assert car.driver.log[-1][1:] == (0.0, 0.0)
    api.request("POST", "/api/start_stop", {"start_stop": "start"})
    assert api.request("GET", "/api/status").body["emergency_stop"] is False
    api.request("POST", "/api/start_stop", {"start_stop": "stop"})


def test_manual_drive_follows_the_deepracer_sign_convention(api, car):
    before = time.monotonic()
    answer = api.request("POST", "/api/manual_drive", {"angle": 0.5, "throttle": -1.0, "max_speed": 0.8})
    assert answer.body == {"success": True}
    # the console's answer says the command went on the bus; the actuator takes it a moment later
    wait_for(lambda: any(s == pytest.approx(-0.5) and t == pytest.approx(0.8)
                         for when, s, t in list(car.driver.log) if when > before), 2.0, "the teleop command's pulses")
    # /api/status is control's newest diagnostics, published once the teleop command has moved the outputs
    status = wait_for(lambda: (body := api.request("GET", "/api/status").body)["driven_by"] and body, 2.0,
                      "control's status to name teleop")
    assert (status["mode"], status["running"], status["driven_by"]) == ("manual", False, "teleop")
    assert status["latency_ms"] is None  # no policy in the loop
    assert refused(api.request("POST", "/api/manual_drive", {"angle": 2, "throttle": 0, "max_speed": 0.5}), 400,
                   "angle must be within -1..1")
    assert refused(api.request("POST", "/api/manual_drive", {"angle": 0, "throttle": 0}), 400, "max_speed")
    api.request("POST", "/api/drive_mode", {"drive_mode": "auto"})
    assert refused(api.request("POST", "/api/manual_drive", {"angle": 0, "throttle": -1, "max_speed": 0.5}), 409,
                   "manual mode")
    api.request("POST", "/api/max_nav_throttle", {"throttle": 50})


def test_bodies_must_be_small_json_objects(car):
    token = car.client()
    token.request("GET", "/api/server_ready")
    headers = {"Authorization": f"Bearer {token.known.get(token.address.key)['token']}",
               "Content-Type": "application/json"}
    for body, status in ((b"{not json", 400), (b"[1]", 400), (b"{}" + b" " * (70 << 10), 413)):
        code, _, data = car.request("POST", "/api/drive_mode", body, headers)
        assert code == status and json.loads(data)["success"] is False
    code, _, data = car.request("GET", "/api/nope", headers=headers)
    assert (code, json.loads(data)) == (404, {"success": False, "reason": "Not Found"})
    code, _, _ = car.request("DELETE", "/api/status", headers=headers)
    assert code == 405


def test_sensor_battery_and_domain_shift_come_from_the_graph(api, car):
    assert api.request("GET", "/api/get_sensor_status").body == {
        "success": True, "camera_status": "connected", "stereo_status": "not_connected",
        "lidar_status": "not_connected"}
    assert refused(api.request("GET", "/api/get_battery_level"), 503, "no battery level")
    diagnostics = car.server.console.service.node.diagnostics
    diagnostics["battery"] = DiagnosticStatus(0, "battery", values=(KeyValue("level", "9"),))
    diagnostics["shift"] = DiagnosticStatus(0, "shift", values=(KeyValue("domain_shift", "2.5"),
                                                                 KeyValue("warning", "1.25"),
                                                                 KeyValue("caution", "slowing")))
    try:
        assert api.request("GET", "/api/get_battery_level").body == {"success": True, "battery_level": 9.0}
        status = api.request("GET", "/api/status").body
        assert (status["battery_level"], status["domain_shift"], status["warning"], status["caution"]) == \
            (9.0, 2.5, 1.25, "slowing")
    finally:
        del diagnostics["battery"], diagnostics["shift"]


def jpeg_frames(car, count: int) -> list[np.ndarray]:
    client = car.client()
    client.request("GET", "/api/server_ready")
    conn = http.client.HTTPConnection("127.0.0.1", car.port, timeout=10)
    conn.request("GET", "/api/camera.mjpg",
                 headers={"Authorization": f"Bearer {client.known.get(client.address.key)['token']}"})
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("content-type") == "multipart/x-mixed-replace; boundary=racerframe"
    frames = []
    try:
        while len(frames) < count:
            assert response.readline() == b"--racerframe\r\n"
            headers = {}
            while (line := response.readline().strip()):
                key, _, value = line.decode().partition(": ")
                headers[key.lower()] = value
            assert headers["content-type"] == "image/jpeg"
            data = response.read(int(headers["content-length"]))
            response.readline()
            frames.append(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    finally:
        conn.close()
    return frames


def test_camera_stream_is_mjpeg_and_shows_the_car_moving(api, car):
    api.request("POST", "/api/drive_mode", {"drive_mode": "auto"})
    api.request("POST", "/api/start_stop", {"start_stop": "start"})
    try:
        first, *_, last = jpeg_frames(car, 12)
    finally:
        api.request("POST", "/api/start_stop", {"start_stop": "stop"})
    assert first.shape == (120, 160, 3)
    assert np.abs(first.astype(int) - last.astype(int)).mean() > 1.0


def test_calibration_endpoints_in_deepracer_units(api, car):
    assert refused(api.request("PUT", "/api/adjust_calibrating_wheels/angle", {"pwm": 10}), 409, "calibration mode")
    assert api.request("GET", "/api/set_calibration_mode").body == {"success": True}
    assert api.request("GET", "/api/status").body["mode"] == "calibration"
    assert api.request("GET", "/api/get_calibration/angle").body == {
        "mid": -5.0, "min": -30.0, "max": 20.0, "polarity": 1, "success": True}
    assert api.request("GET", "/api/get_calibration/throttle").body == {
        "mid": -12.0, "min": -42.0, "max": 23.0, "polarity": -1, "success": True}
    assert refused(api.request("GET", "/api/get_calibration/brakes"), 404, "angle or throttle")
    assert api.request("PUT", "/api/adjust_calibrating_wheels/angle", {"pwm": 10}).status == 200
    steering = car.wait_for(lambda: car.driver.log[-1][1], what="a raw steering command")
    assert steering == pytest.approx((1_600_000 - 1_450_000) / (2_500_000 - 1_450_000))
    assert refused(api.request("PUT", "/api/adjust_calibrating_wheels/angle", {"pwm": 150}), 400, "outside")
    assert refused(api.request("PUT", "/api/set_calibration/angle",
                               {"mid": 10, "min": 20, "max": 30, "polarity": 1}), 400, "below mid")
    assert refused(api.request("PUT", "/api/set_calibration/angle",
                               {"mid": 0, "min": -20, "max": 20, "polarity": 2}), 400, "polarity")
    assert api.request("PUT", "/api/set_calibration/angle",
                       {"mid": -3, "min": -28, "max": 22, "polarity": -1}).status == 200
    saved = servo.load(car.state.calibration)
    assert saved.servo == servo.PulseRange(min=1_220_000, mid=1_470_000, max=1_720_000, polarity=-1)
    assert saved.motor == servo.FACTORY_DEFAULT.motor
    assert api.request("GET", "/api/get_calibration/angle").body["mid"] == -3.0
    assert api.request("POST", "/api/drive_mode", {"drive_mode": "manual"}).status == 200
    assert api.request("GET", "/api/status").body["mode"] == "manual"


class PulseRecorder(PulseDriver):
    """A pulse driver whose 'hardware' records the pulse widths it is given."""

    def __init__(self, calibration):
        self.writes: list[tuple[int, int]] = []
        super().__init__(calibration, "recorder")

    def _connect(self) -> None:
        pass

    def _write(self, motor_ns: int, servo_ns: int) -> None:
        self.writes.append((motor_ns, servo_ns))

    def _disable(self) -> None:
        pass

    def _disconnect(self) -> None:
        pass


def test_calibration_reaches_a_pulse_driver_exactly(tmp_path):
    driver = PulseRecorder(servo.FACTORY_DEFAULT)
    spec = PreprocessSpec(width=16, height=12, layout="NCHW", scale=1 / 255)
    meta = parse_metadata({"action_space": [{"steering_angle": 0, "speed": 1.0}]})
    # stepped by hand: each request is answered before `ask` returns
    graph = CarGraph(SimClock(), None, driver, PolicyModel(lambda x: np.ones(1, np.float32), spec, meta))
    service = CalibrationService(ConsoleNode(graph.bus, graph.clock, CarConfig(), "m"), tmp_path / "calibration.json")
    service.enter()
    for ui, pulse in ((-40, 1_100_000), (25, 1_750_000), (-5, 1_450_000)):
        service.adjust("angle", {"pwm": ui})
        assert driver.writes[-1] == (servo.FACTORY_DEFAULT.motor.mid, pulse)
    service.adjust("throttle", {"pwm": 30})
    assert driver.writes[-1] == (1_635_000, 1_450_000)
    with pytest.raises(ApiError, match="pwm must be "):
        service.adjust("throttle", {"pwm": float("nan")})
    service.set("angle", {"mid": 0, "min": -25, "max": 25, "polarity": 1})
    assert driver.writes[-1] == (servo.FACTORY_DEFAULT.motor.mid, 1_500_000)  # the new centre, held at neutral
    service.adjust("angle", {"pwm": 100})  # the wizard's raw range again, around the new centre
    assert driver.calibration.servo.max == servo.MAX_PULSE_NS and driver.writes[-1][1] == 2_500_000
    with pytest.raises(ApiError, match="outside the wizard's 1196000..1696000 ns"):
        service.adjust("throttle", {"pwm": 222})  # the 2.5 ms ESC pulse
    with pytest.raises(ApiError, match="pwm must be "):
        service.adjust("throttle", {"pwm": 10 ** 400})
    assert graph.control.request("set_mode", "manual") == "ok"
    assert driver.calibration == service.saved == servo.load(tmp_path / "calibration.json")
    assert service.saved.servo == servo.PulseRange(min=1_250_000, mid=1_500_000, max=1_750_000, polarity=1)
    driver.set(1.0, 0.0)
    assert driver.writes[-1] == (servo.FACTORY_DEFAULT.motor.mid, 1_750_000)
