"""The console under a flood, timed at the car's outputs: `safety.flood_neutral_ms` and `safety.flood_estop_ms`;
and the console process killed while the car drives: `safety.console_kill_neutral_ms`.

One scenario, run by `racer bench` (on the simulated car) and by the test suite (on `racer car` with
a Maestro emulator): a teleop client drives in manual mode; `connections` idle TCP connections and
a burst of `logins` concurrent logins hit the console; the client goes silent, and the time from
its last command to neutral at the outputs is measured; it drives again and sends an emergency
stop on its open socket, and the time from the stop to neutral is measured. Where the console is a
process of its own (`dds`, `ros`), the car then drives autonomously, the console is killed with
SIGKILL, and the time from the kill to neutral is measured (README: within 250 ms). Everything stays
on loopback.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from car.config import CarConfig
from car.console.state import StateDir
from racer.laptop.client import CarClient

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


def _drive_again(ws: Any, driving: Callable[[], bool], tries: int = 10) -> None:
    """Re-arm and drive until the outputs move: on a loaded machine a latch for the silence just
    measured (the console's deadman, control's own timeout) can land after the first re-arm, and
    across processes the first commands can go out before discovery matched the console to control."""
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
    host, port = parts.hostname, parts.port
    assert host is not None and port is not None  # the car's URL: http://HOST:PORT
    refused: list[int] = []

    def login() -> None:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=10)
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
    assert parts.hostname is not None and parts.port is not None  # the car's URL: http://HOST:PORT
    client.request("POST", "/api/drive_mode", {"drive_mode": "manual"})
    with client.websocket("/api/teleop") as ws:
        ws.recv(timeout=5)
        _drive_again(ws, driving)  # across processes the first commands may go out before discovery matched
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


def console_kill_ms(client: CarClient, driving: Callable[[], bool], console_pid: Callable[[], int]) -> float:
    """Start the car in autonomous mode, SIGKILL the console process while it drives: ms to neutral at the outputs."""
    client.request("POST", "/api/drive_mode", {"drive_mode": "auto"})
    client.request("POST", "/api/start_stop", {"start_stop": "start"})
    _wait(driving, 30.0, "the car to drive autonomously")
    pid = console_pid()
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    return (_wait(lambda: not driving(), 5.0, "neutral after the console was killed") - killed) * 1000.0


FLOOD_KEYS = ("flood_neutral_ms", "flood_estop_ms", "flood_connections", "flood_logins_refused")
KILL_KEY = "console_kill_neutral_ms"
PASSWORD = "bench-flood-password"
CAR_START_S = 120.0


@contextlib.contextmanager
def _local_car(model_path: Path, state: StateDir, on_servo: Callable[[Any], None]) -> Iterator[str]:
    """`racer car --transport local --sim --console`, in this process; the console's URL."""
    from car.console.server import ConsoleOptions, start_console
    from car.policy.bundle import load_bundle
    from car.policy.inference import Policy
    from car.transport.wire import SIM_SERVO_TOPIC
    from racer.processes.local import sim_car
    from sim2real.sim.track import Track

    bundle = load_bundle(model_path)
    car = sim_car(Track.load("reinvent_base"), Policy(bundle, state.cache).model(), CarConfig(), bundle.name)
    car.bus.subscribe(SIM_SERVO_TOPIC, on_servo)
    server = start_console(ConsoleOptions("127.0.0.1", 0, state.root, advertise=False), car.bus, car.graph.clock,
                           CarConfig(), bundle.name)
    car.closers.append(server.stop)
    # The flood's refused logins and the latches it causes are the scenario, not news: the car's
    # warnings stay off stderr, as the dds and ros cars' do (their output goes to /dev/null).
    car_log = logging.getLogger("racer")  # the car's loggers: racer.console, racer.node, ...
    level = car_log.level
    car_log.setLevel(logging.ERROR)
    car.start()
    try:
        yield server.url
    finally:
        car.stop()
        car_log.setLevel(level)


@contextlib.contextmanager
def _graph_car(model_path: Path, transport: str, state: StateDir, on_servo: Callable[[Any], None],
               on_diagnostics: Callable[[Any], None]) -> Iterator[str]:
    """`racer car --transport dds|ros --sim --console` as processes on a private loopback domain, and a node here
    that watches /sim/servo and /diagnostics; the console's URL."""
    import sys

    from car.messages import DIAGNOSTICS_TOPIC
    from car.transport import open_bus
    from car.transport.wire import SIM_SERVO_TOPIC
    from racer.bench.dds import _child_env, _private_domain, _processes

    domain = _private_domain()
    bus = open_bus(transport, "bench_flood", domain=domain)
    bus.subscribe(SIM_SERVO_TOPIC, on_servo)
    bus.subscribe(DIAGNOSTICS_TOPIC, on_diagnostics)
    spinner = threading.Thread(target=bus.spin, daemon=True)
    spinner.start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "racer.cli", "car", "--transport", transport, "--sim", "reinvent_base",
            "--model", str(model_path), "--console", f"127.0.0.1:{port}", "--state-dir", str(state.root)]
    try:
        with _processes([argv], _child_env(domain)):
            yield f"http://127.0.0.1:{port}"
    finally:
        bus.stop()
        spinner.join(timeout=5)
        bus.close()


def _answering(client: CarClient) -> bool:
    from racer.laptop.client import ClientError
    try:
        return client.request("GET", "/api/status").body.get("mode") is not None
    except ClientError:
        return False


def bench_flood(model_path: Path, transport: str = "local") -> dict[str, Any]:
    """The scenario on the simulated car (`racer car --sim --console` on `transport`), its outputs read on
    /sim/servo; RosUnavailable for `ros` without rclpy."""
    import tempfile

    from car.console.auth import set_password
    from car.console.state import StateDir
    from racer.laptop.client import CarAddress, KnownCars

    sent = {"throttle": 0.0, "count": 0}
    console = {"pid": 0}  # the console process as the supervisor last reported it running

    def on_servo(msg: Any) -> None:
        sent["throttle"], sent["count"] = msg.throttle, sent["count"] + 1

    def driving() -> bool:
        return sent["throttle"] != 0.0

    def on_diagnostics(msg: Any) -> None:
        for status in msg.status:
            pid = status.value("pid")
            if status.name == "supervisor/console" and status.message == "running" and pid:
                console["pid"] = int(pid)

    with tempfile.TemporaryDirectory() as tmp:
        state = StateDir(Path(tmp) / "state").create()
        set_password(state, PASSWORD)
        car = _local_car(model_path, state, on_servo) if transport == "local" else \
            _graph_car(model_path, transport, state, on_servo, on_diagnostics)
        with car as url:
            client = CarClient(CarAddress.parse(url), lambda: PASSWORD, lambda _: None,
                               KnownCars(Path(tmp) / "cars.json"))
            _wait(lambda: sent["count"] > 0 and _answering(client), CAR_START_S,
                  f"the car and its console on {transport}")
            figures = run_flood(client, url, PASSWORD, driving).to_json()
            if transport != "local":
                _wait(lambda: console["pid"] > 0, CAR_START_S, "the supervisor's report of the console")
                figures[KILL_KEY] = round(console_kill_ms(client, driving, lambda: console["pid"]), 1)
            return figures


def bench_safety(model_path: Path) -> dict[str, Any]:
    """`safety`: each flood figure per transport, `{"flood_neutral_ms": {"local": ..., "dds": ..., "ros": ...}, ...}`,
    and `console_kill_neutral_ms` on the transports where the console is a process (`dds`, `ros`);
    a transport that cannot run (no rclpy) is in `unavailable` with the reason."""
    from car.transport.ros import RosUnavailable

    report: dict[str, Any] = {key: {} for key in FLOOD_KEYS}
    for transport in ("local", "dds", "ros"):
        try:
            figures = bench_flood(model_path, transport)
        except RosUnavailable as exc:
            report.setdefault("unavailable", {})[transport] = str(exc)
            continue
        for key in FLOOD_KEYS:
            report[key][transport] = figures[key]
        if KILL_KEY in figures:
            report.setdefault(KILL_KEY, {})[transport] = figures[KILL_KEY]
    return report
