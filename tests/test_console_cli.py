"""`racer car --console`, and the laptop tools (status, upload, teleop, calibrate) run as processes."""
from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from browser.harness import CURVES, PASSWORD, STRAIGHT, car_fixture, racer_bundle
from car.actuators import calibration as servo
from car.console.mdns import service_info
from car.policy.bundle import pack_bundle
from racer.laptop.client import CarAddress, CarClient, KnownCars
from racer.laptop.discovery import car_from_info

REPO = Path(__file__).resolve().parents[1]
TOOLS = ("import argparse, sys; from racer.commands import console; parser = argparse.ArgumentParser(); "
         "sub = parser.add_subparsers(); console.register(sub); "
         "console.add_car_calibration(sub.add_parser('calibrate')); args = parser.parse_args(); "
         "sys.exit(args.func(args))")


def tool(config: Path, *argv: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "RACER_CONFIG_DIR": str(config)}
    return subprocess.run([sys.executable, "-c", TOOLS, *argv], input=stdin, capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stderr_lines(process: subprocess.Popen) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()
    stderr = process.stderr
    assert stderr is not None

    def read() -> None:
        for line in stderr:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_for_line(lines: queue.Queue[str], needle: str, timeout: float = 60) -> tuple[str, list[str]]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if needle in line:
            return line, seen
    raise AssertionError(f"no {needle!r} in {seen}")


def run_car(state: Path, model: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "racer.cli", "car", "--sim", "reinvent_base", "--model", str(model),
                             "--console", f"127.0.0.1:{port}", "--state-dir", str(state)],
                            cwd=REPO, stderr=subprocess.PIPE, text=True)


def test_racer_car_writes_a_generated_password_to_a_private_file_and_prints_only_its_path(tmp_path):
    model = racer_bundle(tmp_path / "models", "driving", STRAIGHT)
    state, port = tmp_path / "state", free_port()
    car = run_car(state, model, port)
    try:
        lines = stderr_lines(car)
        line, before = wait_for_line(lines, "first password was generated")
        path = state / "console" / "first-password"
        assert str(path) in line and path.stat().st_mode & 0o777 == 0o600
        password = path.read_text().strip()
        _, after = wait_for_line(lines, "model driving")
        assert not any(password in text for text in [*before, line, *after])  # the journal never sees it
        client = CarClient(CarAddress.parse(f"127.0.0.1:{port}"), lambda: password, print,
                           KnownCars(tmp_path / "cars.json"))
        status = client.request("GET", "/api/status")
        assert status.status == 200 and status.body["model"] == "driving"
        assert password not in (state / "console" / "password").read_text()
    finally:
        car.send_signal(signal.SIGTERM)
        assert car.wait(timeout=30) == 0
    again = run_car(state, model, port)
    try:
        _, seen = wait_for_line(stderr_lines(again), "console on")
        assert not any("password" in line for line in seen)
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0


def test_racer_car_refuses_a_bad_console_address(tmp_path):
    model = racer_bundle(tmp_path / "models", "driving", STRAIGHT)
    result = subprocess.run([sys.executable, "-m", "racer.cli", "car", "--sim", "reinvent_base", "--model",
                             str(model), "--console", "nowhere", "--state-dir", str(tmp_path / "s")],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "expected HOST:PORT" in result.stderr


car = car_fixture("cli")


@contextlib.contextmanager
def teleop_held(car):
    """A driver holding the wheel (a command every 30 ms, inside the 250 ms deadman) for the block's length.
    At zero throttle, so a command that comes late on a busy machine re-arms instead of staying latched."""
    client, done = car.client(), threading.Event()
    client.request("POST", "/api/drive_mode", {"drive_mode": "manual"})

    def hold() -> None:
        while not done.wait(0.03):
            client.request("POST", "/api/manual_drive", {"angle": 0.5, "throttle": 0.0, "max_speed": 0.5})

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        car.wait_for(lambda: car.status()["driven_by"] == "teleop", what="teleop driving")
        yield
    finally:
        done.set()
        holder.join()
        client.request("POST", "/api/manual_drive", {"angle": 0.0, "throttle": 0.0, "max_speed": 0.5})


def test_status_upload_and_teleop_tools(car):
    root = car.state.root.parent
    laptop = root / "laptop-tools"
    refused = tool(laptop, "status", "--car", car.url)
    assert refused.returncode == 1 and "--password-stdin" in refused.stderr
    result = tool(laptop, "status", "--car", car.url, "--password-stdin", "--json", stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "driving"
    assert "racer_" in (laptop / "cars.json").read_text()
    human = tool(laptop, "status", "--car", car.url)
    assert human.returncode == 0 and "model     driving" in human.stdout
    assert "caution" not in human.stdout  # the model asks for none
    assert "mode      manual (waiting for teleop), max speed 0.50" in human.stdout
    with teleop_held(car):
        human = tool(laptop, "status", "--car", car.url)
    assert "mode      manual (driven by teleop), max speed 0.50" in human.stdout, human.stdout

    bundle = racer_bundle(root / "work", "curves", CURVES)
    result = tool(laptop, "upload", str(pack_bundle(bundle, root / "packed.tar.gz")), "--car", car.url, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"model": "packed", "installed": True, "loaded": True}
    assert car.status()["model"] == "packed"
    result = tool(laptop, "upload", str(bundle), "--car", car.url, "--no-load", "--json")
    assert json.loads(result.stdout) == {"model": "curves", "installed": True, "loaded": False}
    assert car.status()["model"] == "packed"
    broken = root / "broken.tar.gz"
    broken.write_bytes(b"not an archive")
    result = tool(laptop, "upload", str(broken), "--car", car.url)
    assert result.returncode == 1 and "not a .tar.gz archive (no gzip header) (HTTP 422)" in result.stderr
    human = tool(laptop, "status", "--car", car.url)  # the failed upload is not blamed on the loaded model
    assert "model     packed\n" in human.stdout, human.stdout
    assert "install of broken: failed: not a .tar.gz archive" in human.stdout


    # teleop needs a terminal: tests/test_teleop_keys.py drives it on a pty


def test_calibrate_tool_walks_both_outputs_and_saves(car):
    root = car.state.root.parent
    laptop = root / "laptop-calibrate"
    answers = "\n".join([PASSWORD, "", "22", "", "", "", "", ""]) + "\n"
    result = tool(laptop, "calibrate", "--car", car.url, "--password-stdin", stdin=answers)
    assert result.returncode == 0, result.stderr
    saved = servo.load(car.state.calibration)
    assert saved.servo == servo.PulseRange(min=1_200_000, mid=1_450_000, max=1_720_000, polarity=1)
    assert saved.motor == servo.FACTORY_DEFAULT.motor
    assert car.status()["mode"] == "manual"
    result = tool(laptop, "calibrate")
    assert result.returncode == 2 and "racer calibrate camera" in result.stderr


def test_calibrate_tool_says_why_a_value_is_refused_and_saves_nothing_when_input_ends(car):
    root = car.state.root.parent
    before = car.state.calibration.read_bytes() if car.state.calibration.exists() else None
    # centre accepted; full left far beyond the wizard's band (the car refuses it); then the input ends
    answers = "\n".join([PASSWORD, "", "99999"]) + "\n"
    result = tool(root / "laptop-refused", "calibrate", "--car", car.url, "--password-stdin", stdin=answers)
    assert result.returncode == 1
    assert "  refused: pwm 99999.0 is a " in result.stderr and "(HTTP 400)" in result.stderr, result.stderr
    assert result.stderr.count("  full left [") == 2  # asked again, at the last value the car took
    assert result.stderr.endswith("racer calibrate: input ended; values not saved yet were left as they were\n")
    assert (car.state.calibration.read_bytes() if car.state.calibration.exists() else None) == before
    assert car.status()["mode"] == "manual"


@pytest.mark.parametrize("command", ["status", "upload", "calibrate"])
def test_plain_http_to_a_car_off_this_machine_is_one_line_and_sends_nothing(tmp_path, command):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"never sent")
    argv = [command, str(archive)] if command == "upload" else [command]
    result = subprocess.run([sys.executable, "-m", "racer.cli", *argv, "--car", "http://192.0.2.7:8080"],
                            capture_output=True, text=True, cwd=REPO, timeout=60,
                            env={**os.environ, "RACER_CONFIG_DIR": str(tmp_path / "config")})
    assert result.returncode == 1
    assert result.stderr == (f"racer {command}: --car 'http://192.0.2.7:8080': plain HTTP would send the password "
                             "and token in the clear; use https://192.0.2.7:8080 (cars off this machine serve HTTPS)\n")
    assert not (tmp_path / "config").exists()


def test_mdns_record_carries_scheme_fingerprint_and_no_loopback_address():
    info = service_info("0.0.0.0", 8443, "https", "AB:CD")
    car = car_from_info(info)
    assert (car.port, car.fingerprint) == (8443, "AB:CD")
    assert not any(address.startswith("127.") for address in car.addresses)
    assert car_from_info(service_info("192.0.2.7", 443, "https", "")).url == "https://192.0.2.7:443"
    # the record's scheme is unauthenticated: a spoofed "http" never downgrades the tools
    assert car_from_info(service_info("192.0.2.7", 8080, "http", "")).url == "https://192.0.2.7:8080"
