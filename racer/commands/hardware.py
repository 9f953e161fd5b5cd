"""`racer selftest` and `racer calibrate camera`: checks and calibration run next to the hardware."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from calibration.camera import CameraCalibrationError, calibrate_images, save_camera_info
from car.actuators.base import ActuatorFault
from car.actuators.open import open_actuator
from car.calibration import DEFAULT_PATH, resolve
from racer.commands.console import add_car_calibration

SELFTEST_STEPS = (
    ("neutral", 0.0, 0.0),
    ("steer full left", 1.0, 0.0),
    ("steer full right", -1.0, 0.0),
    ("steer centre", 0.0, 0.0),
    ("throttle forward", 0.0, 1.0),
    ("neutral", 0.0, 0.0),
    ("throttle reverse", 0.0, -1.0),
    ("neutral", 0.0, 0.0),
)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _fraction(text: str) -> float:
    value = _number(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]")
    return value


def _seconds(text: str) -> float:
    value = _number(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"{text} is not a non-negative number of seconds")
    return value


def _board(text: str) -> tuple[int, int]:
    columns, sep, rows = text.lower().partition("x")
    if not sep or not columns.isdigit() or not rows.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not COLUMNSxROWS of inner corners, e.g. 9x6")
    return int(columns), int(rows)


def register(sub: argparse._SubParsersAction) -> None:
    selftest = sub.add_parser(
        "selftest", help="with the wheels off the ground: sweep the steering, pulse the ESC",
        description="Sweeps the steering full left and right, pulses the ESC gently forward and back, "
                    "returns to neutral and disables the outputs, reporting each command and pulse sent.")
    selftest.add_argument("--actuator", required=True, metavar="SPEC",
                          help="pwm-sysfs[:CHIP_DIR], pca9685:BUS:ADDR or maestro:PORT")
    selftest.add_argument("--calibration", type=Path, metavar="FILE",
                          help=f"calibration.json, used unless the state dir has one (default {DEFAULT_PATH} "
                               "if present, else factory values)")
    selftest.add_argument("--state-dir", type=Path, metavar="DIR",
                          help="the car's state dir, whose calibration.json (saved by the console) wins")
    selftest.add_argument("--throttle", type=_fraction, default=0.2,
                          help="throttle of the forward and reverse pulses, in (0, 1] (default 0.2)")
    selftest.add_argument("--dwell", type=_seconds, default=0.5, help="seconds to hold each step (default 0.5)")
    selftest.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    selftest.set_defaults(func=run_selftest)

    calibrate = sub.add_parser(
        "calibrate", help="a car's steering and throttle (--car), or the camera's lens (camera)",
        usage="racer calibrate --car HOST [--password-stdin] [--fingerprint SHA256]\n"
              "       racer calibrate camera --images DIR --out FILE [options]",
        description="With --car: the steering and throttle wizard of the car's console, in the terminal, with the "
                    "wheels off the ground: the steering's centre, full left and full right, then the throttle's "
                    "stop, full forward and full reverse, each moved live until you accept it; the car saves them. "
                    "With camera: the camera's intrinsics from chessboard photos (racer calibrate camera --help).")
    add_car_calibration(calibrate)
    targets = calibrate.add_subparsers(dest="target", metavar="camera", title="the camera instead")
    camera = targets.add_parser(
        "camera", help="camera intrinsics from chessboard photos",
        description="Finds a chessboard in each image of a folder, solves for the camera intrinsics and "
                    "writes a ROS camera_info YAML.")
    camera.add_argument("--images", required=True, type=Path, metavar="DIR",
                        help="folder of photos of the chessboard, from different angles and distances")
    camera.add_argument("--out", required=True, type=Path, metavar="FILE",
                        help="ROS camera_info YAML to write (for racer train --camera-info)")
    camera.add_argument("--board", type=_board, default=(9, 6), metavar="COLSxROWS",
                        help="inner corners of the chessboard (default 9x6)")
    camera.add_argument("--square", type=float, default=0.025, metavar="METRES",
                        help="side of one square (default 0.025)")
    camera.add_argument("--name", default="camera", help="camera_name in the YAML")
    camera.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    camera.set_defaults(func=run_calibrate_camera)


def run_selftest(args: argparse.Namespace) -> int:
    try:
        car = resolve(args.calibration, args.state_dir)
        calibration = car.calibration
        driver = open_actuator(args.actuator, calibration)
    except (ValueError, ActuatorFault) as exc:
        print(f"racer selftest: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    report: dict[str, Any] = {"actuator": args.actuator, "calibration": car.source, "steps": [], "error": None}
    human = sys.stderr if args.json else sys.stdout
    try:
        for name, steering, direction in SELFTEST_STEPS:
            throttle = direction * args.throttle
            driver.set(steering, throttle)
            step = {"step": name, "steering": steering, "throttle": throttle,
                    "servo_ns": calibration.servo.pulse_ns(steering),
                    "motor_ns": calibration.motor.pulse_ns(throttle)}
            report["steps"].append(step)
            print(f"{name:17} steering {steering:+.2f} -> {step['servo_ns']} ns   "
                  f"throttle {throttle:+.2f} -> {step['motor_ns']} ns", file=human)
            time.sleep(args.dwell)
    except ActuatorFault as exc:
        report["error"] = str(exc)
    finally:
        try:
            driver.close()
        except ActuatorFault as exc:
            report["error"] = report["error"] or str(exc)
    report["outputs_off"] = report["error"] is None
    if args.json:
        print(json.dumps(report))
    if report["error"]:
        print(f"racer selftest: {report['error']}", file=sys.stderr)
        return 1
    print("neutral, outputs disabled", file=human)
    return 0


def run_calibrate_camera(args: argparse.Namespace) -> int:
    columns, rows = args.board
    try:
        result = calibrate_images(args.images, columns, rows, args.square, args.name)
        save_camera_info(result.info, args.out)
    except (CameraCalibrationError, OSError) as exc:
        print(f"racer calibrate camera: {exc}", file=sys.stderr)
        return 1
    matrix = result.info.camera_matrix
    summary = {"out": str(args.out), "image_width": result.info.width, "image_height": result.info.height,
               "fx": float(matrix[0, 0]), "fy": float(matrix[1, 1]), "cx": float(matrix[0, 2]),
               "cy": float(matrix[1, 2]), "distortion": [float(v) for v in result.info.distortion],
               "rms_px": result.rms_px, "used": result.used, "skipped": result.skipped}
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"chessboard found in {len(result.used)} images, skipped {len(result.skipped)}: "
          f"{', '.join(result.skipped) or 'none'}")
    print(f"fx {summary['fx']:.1f} fy {summary['fy']:.1f} cx {summary['cx']:.1f} cy {summary['cy']:.1f} "
          f"px, RMS reprojection error {result.rms_px:.3f} px")
    print(f"wrote {args.out}")
    return 0
