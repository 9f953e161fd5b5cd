"""The safety issue's console cases on a car whose outputs are a Maestro (bytes on a real pty), through
real HTTP: the calibration/manual mode race, the wizard's raw pulses, and the two speed limits."""
from __future__ import annotations

import threading

import pytest

from car.actuators import calibration as servo
from car.actuators.maestro import MaestroDriver
from car.camera.capture import open_camera
from car.config import CarConfig
from car.console.auth import set_password
from car.console.server import ConsoleOptions, start_console
from car.console.state import StateDir
from car.policy.bundle import load_bundle
from car.policy.inference import Policy
from racer.laptop.client import CarAddress, CarClient, KnownCars
from test_failsafe import NEUTRAL, Car, bundle_dir, images, maestro, wait_until  # noqa: F401  (fixtures)

PASSWORD = "safety-console-test"
FACTORY = servo.FACTORY_DEFAULT


def quarter_us(ns: int) -> int:
    return round(ns / 250)


@pytest.fixture
def car(tmp_path, bundle_dir, images, maestro):
    bundle = load_bundle(bundle_dir)
    camera = open_camera(f"images:{images}", fps=15)
    runtime = Car(camera, MaestroDriver(FACTORY, str(maestro.link)), Policy(bundle).model())
    state = StateDir(tmp_path / "state")
    set_password(state, PASSWORD)
    server = start_console(ConsoleOptions("127.0.0.1", 0, state.root, advertise=False), runtime.local.bus,
                           runtime.graph.clock, CarConfig(), bundle.name)
    runtime.local.closers.append(server.stop)
    runtime.local.start()
    client = CarClient(CarAddress.parse(server.url), lambda: PASSWORD, lambda _: None,
                       KnownCars(tmp_path / "cars.json"))
    assert wait_until(lambda: server.console.service.node.mode is not None)
    yield runtime, client
    runtime.stop()


def test_a_mode_race_never_leaves_the_raw_mapping_on_a_manual_command(car, maestro):
    """Issue case 3: set_calibration_mode and drive_mode manual at the same moment, many times."""
    runtime, client = car
    servo_max, motor_forward = quarter_us(FACTORY.servo.max), quarter_us(FACTORY.motor.min)  # polarity -1
    for attempt in range(60):
        barrier = threading.Barrier(2)
        answers = []

        def hit(method: str, path: str, body: dict | None) -> None:
            # the threads are joined within this iteration, so they see its barrier and answers
            barrier.wait()  # noqa: B023
            answers.append(client.request(method, path, body).status)  # noqa: B023

        threads = [threading.Thread(target=hit, args=("POST", "/api/set_calibration_mode", None)),
                   threading.Thread(target=hit, args=("POST", "/api/drive_mode", {"drive_mode": "manual"}))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(answers) == [200, 200]
        if client.request("GET", "/api/status").body["mode"] == "manual":  # the race ended in manual mode
            # full left, full forward (DeepRacer manual_drive: angle - = left, throttle - = forward)
            drive = {"angle": -1, "throttle": -1, "max_speed": 1.0}
            assert client.request("POST", "/api/manual_drive", drive).status == 200
            assert wait_until(lambda: maestro.positions[1] != NEUTRAL[1], 2.0), attempt
            assert maestro.positions[1] == servo_max, attempt  # 1.7 ms, never the raw 2.5 ms
            assert maestro.positions[0] == motor_forward, attempt  # forward through the car's polarity
            assert wait_until(lambda: maestro.positions[:2] == [NEUTRAL[0], NEUTRAL[1]], 2.0)  # the deadman
        else:
            client.request("POST", "/api/drive_mode", {"drive_mode": "manual"})


def test_the_wizards_raw_pulse_lasts_one_deadman_and_stays_in_its_band(car, maestro):
    """Issue case 4: one adjust and then silence; and the 2.5 ms ESC pulse of the report."""
    runtime, client = car
    client.request("POST", "/api/max_nav_throttle", {"throttle": 10})
    assert client.request("POST", "/api/set_calibration_mode").status == 200
    refused = client.request("PUT", "/api/adjust_calibrating_wheels/throttle", {"pwm": 222})
    assert refused.status == 400 and "outside the wizard's 1196000..1696000 ns" in refused.body["reason"]
    assert client.request("PUT", "/api/adjust_calibrating_wheels/throttle", {"pwm": 30}).status == 200
    assert wait_until(lambda: maestro.positions[0] == quarter_us(1_635_000), 2.0)  # 1.5 ms + 30 x 4.5 us
    assert wait_until(lambda: maestro.positions[:2] == [NEUTRAL[0], NEUTRAL[1]], 2.0)  # nobody refreshed it
    # control's status reaches the console with its next diagnostics, up to a period after the outputs
    assert wait_until(lambda: client.request("GET", "/api/status").body["reason"]
                      == "calibration: waiting for a wizard step", 3.0)
    assert client.request("GET", "/api/status").body["mode"] == "calibration"
    client.request("POST", "/api/drive_mode", {"drive_mode": "manual"})
    assert client.request("PUT", "/api/adjust_calibrating_wheels/throttle", {"pwm": 30}).status == 409


def test_calibration_mode_is_entered_only_from_stopped(car, maestro):
    runtime, client = car
    client.request("POST", "/api/drive_mode", {"drive_mode": "auto"})
    client.request("POST", "/api/start_stop", {"start_stop": "start"})
    assert wait_until(lambda: maestro.positions[0] not in (0, NEUTRAL[0]), 5.0)
    refused = client.request("POST", "/api/set_calibration_mode")
    assert refused.status == 409 and "stop the car before calibrating" in refused.body["reason"]
    assert client.request("GET", "/api/status").body["mode"] == "autonomous"
    client.request("POST", "/api/start_stop", {"start_stop": "stop"})
    assert client.request("POST", "/api/set_calibration_mode").status == 200


def test_the_manual_speed_limit_never_changes_the_autonomous_one(car):
    """Issue case 6."""
    runtime, client = car
    client.request("POST", "/api/max_nav_throttle", {"throttle": 30})
    client.request("POST", "/api/drive_mode", {"drive_mode": "manual"})
    client.request("POST", "/api/start_stop", {"start_stop": "start"})
    client.request("POST", "/api/manual_drive", {"angle": 0, "throttle": -0.3, "max_speed": 1.0})
    client.request("POST", "/api/start_stop", {"start_stop": "stop"})
    client.request("POST", "/api/drive_mode", {"drive_mode": "auto"})
    client.request("POST", "/api/start_stop", {"start_stop": "start"})
    status = client.request("GET", "/api/status").body
    assert status["max_speed"] == pytest.approx(0.3) and status["manual_max_speed"] == pytest.approx(1.0)
    core = runtime.graph.control.core
    assert core.state.max_speed == pytest.approx(0.3)
