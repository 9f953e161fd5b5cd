"""`racer selftest` against the Maestro emulator and `racer calibrate camera` on rendered photos."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from calibration import servo
from calibration.camera import load_camera_info
from hw.chessboard import CAMERA_MATRIX, photo_session
from hw.maestro_emulator import MaestroEmulator
from racer.cli import main


@pytest.fixture
def maestro(tmp_path: Path):
    with MaestroEmulator(tmp_path / "ttyACM0") as emulator:
        yield emulator


def test_selftest_json_reports_every_command_and_pulse(maestro: MaestroEmulator, capsys) -> None:
    code = main(["selftest", "--actuator", f"maestro:{maestro.link}", "--dwell", "0", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    report = json.loads(captured.out)
    assert report["calibration"] == "factory default" and report["error"] is None and report["outputs_off"]
    assert [(s["step"], s["steering"], s["throttle"], s["servo_ns"], s["motor_ns"]) for s in report["steps"]] == [
        ("neutral", 0.0, 0.0, 1_450_000, 1_446_000),
        ("steer full left", 1.0, 0.0, 1_700_000, 1_446_000),
        ("steer full right", -1.0, 0.0, 1_200_000, 1_446_000),
        ("steer centre", 0.0, 0.0, 1_450_000, 1_446_000),
        ("throttle forward", 0.0, 0.2, 1_450_000, 1_419_000),
        ("neutral", 0.0, 0.0, 1_450_000, 1_446_000),
        ("throttle reverse", 0.0, -0.2, 1_450_000, 1_477_500),
        ("neutral", 0.0, 0.0, 1_450_000, 1_446_000),
    ]
    received = maestro.wait_for(22)
    sent = [(0, step["motor_ns"] // 250) for step in report["steps"]]
    assert received[2::2][:8] == sent
    assert received[-2:] == [(0, 0), (1, 0)]
    assert "throttle forward" in captured.err


def test_selftest_uses_the_given_calibration_and_prints_a_table(maestro: MaestroEmulator, tmp_path: Path,
                                                                capsys) -> None:
    path = tmp_path / "calibration.json"
    servo.save(replace(servo.FACTORY_DEFAULT, servo=replace(servo.FACTORY_DEFAULT.servo, max=1_800_000)), path)
    code = main(["selftest", "--actuator", f"maestro:{maestro.link}", "--calibration", str(path),
                 "--dwell", "0", "--throttle", "0.5"])
    out = capsys.readouterr().out
    assert code == 0
    assert "steer full left   steering +1.00 -> 1800000 ns   throttle +0.00 -> 1446000 ns" in out
    assert "throttle +0.50 -> 1378500 ns" in out
    assert out.rstrip().endswith("neutral, outputs disabled")


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["--actuator", "sim"], 2, "racer selftest: actuator spec 'sim' is the simulator"),
    (["--actuator", "servo:1"], 2, "racer selftest: unknown actuator spec 'servo:1'"),
    (["--actuator", "maestro:/nonexistent/ttyACM9"], 1, "racer selftest: maestro:/nonexistent/ttyACM9: "),
])
def test_selftest_errors(argv: list[str], code: int, message: str, capsys) -> None:
    assert main(["selftest", *argv, "--dwell", "0"]) == code
    assert capsys.readouterr().err.startswith(message)


def test_selftest_bad_calibration_file_names_the_field(tmp_path: Path, capsys) -> None:
    path = tmp_path / "calibration.json"
    document = servo.to_dict(servo.FACTORY_DEFAULT)
    document["Calibration"]["Motor"]["polarity"] = 0
    path.write_text(json.dumps(document))
    assert main(["selftest", "--actuator", "maestro:/dev/null", "--calibration", str(path)]) == 2
    assert capsys.readouterr().err == (f"racer selftest: {path}: Calibration.Motor.polarity: "
                                       "expected 1 or -1, got 0\n")


@pytest.mark.parametrize(("argv", "message"), [
    (["selftest", "--actuator", "maestro:x", "--throttle", "2"], "argument --throttle: 2 is not in (0, 1]"),
    (["selftest", "--actuator", "maestro:x", "--dwell", "soon"], "argument --dwell: 'soon' is not a number"),
    (["calibrate", "camera", "--images", "x", "--out", "y", "--board", "9by6"],
     "argument --board: '9by6' is not COLUMNSxROWS of inner corners, e.g. 9x6"),
])
def test_bad_arguments_are_usage_errors(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_calibrate_without_a_target_says_what_to_choose(capsys) -> None:
    assert main(["calibrate"]) == 2
    err = capsys.readouterr().err
    assert "choose what to calibrate: racer calibrate camera ... or racer calibrate --car HOST" in err


def test_calibrate_camera_writes_camera_info(tmp_path: Path, capsys) -> None:
    photos = photo_session(tmp_path / "photos")
    out = tmp_path / "camera_info.yaml"
    code = main(["calibrate", "camera", "--images", str(photos), "--out", str(out), "--square", "0.03",
                 "--name", "deepracer_front", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["fx"] == pytest.approx(CAMERA_MATRIX[0, 0], rel=0.02)
    assert summary["cy"] == pytest.approx(CAMERA_MATRIX[1, 2], rel=0.02)
    assert len(summary["used"]) == 8 and summary["skipped"] == []
    info = load_camera_info(out)
    assert info.name == "deepracer_front"
    assert info.camera_matrix[0, 0] == pytest.approx(summary["fx"])


def test_calibrate_camera_without_boards_fails_clearly(tmp_path: Path, capsys) -> None:
    code = main(["calibrate", "camera", "--images", str(tmp_path), "--out", str(tmp_path / "c.yaml")])
    assert code == 1
    assert capsys.readouterr().err == (f"racer calibrate camera: {tmp_path}: a 9x6 chessboard was found in "
                                       "0 of 0 images; need at least 3\n")
    assert not (tmp_path / "c.yaml").exists()
