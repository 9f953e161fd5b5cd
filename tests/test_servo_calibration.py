"""calibration.json: the DeepRacer format, servo_pkg's mapping, console units and crash-safe saves."""
from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from car.actuators import calibration as servo
from car.actuators.calibration import FACTORY_DEFAULT, CalibrationError

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "deepracer" / "device" / "calibration.json"


def test_factory_fixture_loads_as_the_factory_default() -> None:
    assert servo.load(FIXTURE) == FACTORY_DEFAULT


def test_save_writes_the_device_layout_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    servo.save(FACTORY_DEFAULT, path)
    assert path.read_bytes() == FIXTURE.read_bytes()
    assert not (tmp_path / "calibration.json.bak").exists()


@pytest.mark.parametrize(("command", "servo_ns", "motor_ns"), [
    (0.0, 1_450_000, 1_446_000),
    (1.0, 1_700_000, 1_311_000),
    (-1.0, 1_200_000, 1_603_500),
    (0.5, 1_575_000, 1_378_500),
    (-0.5, 1_325_000, 1_524_750),
])
def test_pulse_is_piecewise_linear_around_mid_with_polarity(command: float, servo_ns: int, motor_ns: int) -> None:
    assert FACTORY_DEFAULT.servo.pulse_ns(command) == servo_ns
    assert FACTORY_DEFAULT.motor.pulse_ns(command) == motor_ns


@pytest.mark.parametrize("command", [1.0001, -1.5, math.nan, math.inf])
def test_commands_outside_unit_range_are_rejected(command: float) -> None:
    with pytest.raises(ValueError, match=r"outside \[-1, 1\]"):
        FACTORY_DEFAULT.servo.pulse_ns(command)


def _document(**changes: object) -> dict:
    document = servo.to_dict(FACTORY_DEFAULT)
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        if value is None:
            del document["Calibration"][section][key]
        else:
            document["Calibration"][section][key] = value
    return document


@pytest.mark.parametrize(("changes", "message"), [
    ({"Servo__min": 1_500_000}, r"^Calibration\.Servo\.min: 1500000 must be below mid 1450000$"),
    ({"Motor__max": 1_446_000}, r"^Calibration\.Motor\.max: 1446000 must be above mid 1446000$"),
    ({"Servo__max": 2_600_000}, r"^Calibration\.Servo\.max: 2600000 ns is outside 500000\.\.2500000 ns"),
    ({"Motor__min": 400_000}, r"^Calibration\.Motor\.min: 400000 ns is outside"),
    ({"Servo__polarity": 0}, r"^Calibration\.Servo\.polarity: expected 1 or -1, got 0$"),
    ({"Motor__polarity": True}, r"^Calibration\.Motor\.polarity: expected 1 or -1, got True$"),
    ({"Servo__mid": "1450000"}, r"^Calibration\.Servo\.mid: expected a whole number of ns, got '1450000'$"),
    ({"Servo__mid": 1_450_000.5}, r"^Calibration\.Servo\.mid: expected a whole number of ns"),
    ({"Motor__mid": None}, r"^Calibration\.Motor\.mid: missing$"),
    ({"Servo__polarity": None}, r"^Calibration\.Servo\.polarity: missing$"),
])
def test_each_bad_field_is_named_in_one_line(changes: dict, message: str) -> None:
    with pytest.raises(CalibrationError, match=message) as caught:
        servo.from_dict(_document(**changes))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("document", "message"), [
    ([], r"^Calibration: missing top-level object$"),
    ({"calibration": {}}, r"^Calibration: missing top-level object$"),
    ({"Calibration": {"Servo": 3, "Motor": {}}}, r"^Calibration\.Servo: expected an object"),
    ({"Calibration": {"Motor": {}}}, r"^Calibration\.Servo: expected an object"),
    ({"Calibration": {"version": 2}}, r"^Calibration\.version: unsupported version 2, expected 1$"),
])
def test_bad_structure_is_rejected(document: object, message: str) -> None:
    with pytest.raises(CalibrationError, match=message):
        servo.from_dict(document)


def test_whole_floats_are_accepted_as_ns() -> None:
    document = _document(Servo__mid=1_450_000.0)
    assert servo.from_dict(document).servo.mid == 1_450_000


def test_load_names_the_file_for_bad_json_and_missing_files(tmp_path: Path) -> None:
    broken = tmp_path / "calibration.json"
    broken.write_text('{"Calibration": {"Servo":')
    with pytest.raises(CalibrationError, match=rf"^{broken}: not valid JSON"):
        servo.load(broken)
    with pytest.raises(CalibrationError, match=r"nope\.json: cannot read: No such file or directory$"):
        servo.load(tmp_path / "nope.json")
    broken.write_text(json.dumps(_document(Servo__min=1_450_000)))
    with pytest.raises(CalibrationError, match=rf"^{broken}: Calibration\.Servo\.min: 1450000 must be below"):
        servo.load(broken)


def test_save_refuses_an_invalid_calibration_and_leaves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    servo.save(FACTORY_DEFAULT, path)
    bad = replace(FACTORY_DEFAULT, motor=replace(FACTORY_DEFAULT.motor, polarity=2))
    with pytest.raises(CalibrationError, match=r"^Calibration\.Motor\.polarity: expected 1 or -1, got 2$"):
        servo.save(bad, path)
    assert servo.load(path) == FACTORY_DEFAULT


def test_save_keeps_the_previous_file_as_bak(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    servo.save(FACTORY_DEFAULT, path)
    tuned = replace(FACTORY_DEFAULT, servo=replace(FACTORY_DEFAULT.servo, mid=1_460_000))
    servo.save(tuned, path)
    assert servo.load(path) == tuned
    assert servo.load(tmp_path / "calibration.json.bak") == FACTORY_DEFAULT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calibration.json", "calibration.json.bak"]


@pytest.mark.parametrize(("output", "pulse_ns", "ui"), [
    ("Servo", 1_450_000, -5.0),
    ("Servo", 1_700_000, 20.0),
    ("Servo", 1_200_000, -30.0),
    ("Motor", 1_446_000, -12.0),
    ("Motor", 1_311_000, -42.0),
    ("Motor", 1_603_500, 23.0),
])
def test_console_units_convert_both_ways(output: servo.Output, pulse_ns: int, ui: float) -> None:
    assert servo.ui_from_pulse(output, pulse_ns) == pytest.approx(ui)
    assert servo.pulse_from_ui(output, ui) == pulse_ns


def test_console_units_reject_non_finite_values() -> None:
    with pytest.raises(ValueError, match=r"^Motor calibration value nan is not a finite number$"):
        servo.pulse_from_ui("Motor", math.nan)


WRITERS = """
import os, sys
sys.path.insert(0, sys.argv[1])
from dataclasses import replace
from car.actuators import calibration as servo
path = sys.argv[2]
for line in sys.stdin:
    versions = [replace(servo.FACTORY_DEFAULT, servo=replace(servo.FACTORY_DEFAULT.servo, mid=int(mid)))
                for mid in line.split()]
    writer = os.fork()
    if writer == 0:
        while True:
            for version in versions:
                servo.save(version, path)
    print(writer, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(writer, 0)[1]), flush=True)
"""


def test_sigkill_during_saves_always_leaves_the_old_or_the_new_file(tmp_path: Path) -> None:
    """200 writer processes, each killed at a random point while saving new/old in a loop.

    The writers are forked from one helper that has already imported the code, so each round
    costs a fork rather than an interpreter start.
    """
    path = tmp_path / "calibration.json"
    current = 1_450_000
    servo.save(FACTORY_DEFAULT, path)
    servo.save(FACTORY_DEFAULT, path)
    rng = random.Random(4)
    interrupted = 0
    helper = subprocess.Popen([sys.executable, "-S", "-c", WRITERS, str(REPO), str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert helper.stdin is not None and helper.stdout is not None
    try:
        for round_number in range(200):
            new = 1_300_000 + 1000 * round_number
            helper.stdin.write(f"{new} {current}\n")
            helper.stdin.flush()
            writer = int(helper.stdout.readline())
            time.sleep(rng.uniform(0.0, 0.003))
            os.kill(writer, signal.SIGKILL)
            assert int(helper.stdout.readline()) == -signal.SIGKILL
            interrupted += (tmp_path / ".calibration.json.tmp").exists()
            loaded = servo.load(path)
            assert loaded.servo.mid in (current, new)
            servo.load(tmp_path / "calibration.json.bak")
            current = loaded.servo.mid
    finally:
        helper.stdin.close()
        helper.wait(timeout=10)
    assert interrupted > 0, "no kill landed inside a save"
    assert {p.name for p in tmp_path.iterdir()} <= {
        "calibration.json", "calibration.json.bak", ".calibration.json.tmp", ".calibration.json.bak.tmp"}
