"""The car's calibration: which calibration.json a car starts with (one resolution everywhere: the
state dir, else --calibration, else the stock path, else factory) and where the console saves edits.

The file format and the pulse mapping are `car.actuators.calibration`'s.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from car.actuators.calibration import FACTORY_DEFAULT, Calibration, load
from car.config import CarConfig
from car.console.state import StateDir, default_state_dir

DEFAULT_PATH = Path("/opt/aws/deepracer/calibration.json")  # where the stock DeepRacer keeps it

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CarCalibration:
    """The calibration a car starts with, where it came from, and where the console saves edits.

    source: the file read, or "factory default". state_file: the state dir's calibration.json,
    which the console's wizard writes so that an edit wins at the next start.
    """

    calibration: Calibration
    source: str
    state_file: Path


def resolve(explicit: str | os.PathLike[str] | None,
            state_dir: str | os.PathLike[str] | None = None) -> CarCalibration:
    """The one resolution of a car's calibration, used by `racer car` (every transport and node,
    through car_calibration), `racer selftest` and the console; the source is logged once per call.

    Order: the state dir's calibration.json (what the console saved; state_dir defaults to
    default_state_dir()), else `explicit` (--calibration or the parameter actuator.calibration),
    else the stock DeepRacer's DEFAULT_PATH, else FACTORY_DEFAULT. The first file present is used
    and never skipped: an unreadable or invalid one raises CalibrationError naming the file, so a
    car never drives on other values than the ones its owner saved.
    """
    state_file = StateDir(Path(state_dir) if state_dir else default_state_dir()).calibration
    if state_file.exists():
        path: Path | None = state_file
    elif explicit:
        path = Path(explicit)  # read even when absent: a mistyped --calibration is an error, not factory
    else:
        path = DEFAULT_PATH if DEFAULT_PATH.exists() else None
    found = (CarCalibration(load(path), str(path), state_file) if path is not None
             else CarCalibration(FACTORY_DEFAULT, "factory default", state_file))
    log.info("calibration: %s", found.source)
    return found


def car_calibration(config: CarConfig) -> CarCalibration:
    """resolve() with the car's options: `actuator.calibration` (--calibration, else the parameter file's) and
    `state_dir` (--state-dir); CalibrationError names a bad file."""
    return resolve(config.actuator.calibration, config.state_dir)
