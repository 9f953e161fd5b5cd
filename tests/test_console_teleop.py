"""Teleop over the console's WebSocket: it drives, and a vanished driver leaves the car at neutral
within 250 ms, measured on the actuator's own record of the commands it was sent."""
from __future__ import annotations

import json
import re
import socket
import time

import pytest

from browser.harness import Car, car_fixture
from car.console.teleop import parse_teleop_message

DEADLINE_S = 0.25


car = car_fixture("teleop")


def drive(car: Car, ws, seconds: float, steering: float = 0.25, throttle: float = 1.0, rearm: bool = True) -> float:
    """The stick at rest until the car is not latched (an earlier test's client may still be closing),
    then commands at 20 Hz; the time of the last one."""
    def rested() -> bool:
        ws.send(json.dumps({"steering": 0, "throttle": 0}))
        return car.status()["latched"] is None

    if rearm:
        car.wait_for(rested, what="the stick at rest to re-arm the car")
    end = time.monotonic() + seconds
    last = 0.0
    while time.monotonic() < end:
        ws.send(json.dumps({"steering": steering, "throttle": throttle}))
        last = time.monotonic()
        time.sleep(0.05)
    return last


def neutral_after(car: Car, since: float) -> float:
    """Seconds from `since` to the first neutral command, checking the car stays there after it."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        log = [entry for entry in car.driver.log if entry[0] >= since]
        first = next((i for i, (_, s, t) in enumerate(log) if s == 0.0 and t == 0.0), None)
        if first is not None and log[-1][0] - log[first][0] > 0.3:
            assert all(s == 0.0 and t == 0.0 for _, s, t in log[first:]), log[first:]
            return log[first][0] - since
        time.sleep(0.05)
    raise AssertionError("the car never reached neutral")


def manual(car: Car) -> None:
    assert car.client().request("POST", "/api/drive_mode", {"drive_mode": "manual"}).status == 200


def test_teleop_drives_the_car(car):
    manual(car)
    with car.client().websocket("/api/teleop") as ws:
        assert json.loads(ws.recv(timeout=5)) == {"type": "hello", "deadman_ms": 180}
        start = time.monotonic()
        drive(car, ws, 0.6, steering=0.5, throttle=1.0)
        moving = [(s, t) for when, s, t in car.driver.log if when > start]
        assert (pytest.approx(0.5), pytest.approx(0.5)) in moving  # throttle 1.0 x max speed 0.5
        assert car.status()["command"] == {"steering": 0.5, "throttle": 0.5}


def test_a_client_that_vanishes_leaves_the_car_at_neutral_within_250_ms(car):
    manual(car)
    with car.client().websocket("/api/teleop") as ws:
        ws.recv(timeout=5)
        drive(car, ws, 0.5)
        assert car.driver.log[-1][2] > 0
        vanished = time.monotonic()
        ws.socket.shutdown(socket.SHUT_RDWR)
        ws.socket.close()
        assert neutral_after(car, vanished) <= DEADLINE_S


def test_a_client_that_goes_silent_leaves_the_car_at_neutral_within_250_ms(car):
    manual(car)
    with car.client().websocket("/api/teleop") as ws:
        ws.recv(timeout=5)
        last = drive(car, ws, 0.5)
        assert neutral_after(car, last) <= DEADLINE_S
        assert json.loads(ws.recv(timeout=2))["type"] == "deadman"


def test_estop_over_the_socket_latches_and_bad_messages_stop_the_car(car):
    manual(car)
    client = car.client()
    with client.websocket("/api/teleop") as ws:
        ws.recv(timeout=5)
        drive(car, ws, 0.3)
        sent = time.monotonic()
        ws.send("not json")
        answer = json.loads(ws.recv(timeout=2))
        assert answer["type"] == "error" and answer["reason"].startswith("a teleop message must be a JSON object")
        assert neutral_after(car, sent) <= DEADLINE_S
        ws.send(json.dumps({"estop": True}))
        assert json.loads(ws.recv(timeout=2)) == {"type": "estop"}
        assert car.status()["emergency_stop"] is True
        ws.send(json.dumps({"steering": 0, "throttle": 0}))  # letting go of the stick does not clear an e-stop
        drive(car, ws, 0.3, rearm=False)
        assert car.driver.log[-1][1:] == (0.0, 0.0)
        assert car.status()["latched"] == "emergency stop" and car.status()["start_needed"] is True
    client.request("POST", "/api/start_stop", {"start_stop": "start"})
    assert car.status()["emergency_stop"] is False


def test_teleop_is_refused_outside_manual_mode(car):
    client = car.client()
    client.request("POST", "/api/drive_mode", {"drive_mode": "auto"})
    with client.websocket("/api/teleop") as ws:
        ws.recv(timeout=5)
        ws.send(json.dumps({"steering": 0.0, "throttle": 1.0}))
        assert "manual mode" in json.loads(ws.recv(timeout=2))["reason"]
    manual(car)


@pytest.mark.parametrize("text, reason", [
    ('{"steering": 2, "throttle": 0}', "steering must be within -1..1, got 2"),
    ('{"steering": 0, "throttle": NaN}', "a teleop message must be a JSON object ('NaN is not a JSON number')"),
    ('{"steering": 0, "throttle": 1e999}', "throttle must be within -1..1, got inf"),
    ('{"steering": true, "throttle": 0}', "steering must be a number"),
    ("[1, 2]", "a teleop message must be a JSON object"),
])
def test_teleop_messages_are_checked(text, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_teleop_message(text)
    assert parse_teleop_message('{"steering": -1, "throttle": 0.5}') == {"steering": -1.0, "throttle": 0.5}
    assert parse_teleop_message('{"estop": true}') == {"estop": True}
