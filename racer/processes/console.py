"""The device console as a node of the car graph: what `racer car --console`, `racer node console` and
`racer demo` start, on the graph's bus (the in-process one, or its own process's on dds and ros)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from car.calibration import CarCalibration
    from car.clock import Clock
    from car.config import CarConfig
    from car.console.server import ConsoleServer
    from car.transport import NodeBus


def start_car_console(config: CarConfig, bus: NodeBus, clock: Clock, model_name: str,
                      calibration: CarCalibration | None = None, model_path: Path | None = None) -> ConsoleServer:
    """The console on `config.console` (HOST:PORT; None: CONSOLE_ADDRESS) with the state in `config.state_dir`, on
    `bus` (before it spins).

    `calibration` is what the car started with (resolved here when not given, as the actuator node
    resolves it). The wizard starts from it and saves to the state dir's calibration.json, which wins
    at the next start. `model_path` is the bundle the car started with: the console lists it so a user
    can go back to it.
    """
    from car.calibration import car_calibration
    from car.config import CONSOLE_ADDRESS
    from car.console.server import ConsoleOptions, parse_address, start_console

    host, port = parse_address(config.console or CONSOLE_ADDRESS)
    car = calibration or car_calibration(config)
    options = ConsoleOptions(host, port, car.state_file.parent, car.state_file, startup_model=model_path,
                             extra_hosts=config.console_names)
    return start_console(options, bus, clock, config, model_name, car.calibration)
