"""A simulated car with its console on 127.0.0.1, in the test process: the console tests' rig.

The car is the real graph (the car's nodes and the simulator world node on the in-process bus) with
the real console node and server; the commands the actuator sends the simulated car (/sim/servo) are
recorded with the wall-clock time they were sent, so tests can measure when the car reached neutral
instead of sleeping and hoping.
"""
from __future__ import annotations

import http.client
import json
import re
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from car.config import CarConfig
from car.console.auth import set_password
from car.console.server import ConsoleOptions, ConsoleServer, start_console
from car.console.state import StateDir
from car.console.uploads import UploadLimits
from car.policy.bundle import load_bundle, save_bundle
from car.policy.inference import Policy
from car.policy.preprocess import DEEPRACER_SPEC
from car.transport.wire import SIM_SERVO_TOPIC
from dds_support import wait_for as wait_until
from model_factory import onnx_model
from racer.laptop.client import CarAddress, CarClient, KnownCars
from racer.processes.local import LocalCar, sim_car
from sim2real.sim.track import Track
from sim2real.sim.world import Simulator

PASSWORD = "correct horse battery"
STRAIGHT = [{"steering_angle": 0.0, "speed": 1.0}, {"steering_angle": 0.0, "speed": 1.0}]
CURVES = [{"steering_angle": -20.0, "speed": 0.8}, {"steering_angle": 20.0, "speed": 0.8}]
TEST_LIMITS = UploadLimits(request_bytes=4 << 20, unpacked_bytes=16 << 20, members=200)


def racer_bundle(work: Path, name: str, actions: list[dict[str, float]], shape: tuple[int, ...] = (1, 120, 160, 1),
                 outputs: int | None = None) -> Path:
    """A racer bundle directory made with car.policy.bundle.save_bundle from a tiny ONNX policy."""
    work.mkdir(parents=True, exist_ok=True)
    onnx = onnx_model(work / f"{name}.onnx", shape, outputs or len(actions))
    metadata = {"action_space": actions, "action_space_type": "discrete", "training_algorithm": "clipped_ppo",
                "sensor": ["FRONT_FACING_CAMERA"], "version": "5"}
    save_bundle(work / name, onnx, metadata, DEEPRACER_SPEC, cache_dir=work / "cache")
    return work / name


class ServoLog:
    """The commands the actuator node sent the simulated car: (monotonic time, steering, throttle) each."""

    def __init__(self) -> None:
        self.log: list[tuple[float, float, float]] = []

    def on_servo(self, msg) -> None:
        self.log.append((time.monotonic(), msg.angle, msg.throttle))


@dataclass
class Car:
    url: str
    state: StateDir
    local: LocalCar
    sim: Simulator
    driver: ServoLog
    server: ConsoleServer
    config: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def client(self) -> CarClient:
        return CarClient(CarAddress.parse(self.url), lambda: PASSWORD, lambda _: None, KnownCars(self.config))

    def request(self, method: str, path: str, body: bytes | dict | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """A raw HTTP request (no token, no cookie unless given): status, headers, body."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        sent = {"Content-Type": "application/json"} if isinstance(body, dict) else {}
        sent.update(headers or {})
        if self.url.startswith("https"):
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30,
                                               context=ssl._create_unverified_context())
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def login(self) -> tuple[str, str]:
        """A browser-style session: (cookie header value, CSRF token from the page)."""
        status, headers, _ = self.request("POST", "/login", urlencode({"password": PASSWORD}).encode(),
                                          {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 303, status
        cookie = headers["set-cookie"].split(";", 1)[0]
        status, _, page = self.request("GET", "/", headers={"Cookie": cookie, "Accept": "text/html"})
        assert status == 200
        return cookie, re.search(r'name="csrf-token" content="([^"]+)"', page.decode()).group(1)

    def status(self) -> dict[str, Any]:
        return self.client().request("GET", "/api/status").body

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "condition") -> Any:
        return wait_until(predicate, timeout, what)

    def stop(self) -> None:
        self.local.stop()


def start_car(root: Path, model: Path, limits: UploadLimits = TEST_LIMITS, tls: bool = False) -> Car:
    """The car on reinvent_base driving `model`, its console on a free loopback port."""
    bundle = load_bundle(model)
    policy = Policy(bundle, root / "cache")
    local = sim_car(Track.load("reinvent_base"), policy.model(), CarConfig(), bundle.name)
    servo_log = ServoLog()
    local.bus.subscribe(SIM_SERVO_TOPIC, servo_log.on_servo)
    state = StateDir(root / "state")
    set_password(state, PASSWORD)
    options = ConsoleOptions("127.0.0.1", 0, state.root, limits=limits, tls=tls, startup_model=model)
    server = start_console(options, local.bus, local.graph.clock, CarConfig(), bundle.name)
    local.closers.append(server.stop)
    local.start()
    car = Car(server.url, state, local, local.world.sim, servo_log, server, root / "laptop" / "cars.json")
    node = car.server.console.service.node
    car.wait_for(lambda: node.mode is not None and "policy" in node.diagnostics,
                 what="control's and the policy's first status")
    return car


def car_fixture(name: str):
    """A module-scoped pytest fixture: a car driving a straight-ahead model, stopped after the module."""

    @pytest.fixture(scope="module")
    def car(tmp_path_factory: pytest.TempPathFactory):
        root = tmp_path_factory.mktemp(name)
        car = start_car(root, racer_bundle(root / "models", "driving", STRAIGHT))
        yield car
        car.stop()

    return car
