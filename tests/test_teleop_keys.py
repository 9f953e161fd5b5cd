"""`racer teleop` on a real terminal (a pty), as a user at the keyboard: a key acts only while it repeats,
`e` says how to drive again, and without a terminal it says it needs one."""
from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from browser.harness import PASSWORD, Car, car_fixture

REPO = Path(__file__).resolve().parents[1]
RACER = [sys.executable, "-m", "racer.cli"]

car = car_fixture("teleop-keys")


class Terminal:
    """`racer teleop --car URL` with a pty as its stdin; its stderr collected."""

    def __init__(self, car: Car, config: Path):
        self.master, slave = pty.openpty()
        env = {**os.environ, "RACER_CONFIG_DIR": str(config)}
        # A login first, then the token in RACER_CONFIG_DIR serves the teleop without a password prompt.
        subprocess.run([*RACER, "status", "--car", car.url, "--password-stdin"], input=PASSWORD + "\n", text=True,
                       capture_output=True, check=True, cwd=REPO, env=env, timeout=60)
        self.proc = subprocess.Popen([*RACER, "teleop", "--car", car.url], stdin=slave, stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, cwd=REPO, env=env)
        os.close(slave)
        self.err = b""
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr
        os.set_blocking(self.stderr.fileno(), False)

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.err:
            assert time.monotonic() < deadline, f"no {text!r} in {self.err!r}"
            self.err += self.stderr.read() or b""
            time.sleep(0.05)

    def close(self) -> int:
        self.type("q")
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.proc.kill()
            os.close(self.master)


@pytest.fixture
def terminal(car: Car, tmp_path: Path):
    term = Terminal(car, tmp_path / "laptop")
    term.wait_for("manual mode")
    yield term
    term.close()


def throttle(car: Car) -> float:
    return car.status()["command"]["throttle"]


def test_a_held_key_drives_and_a_released_one_lets_go(car: Car, terminal: Terminal):
    terminal.type("ww")
    car.wait_for(lambda: throttle(car) == pytest.approx(0.25), what="two presses of w")  # 0.5 at max speed 0.5
    # Held: the terminal repeats the key; the car keeps driving for as long as it does.
    held = time.monotonic() + 2.0
    while time.monotonic() < held:
        terminal.type("w")
        time.sleep(0.05)
    assert throttle(car) > 0.0
    # Released: no more repeats, and the car lets go without q or space.
    car.wait_for(lambda: throttle(car) == 0.0, timeout=30, what="neutral after the key stopped repeating")
    assert terminal.proc.poll() is None  # still running, just not driving


def test_emergency_stop_says_how_to_drive_again(car: Car, terminal: Terminal):
    terminal.type("e")
    terminal.wait_for(f"emergency stop: the car stays stopped until you press Start on its console page ({car.url}/)")
    car.wait_for(lambda: car.status()["emergency_stop"], what="the e-stop")
    assert car.client().request("POST", "/api/start_stop", {"start_stop": "start"}).status == 200


def test_without_a_terminal_it_says_it_needs_one(car: Car):
    proc = subprocess.run([*RACER, "teleop", "--car", car.url], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == ("racer teleop: needs a terminal for its keys (stdin is not one): run it in a terminal "
                           "window\n")
