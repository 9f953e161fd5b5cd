"""The device console on the car, beside the in-process runtime: what `racer car --console` and `racer demo` start."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from calibration.servo import CarCalibration
    from car.console.server import ConsoleServer
    from car.graph.runtime import CarRuntime


def start_car_console(args: argparse.Namespace, params: dict[str, dict[str, Any]], runtime: CarRuntime,
                      model_name: str, calibration: CarCalibration | None = None,
                      model_path: Path | None = None) -> ConsoleServer:
    """The console for `racer car --console HOST:PORT [--state-dir DIR]`.

    `calibration` is what the car started with (resolved here when not given). The wizard starts
    from it and saves to the state dir's calibration.json, which wins at the next start.
    `model_path` is the bundle the car started with: the console lists it so a user can go back to it.
    """
    from calibration import servo
    from car.console.server import ConsoleOptions, parse_address, start_console
    from racer.processes.node import car_calibration

    host, port = parse_address(args.console)
    car = calibration or car_calibration(args, params)
    options = ConsoleOptions(host, port, car.state_file.parent, car.state_file, startup_model=model_path,
                             extra_hosts=tuple(getattr(args, "console_name", None) or ()))
    return start_console(options, runtime, model_name, servo, car.calibration)
