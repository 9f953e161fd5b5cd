"""The console under a flood, timed at the car's outputs: `safety.flood_neutral_ms` and `safety.flood_estop_ms`.

One scenario, run by `racer bench` (on the simulated car) and by the test suite (on `racer car` with
a Maestro emulator): a teleop client drives in manual mode; `connections` idle TCP connections and
a burst of `logins` concurrent logins hit the console; the client goes silent, and the time from
its last command to neutral at the outputs is measured; it drives again and sends an emergency
stop on its open socket, and the time from the stop to neutral is measured. Everything stays on
loopback.
"""
from __future__ import annotations

import json
import resource
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from car.console.client import CarClient

DRIVE = {"steering": 0.5, "throttle": 0.8}
SEND_PERIOD_S = 0.05
POLL_S = 0.001


@dataclass(frozen=True)
class FloodResult:
    neutral_ms: float
    estop_ms: float
    connections_opened: int
    logins_refused: int

    def to_json(self) -> dict[str, Any]:
        return {"flood_neutral_ms": round(self.neutral_ms, 1), "flood_estop_ms": round(self.estop_ms, 1),
                "flood_connections": self.connections_opened, "flood_logins_refused": self.logins_refused}


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll until `predicate`; the monotonic time it first held. RuntimeError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(POLL_S)
    raise RuntimeError(f"flood scenario: timed out waiting for {what}")


def _drive(ws: Any, seconds: float) -> float:
    """The stick at rest once (re-arms a latched car), then DRIVE at 20 Hz; the time of the last send."""
    ws.send(json.dumps({"steering": 0, "throttle": 0}))
    end = time.monotonic() + seconds
    last = time.monotonic()
    while time.monotonic() < end:
        ws.send(json.dumps(DRIVE))
        last = time.monotonic()
        time.sleep(SEND_PERIOD_S)
    return last


def _drive_again(ws: Any, driving: Callable[[], bool], tries: int = 5) -> None:
    """Re-arm and drive until the outputs move: on a loaded machine a latch for the silence just
    measured (the console's deadman, control's own timeout) can land after the first re-arm."""
    for _ in range(tries):
        _drive(ws, 0.3)
        try:
            _wait(driving, 1.0, "the car to drive again")
            return
        except RuntimeError:
            continue
    raise RuntimeError("flood scenario: the car did not drive again after the stick was let go")


def _idle_connections(host: str, port: int, count: int) -> list[socket.socket]:
    """Open up to `count` connections that never send a byte (the console may refuse or close them)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 256), hard))
    sockets = []
    for _ in range(count):
        try:
            sockets.append(socket.create_connection((host, port), timeout=1.0))
        except OSError:
            break  # the backlog is full: the console is refusing, which is the point
    return sockets


def _login_burst(url: str, count: int, password: str) -> tuple[list[threading.Thread], list[int]]:
    """`count` concurrent browser-style logins: the threads, and a list that gets one entry per refusal."""
    import http.client
    from urllib.parse import urlencode, urlsplit

    parts = urlsplit(url)
    refused: list[int] = []

    def login() -> None:
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            conn.request("POST", "/login", urlencode({"password": password}),
                         {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
            if conn.getresponse().status != 200:
                refused.append(1)
            conn.close()
        except OSError:
            refused.append(1)

    threads = [threading.Thread(target=login, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, refused


def run_flood(client: CarClient, url: str, password: str, driving: Callable[[], bool],
              connections: int = 1000, logins: int = 45) -> FloodResult:
    """The scenario against the console at `url`; `driving()` reads the car's outputs (True = not neutral)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    client.request("POST", "/api/drive_mode", {"drive_mode": "manual"})
    with client.websocket("/api/teleop") as ws:
        ws.recv(timeout=5)
        _drive(ws, 0.3)
        _wait(driving, 5.0, "the car to drive before the flood")
        idle = _idle_connections(parts.hostname, parts.port, connections)
        burst, refused = _login_burst(url, logins, password)
        try:
            last = _drive(ws, 0.3)
            neutral = _wait(lambda: not driving(), 5.0, "neutral after the driver went silent")
            _drive_again(ws, driving)
            sent = time.monotonic()
            ws.send(json.dumps({"estop": True}))
            stopped = _wait(lambda: not driving(), 5.0, "neutral after the emergency stop")
        finally:
            for s in idle:
                s.close()
            for thread in burst:
                thread.join(timeout=10)
    client.request("POST", "/api/start_stop", {"start_stop": "start"})  # release the e-stop for whoever is next
    return FloodResult((neutral - last) * 1000.0, (stopped - sent) * 1000.0, len(idle), len(refused))


def bench_flood(model_path: Any) -> dict[str, Any]:
    """The scenario on the simulated car with its console on loopback (bench figures)."""
    import tempfile
    from pathlib import Path

    from calibration import servo
    from car.console.auth import set_password
    from car.console.client import CarAddress, KnownCars
    from car.console.server import ConsoleOptions, start_console
    from car.console.state import StateDir
    from car.policy.bundle import load_bundle
    from car.policy.inference import Policy
    from racer.processes.local import sim_car
    from sim2real.sim.track import Track

    class Outputs:
        """The simulated car's actuator driver, remembering the last command."""

        def __init__(self, driver: Any) -> None:
            self.driver, self.command = driver, (0.0, 0.0)

        def set(self, steering: float, throttle: float) -> None:
            self.driver.set(steering, throttle)
            self.command = (steering, throttle)

        def neutral(self) -> None:
            self.driver.neutral()
            self.command = (0.0, 0.0)

        def close(self) -> None:
            self.neutral()

    password = "bench-flood-password"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundle = load_bundle(model_path)
        outputs: list[Outputs] = []

        def record(driver: Any) -> Outputs:
            outputs.append(Outputs(driver))
            return outputs[0]

        car = sim_car(Track.load("reinvent_base"), Policy(bundle, root / "cache").model(), {}, bundle.name,
                      wrap_driver=record)
        state = StateDir(root / "state")
        set_password(state, password)
        server = start_console(ConsoleOptions("127.0.0.1", 0, state.root, advertise=False), car.bus, car.graph.clock,
                               {}, bundle.name, servo)
        car.closers.append(server.stop)
        car.start()
        try:
            client = CarClient(CarAddress.parse(server.url), lambda: password, lambda _: None,
                               KnownCars(root / "cars.json"))
            return run_flood(client, server.url, password, lambda: outputs[0].command != (0.0, 0.0)).to_json()
        finally:
            car.stop()
