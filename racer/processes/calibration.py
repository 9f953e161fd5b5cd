"""The car's calibration as every process of `racer car` and `racer node` resolves it (one resolution everywhere)."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from calibration.servo import CarCalibration


def car_calibration(args: argparse.Namespace, params: dict[str, dict[str, Any]]) -> CarCalibration:
    """calibration.servo.resolve with the options of `racer car` or `racer node` (`--state-dir`,
    `--calibration`, else the parameter actuator.calibration); CalibrationError names a bad file."""
    from calibration.servo import resolve
    return resolve(args.calibration or params["actuator"].get("calibration"), args.state_dir)
