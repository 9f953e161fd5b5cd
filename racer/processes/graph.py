"""`racer car --transport dds|ros`: the car graph as supervised node processes (`racer node NAME`).

With `--sim TRACK` the simulator world runs as one more process and every node follows its /clock;
the camera and actuator nodes reach it through the sim link topics.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from car.graph.supervisor import ProcessSpec, Supervisor
from car.transport import NodeBus

log = logging.getLogger("racer.car")


def node_argv(name: str, args: argparse.Namespace, *extra: str) -> list[str]:
    argv = [sys.executable, "-m", "racer.cli", "node", name, "--transport", args.transport]
    if args.config:
        argv += ["--config", str(args.config)]
    if args.sim and name != "sim":  # the simulator is the clock the others follow
        argv.append("--sim-time")
    return argv + list(extra)


def _option(flag: str, value: Any) -> list[str]:
    return [flag, str(value)] if value is not None else []


def graph_specs(args: argparse.Namespace, params: dict[str, dict[str, Any]]) -> list[ProcessSpec]:
    """The processes of the graph in start order; ValueError for a combination that cannot run."""
    camera = args.camera or params["camera"].get("source") or ""
    actuator = args.actuator or params["actuator"].get("spec") or ""
    if args.sim:
        camera, actuator = "sim", "sim"
    elif "sim" in (camera, actuator):
        raise ValueError("the sim camera and actuator need --sim TRACK (set camera.source and actuator.spec "
                         "for hardware, or pass --camera and --actuator)")
    if not args.sim_rate > 0:
        raise ValueError(f"--sim-rate must be positive, got {args.sim_rate}")
    state = [*_option("--calibration", args.calibration), *_option("--state-dir", args.state_dir)]
    specs = []
    if args.sim:
        specs.append(ProcessSpec("sim", node_argv("sim", args, "--track", args.sim, "--sim-rate", str(args.sim_rate))))
    specs += [
        ProcessSpec("camera", node_argv("camera", args, "--camera", camera)),
        ProcessSpec("policy", node_argv("policy", args, *_option("--model", args.model),
                                        *_option("--state-dir", args.state_dir))),
        ProcessSpec("control", node_argv("control", args, *(["--autostart"] if args.autostart else []), *state),
                    restart_argv=node_argv("control", args, *state)),
        ProcessSpec("actuator", node_argv("actuator", args, "--actuator", actuator, *state)),
    ]
    if args.record:
        specs.append(ProcessSpec("recorder", node_argv("recorder", args, "--record", str(args.record))))
    if args.console:
        from car.console.server import parse_address
        parse_address(args.console)  # a malformed address is a one-line error, not a node that fails to start
        names = [arg for name in args.console_name for arg in ("--console-name", name)]
        specs.append(ProcessSpec("console", node_argv(
            "console", args, "--console", args.console, *names, *_option("--model", args.model),
            *_option("--calibration", args.calibration), *_option("--state-dir", args.state_dir))))
    if args.foxglove:
        from racer.processes.foxglove import foxglove_address
        foxglove_address(args.foxglove, args.state_dir)  # refused here in one line, not by a node that keeps failing
        specs.append(ProcessSpec("foxglove", node_argv("foxglove", args, "--foxglove", args.foxglove,
                                                       *_option("--state-dir", args.state_dir))))
    return specs


def run_graph(args: argparse.Namespace, params: dict[str, dict[str, Any]],
              watch: Callable[[NodeBus], None] | None = None) -> int:
    """Supervise the graph until SIGTERM/SIGINT (or until `watch`, given the supervisor's bus before it spins,
    stops the bus); every node ends at neutral on its own signal."""
    from car.calibration import car_calibration
    from car.transport import open_bus
    from car.transport.dds import cyclone_environment
    from racer.processes.node import open_node_driver

    specs = graph_specs(args, params)
    # The actuator node (and on ros the control node, for get/set_car_cal) resolves it too; a bad file must
    # stop the start, not loop restarts.
    if not args.sim or args.transport == "ros":
        car_calibration(params, args.calibration, args.state_dir)
    bus = open_bus(args.transport, "supervisor")
    # The link to the simulated car is made now, so DDS has matched it long before it is needed.
    sim_link = open_node_driver("sim", args, params, bus) if args.sim else None

    def neutral_actuator() -> None:
        """The actuator process died: put its outputs at neutral from here until it is back."""
        try:
            if sim_link is not None:
                sim_link.neutral()
            else:  # close() leaves the hardware at neutral with its outputs off, for the restarted node to reopen
                open_node_driver(args.actuator or params["actuator"].get("spec") or "", args, params, bus).close()
        except (OSError, RuntimeError, ValueError) as exc:
            log.error("cannot put the actuator at neutral: %s", exc)

    specs = [replace(s, on_exit=neutral_actuator) if s.name == "actuator" else s for s in specs]
    log.info("graph over %s: %s", args.transport, ", ".join(s.name for s in specs))
    supervisor = Supervisor(specs, bus, cyclone_environment())
    if watch is not None:
        watch(bus)
    supervisor.run_until_signal(args.duration)
    return 0
