"""The car's calibration as every process of `racer car` and `racer node` resolves it (one resolution everywhere)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from calibration.servo import CarCalibration
    from car.config import CarConfig


def car_calibration(config: CarConfig) -> CarCalibration:
    """calibration.servo.resolve with the car's `state_dir` and `actuator.calibration` (`--calibration`, else the
    parameter actuator.calibration); CalibrationError names a bad file."""
    from calibration.servo import resolve
    return resolve(config.actuator.calibration, config.state_dir)
