"""`racer car --transport dds|ros`: the car graph as supervised node processes (`racer node NAME`).

With `--sim TRACK` the simulator world runs as one more process and every node follows its /clock;
the camera and actuator nodes reach it through the sim link topics.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from car.config import CarConfig
from car.graph.supervisor import ProcessSpec, Supervisor
from car.transport import NodeBus

log = logging.getLogger("racer.car")


def node_argv(name: str, config: CarConfig, *extra: str) -> list[str]:
    argv = [sys.executable, "-m", "racer.cli", "node", name, "--transport", config.transport]
    if config.params_file:
        argv += ["--config", str(config.params_file)]
    if config.sim and name != "sim":  # the simulator is the clock the others follow
        argv.append("--sim-time")
    return argv + list(extra)


def _option(flag: str, value: Any) -> list[str]:
    return [flag, str(value)] if value is not None else []


def graph_specs(config: CarConfig) -> list[ProcessSpec]:
    """The processes of the graph in start order; ValueError for a combination that cannot run.

    Each node process resolves the same parameter file; what the command line chose over it is handed on as
    that node's flags.
    """
    camera, actuator = config.camera.source, config.actuator.spec
    if config.sim:
        camera, actuator = "sim", "sim"
    elif "sim" in (camera, actuator):
        raise ValueError("the sim camera and actuator need --sim TRACK (set camera.source and actuator.spec "
                         "for hardware, or pass --camera and --actuator)")
    if not config.sim_rate > 0:
        raise ValueError(f"--sim-rate must be positive, got {config.sim_rate}")
    state = [*_option("--calibration", config.actuator.calibration), *_option("--state-dir", config.state_dir)]
    model = ["--model", str(config.model)]
    specs = []
    if config.sim:
        specs.append(ProcessSpec("sim", node_argv("sim", config, "--track", config.sim,
                                                  "--sim-rate", str(config.sim_rate))))
    specs += [
        ProcessSpec("camera", node_argv("camera", config, "--camera", camera)),
        ProcessSpec("policy", node_argv("policy", config, *model, *_option("--state-dir", config.state_dir))),
        ProcessSpec("control", node_argv("control", config, *(["--autostart"] if config.autostart else []), *state),
                    restart_argv=node_argv("control", config, *state)),
        ProcessSpec("actuator", node_argv("actuator", config, "--actuator", actuator, *state)),
    ]
    if config.record:
        specs.append(ProcessSpec("recorder", node_argv("recorder", config, "--record", str(config.record))))
    if config.console:
        from car.console.server import parse_address
        parse_address(config.console)  # a malformed address is a one-line error, not a node that fails to start
        names = [arg for name in config.console_names for arg in ("--console-name", name)]
        specs.append(ProcessSpec("console", node_argv("console", config, "--console", config.console, *names, *model,
                                                      *state)))
    if config.foxglove:
        from racer.processes.foxglove import foxglove_address
        # refused here in one line, not by a node that keeps failing
        foxglove_address(config.foxglove, config.state_dir)
        specs.append(ProcessSpec("foxglove", node_argv("foxglove", config, "--foxglove", config.foxglove,
                                                       *_option("--state-dir", config.state_dir))))
    return specs


def run_graph(config: CarConfig, watch: Callable[[NodeBus], None] | None = None,
              duration_s: float | None = None) -> int:
    """Supervise the graph until SIGTERM/SIGINT (or `duration_s`, or until `watch`, given the supervisor's bus
    before it spins, stops the bus); every node ends at neutral on its own signal."""
    from car.calibration import car_calibration
    from car.graph.multiprocess import open_driver
    from car.transport import open_bus
    from car.transport.dds import cyclone_environment

    specs = graph_specs(config)
    # The actuator node (and on ros the control node, for get/set_car_cal) resolves it too; a bad file must
    # stop the start, not loop restarts.
    if not config.sim or config.transport == "ros":
        car_calibration(config)
    bus = open_bus(config.transport, "supervisor")
    # The link to the simulated car is made now, so DDS has matched it long before it is needed.
    sim_link = open_driver("sim", bus, config) if config.sim else None

    def neutral_actuator() -> None:
        """The actuator process died: put its outputs at neutral from here until it is back."""
        try:
            if sim_link is not None:
                sim_link.neutral()
            else:  # close() leaves the hardware at neutral with its outputs off, for the restarted node to reopen
                open_driver(config.actuator.spec, bus, config).close()
        except (OSError, RuntimeError, ValueError) as exc:
            log.error("cannot put the actuator at neutral: %s", exc)

    specs = [replace(s, on_exit=neutral_actuator) if s.name == "actuator" else s for s in specs]
    log.info("graph over %s: %s", config.transport, ", ".join(s.name for s in specs))
    supervisor = Supervisor(specs, bus, cyclone_environment())
    if watch is not None:
        watch(bus)
    supervisor.run_until_signal(duration_s)
    return 0
