"""The Maestro driver over a real pty to the Maestro emulator, and the emulator's protocol parsing."""
from __future__ import annotations

import os
import time
import tty
from pathlib import Path

import pytest

from calibrations import SAVED
from car.actuators.base import ActuatorFault
from car.actuators.calibration import FACTORY_DEFAULT, save
from car.actuators.maestro import MaestroDriver, decode_errors
from hw.fds import run_python
from hw.maestro_emulator import MaestroEmulator

NEUTRAL = [bytes.fromhex("8400182d"), bytes.fromhex("8401282d")]
FULL_LEFT = [bytes.fromhex("8400182d"), bytes.fromhex("84011035")]
FULL_RIGHT = [bytes.fromhex("8400182d"), bytes.fromhex("84014025")]
FORWARD = [bytes.fromhex("84007c28"), bytes.fromhex("8401282d")]
REVERSE = [bytes.fromhex("84000e32"), bytes.fromhex("8401282d")]
OFF = [bytes.fromhex("84000000"), bytes.fromhex("84010000")]


@pytest.fixture
def link(tmp_path: Path) -> Path:
    return tmp_path / "ttyACM0"


@pytest.fixture
def maestro(link: Path):
    with MaestroEmulator(link) as emulator:
        yield emulator


def test_targets_are_the_bytes_the_factory_calibration_predicts(maestro: MaestroEmulator, link: Path) -> None:
    """Servo 1.45/1.7/1.2 ms, ESC 1.446/1.311/1.6035 ms in quarter-us: 5800/6800/4800, 5784/5244/6414."""
    driver = MaestroDriver(FACTORY_DEFAULT, str(link))
    for steering, throttle in ((1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0), (0.0, 0.0)):
        driver.set(steering, throttle)
    driver.close()
    maestro.wait_for(16)
    expected = NEUTRAL + FULL_LEFT + FULL_RIGHT + FORWARD + REVERSE + NEUTRAL + NEUTRAL + OFF
    assert maestro.set_target_packets() == expected
    assert maestro.positions[:2] == [0, 0]
    assert maestro.errors == 0


def test_close_is_idempotent_and_later_commands_fault(maestro: MaestroEmulator, link: Path) -> None:
    driver = MaestroDriver(FACTORY_DEFAULT, str(link))
    driver.close()
    driver.close()
    maestro.wait_for(6)
    assert maestro.set_target_packets() == NEUTRAL + NEUTRAL + OFF
    with pytest.raises(ActuatorFault, match=r"maestro:.*ttyACM0: closed$"):
        driver.set(0.0, 0.0)


def test_error_register_is_reported_with_bit_names_then_cleared(maestro: MaestroEmulator, link: Path) -> None:
    driver = MaestroDriver(FACTORY_DEFAULT, str(link), error_check_s=0.0)
    maestro.errors |= 0x0011
    with pytest.raises(ActuatorFault, match=r"Maestro error register 0x0011: serial signal, serial protocol$"):
        driver.set(0.2, 0.0)
    driver.set(0.2, 0.0)
    driver.close()


def test_errors_are_polled_periodically(maestro: MaestroEmulator, link: Path) -> None:
    driver = MaestroDriver(FACTORY_DEFAULT, str(link), error_check_s=0.1)
    started = time.monotonic()
    while time.monotonic() - started < 0.45:
        driver.set(0.0, 0.0)
        time.sleep(0.01)
    polls = sum(packet == b"\xa1" for packet in maestro.packets)
    driver.close()
    assert 4 <= polls <= 7


def test_unplug_mid_drive_faults_and_the_driver_recovers_when_it_returns(link: Path) -> None:
    first = MaestroEmulator(link).start()
    driver = MaestroDriver(FACTORY_DEFAULT, str(link))
    driver.set(0.5, 0.0)
    first.wait_for(4)
    first.unplug()
    with pytest.raises(ActuatorFault, match=r"maestro:.*ttyACM0: write failed: \[Errno 5\] Input/output error"):
        driver.set(0.5, 0.0)
    with pytest.raises(ActuatorFault, match=r"could not open port .*ttyACM0: \[Errno 2\] No such file"):
        driver.set(0.5, 0.0)
    with MaestroEmulator(link) as second:
        driver.set(1.0, 0.0)
        driver.close()
        second.wait_for(8)
        assert second.set_target_packets() == NEUTRAL + FULL_LEFT + NEUTRAL + OFF


def test_close_while_unplugged_reports_the_fault_once_and_releases(link: Path) -> None:
    emulator = MaestroEmulator(link).start()
    driver = MaestroDriver(FACTORY_DEFAULT, str(link))
    emulator.unplug()
    with pytest.raises(ActuatorFault, match=r"ttyACM0: write failed: \[Errno 5\] Input/output error$"):
        driver.close()
    driver.close()


def test_missing_port_is_a_fault_at_open(link: Path) -> None:
    with pytest.raises(ActuatorFault, match=r"^maestro:.*ttyACM0: \[Errno 2\] could not open port"):
        MaestroDriver(FACTORY_DEFAULT, str(link))


def test_a_device_that_does_not_answer_is_a_fault(link: Path) -> None:
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        link.symlink_to(os.ttyname(slave))
        with pytest.raises(ActuatorFault, match=r"no reply to Get Errors"):
            MaestroDriver(FACTORY_DEFAULT, str(link), reply_timeout_s=0.05)
    finally:
        os.close(master)
        os.close(slave)


def test_the_port_is_held_exclusively(maestro: MaestroEmulator, link: Path) -> None:
    driver = MaestroDriver(FACTORY_DEFAULT, str(link))
    with pytest.raises(ActuatorFault, match=r"Could not exclusively lock port"):
        MaestroDriver(FACTORY_DEFAULT, str(link))
    driver.close()


def test_error_bits_decode_by_name() -> None:
    assert decode_errors(0) == []
    assert decode_errors(0x0104) == ["serial RX buffer full", "script program counter"]
    assert decode_errors(0x8000) == ["bit 15"]


def test_emulator_compact_and_pololu_set_target() -> None:
    emulator = MaestroEmulator(Path("unused"))
    assert emulator.feed(bytes.fromhex("8402702e")) == b""
    assert emulator.feed(bytes.fromhex("aa0c0403702e")) == b""
    assert emulator.feed(bytes.fromhex("aa0d0404702e")) == b""
    assert emulator.targets == [(2, 6000), (3, 6000)]
    assert emulator.feed(bytes.fromhex("9002")) == bytes.fromhex("7017")
    assert emulator.feed(bytes.fromhex("aa0c1003")) == bytes.fromhex("7017")
    assert emulator.errors == 0


def test_emulator_set_multiple_targets_and_go_home() -> None:
    emulator = MaestroEmulator(Path("unused"))
    emulator.feed(bytes.fromhex("9f02030000702e"))
    assert emulator.targets == [(3, 0), (4, 6000)]
    assert emulator.feed(bytes.fromhex("93")) == b"\x00"
    emulator.feed(bytes.fromhex("a2"))
    assert emulator.positions == [0] * 6


@pytest.mark.parametrize("stream", [
    "05",          # a data byte where a command belongs
    "80",          # no such command
    "8401",        # Set Target cut short by the Get Errors below
    "aa0c7f",      # Pololu protocol, no such command
    "8406702e",    # channel 6 on a 6-channel Maestro
])
def test_emulator_bad_bytes_set_the_protocol_error_bit(stream: str) -> None:
    emulator = MaestroEmulator(Path("unused"))
    emulator.feed(bytes.fromhex("8401702e"))
    reply = emulator.feed(bytes.fromhex(stream + "a1"))
    assert reply == bytes.fromhex("1000")
    assert emulator.positions[1] == 0
    assert emulator.feed(bytes.fromhex("a1")) == bytes.fromhex("0000")


def test_the_first_targets_are_the_saved_calibration_mids(maestro: MaestroEmulator, link: Path) -> None:
    driver = MaestroDriver(SAVED, str(link))
    driver.close()
    maestro.wait_for(6)
    assert maestro.packets[0] == bytes((0xA1,))  # Get Errors clears what was latched, before any target
    neutral = [(0, 1_500_000 // 250), (1, 1_480_000 // 250)]
    assert maestro.targets == [*neutral, *neutral, (0, 0), (1, 0)]  # open at neutral; close: neutral, off


EMFILE_SCRIPT = """
import sys
from car.actuators import calibration as servo
from car.actuators.maestro import MaestroDriver
from hw.fds import no_free_fds

driver = MaestroDriver(servo.load(sys.argv[2]), sys.argv[1])
for action in (lambda: driver.set(0.5, 0.8), driver.neutral, driver.close):
    with no_free_fds():
        action()
"""


def test_targets_and_neutral_still_reach_the_maestro_when_the_process_has_no_fd_left(
        maestro: MaestroEmulator, link: Path, tmp_path: Path) -> None:
    saved = tmp_path / "calibration.json"
    save(SAVED, saved)
    result = run_python(EMFILE_SCRIPT, str(link), str(saved))
    assert result.returncode == 0, result.stderr
    neutral = [(0, 1_500_000 // 250), (1, 1_480_000 // 250)]
    driving = [(0, SAVED.motor.pulse_ns(0.8) // 250), (1, SAVED.servo.pulse_ns(0.5) // 250)]
    assert maestro.wait_for(8) == [*neutral, *driving, *neutral, *neutral, (0, 0), (1, 0)]
