"""`racer car`: the on-car stack (what the Dockerfile and launch files run)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from car.config import CarConfig
from car.openfiles import raise_open_file_limit
from car.process import StopSignals
from racer.commands import fail, node


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("car", help="run the on-car stack",
                       description="Camera, policy, control and actuator nodes. SIGTERM/SIGINT end it at neutral.")
    p.add_argument("--config", type=Path, help="ROS 2 parameter YAML (default: launch/params/car.yaml)")
    p.add_argument("--transport", choices=("local", "dds", "ros"), default="local",
                   help="local = one process; dds = one process per node over Cyclone DDS; ros = rclpy")
    p.add_argument("--sim", metavar="TRACK", help="drive the simulator on TRACK (e.g. reinvent_base) instead of "
                                                  "hardware; without it, give --camera and --actuator")
    p.add_argument("--autostart", action="store_true", help="start in autonomous mode (only with --sim)")
    p.add_argument("--actuator", metavar="SPEC", help="sim | pwm-sysfs[:DIR] | pca9685:BUS:ADDR | maestro:PORT")
    p.add_argument("--calibration", type=Path,
                   help="DeepRacer calibration.json, used unless the state dir has one (default: the stock "
                        "DeepRacer's file, else factory values)")
    p.add_argument("--camera", metavar="SPEC",
                   help="v4l2:/dev/videoN | file:VIDEO | images:DIR | bag:PATH (a recording, played once: at its "
                        "end the camera is gone and the car at neutral) | bag:PATH:loop (played in a loop); a "
                        "recording without --actuator replays on a laptop, nothing moves, and the run ends with it")
    p.add_argument("--model", type=Path, help="model bundle (default: the bundled model)")
    p.add_argument("--console", metavar="HOST:PORT", help="serve the device console, a node of the graph on "
                                                          "every transport ('off', as when left out: no console)")
    p.add_argument("--console-name", action="append", default=[], metavar="NAME",
                   help="another DNS name the console answers to (besides its addresses and HOSTNAME[.local]); "
                        "repeatable")
    p.add_argument("--foxglove", metavar="HOST:PORT",
                   help="serve the live Foxglove view (camera, model input and output, commands, status, the "
                        "simulator's 3D scene) on HOST:PORT, e.g. 127.0.0.1:8765; beyond loopback only with the "
                        "console's API tokens (needs the foxglove extra)")
    p.add_argument("--state-dir", type=Path,
                   help="models, calibration (wins over --calibration), password, certificate")
    p.add_argument("--record", type=Path, metavar="DIR", help="record a rosbag2 (MCAP) of the drive into DIR")
    p.add_argument("--sim-rate", type=float, default=1.0, metavar="FACTOR",
                   help="with --sim and dds|ros: simulated seconds per wall second (default: %(default)s)")
    p.add_argument("--duration", type=float, help=argparse.SUPPRESS)
    p.set_defaults(func=run)
    node.register(sub)


HARDWARE_ACTUATORS = "--actuator pwm-sysfs (stock DeepRacer), pca9685:BUS:ADDR or maestro:PORT"


def argument_problem(args: argparse.Namespace, config: CarConfig) -> str | None:
    """What is wrong with this combination of options, in the user's words (None: it can run).

    The camera and actuator come from the options, else the parameter file (whose defaults are the
    simulator's), so `racer car` alone asks for --sim or a car's camera and actuator.
    """
    camera, actuator = config.camera.source, config.actuator.spec
    if args.sim:
        ignored = [flag for flag, given in (("--camera", args.camera not in (None, "sim")),
                                            ("--actuator", args.actuator not in (None, "sim")),
                                            ("--calibration", args.calibration is not None)) if given]
        if ignored:
            return (f"--sim drives the simulated car, which has its own camera and no actuator to calibrate: "
                    f"leave out {' and '.join(ignored)}")
        if args.sim_rate != 1.0 and args.transport == "local":
            return "--sim-rate needs --transport dds or ros (the local runtime runs the simulator in real time)"
        return None
    if args.autostart:
        return "--autostart needs --sim: a real car starts only on a user action"
    if args.sim_rate != 1.0:
        return "--sim-rate is for the simulator: add --sim TRACK"
    if camera.startswith("bag:") and actuator == "sim":
        if args.transport != "local":
            return ("replaying a recording without an actuator runs with --transport local (the default); with a "
                    "car's --actuator it runs on dds and ros too")
        return None  # a replay on a laptop: the policy drives nothing (see build_local)
    if camera == "sim" and actuator == "sim":
        return ("nothing to drive: pass --sim TRACK for the simulator (e.g. --sim reinvent_base), or a car's "
                f"--camera v4l2:/dev/video0 and {HARDWARE_ACTUATORS}")
    if actuator == "sim":
        return f"--camera {camera} drives a real car: add {HARDWARE_ACTUATORS} (or use --sim TRACK)"
    if camera == "sim":
        return (f"--actuator {actuator} needs the car's camera: add --camera v4l2:/dev/video0 (or file:VIDEO, "
                "images:DIR, bag:PATH)")
    return None


def run(args: argparse.Namespace) -> int:
    from car.calibration import car_calibration
    from racer.processes.local import build_local, local_recorder

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        config = node.config_from_args(args, sim=args.sim)
        problem = argument_problem(args, config)
    except (ValueError, OSError) as exc:
        return fail("car", str(exc))
    if problem:
        return fail("car", problem)
    raise_open_file_limit()  # before any node starts: the graph's processes inherit it
    if config.transport != "local":
        return _run_graph(config, args.duration)
    signals = StopSignals()  # a signal during start-up must still end at neutral
    signals.install()
    try:
        if config.foxglove:  # a view that cannot be served stops the start before anything is opened
            from racer.processes.foxglove import foxglove_address
            foxglove_address(config.foxglove, config.state_dir)
        # Resolved before any device is opened: a bad file stops the start with nothing written.
        calibration = car_calibration(config)
        car, bundle = build_local(config, calibration.calibration)
    except (ValueError, OSError, RuntimeError) as exc:
        return fail("car", str(exc))
    try:
        local_recorder(config.record, car)
        if config.console:
            from racer.processes.console import start_car_console
            server = start_car_console(config, car.bus, car.graph.clock, bundle.name, calibration,
                                       model_path=bundle.source)
            car.closers.insert(0, server.stop)
        if config.foxglove:
            from racer.processes.foxglove import start_car_foxglove
            car.closers.insert(0, start_car_foxglove(config.foxglove, config.state_dir, car.bus).close)
    except (ValueError, OSError, RuntimeError) as exc:
        car.stop()  # the camera thread and the actuator's process end (at neutral) before this one does
        return fail("car", str(exc))
    driving = f"simulator {config.sim}" if config.sim else f"camera {car.graph.camera.source.name}"
    logging.getLogger("racer.car").info("model %s, %s", bundle.name, driving)
    stopped = car.run_until_signal(args.duration, signals)
    return fail("car", stopped, 1) if stopped else 0


def _run_graph(config: CarConfig, duration_s: float | None) -> int:
    """`--transport dds|ros`: one supervised process per node (racer.processes.graph)."""
    from racer.processes.graph import run_graph

    try:
        return run_graph(config, duration_s=duration_s)
    except (ValueError, OSError, RuntimeError) as exc:
        return fail("car", str(exc))
