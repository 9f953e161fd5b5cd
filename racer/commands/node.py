"""`racer node NAME`: one node of the car graph as a process.

`racer car --transport dds|ros` starts these under its supervisor and `launch/car.launch.py` starts
them as ROS 2 nodes. The node itself is built by `racer.processes.node` (the simulator world by
`racer.processes.sim_world`).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from car.openfiles import raise_open_file_limit
from racer.commands import fail

NODE_NAMES = ("sim", "camera", "policy", "control", "actuator", "recorder", "console", "foxglove")
# The options each node uses (dest: (flag, default)); given to another node they would do nothing, so
# they are refused.
NODE_OPTIONS = {
    "sim": {"track": ("--track", None), "sim_rate": ("--sim-rate", 1.0)},
    "camera": {"camera": ("--camera", None)},
    "policy": {"model": ("--model", None), "state_dir": ("--state-dir", None)},
    "control": {"autostart": ("--autostart", False), "calibration": ("--calibration", None),
                "state_dir": ("--state-dir", None)},
    "actuator": {"actuator": ("--actuator", None), "calibration": ("--calibration", None),
                 "state_dir": ("--state-dir", None)},
    "recorder": {"record": ("--record", None)},
    "console": {"console": ("--console", None), "console_name": ("--console-name", []),
                "calibration": ("--calibration", None), "state_dir": ("--state-dir", None), "model": ("--model", None)},
    "foxglove": {"foxglove": ("--foxglove", None), "state_dir": ("--state-dir", None)},
}
NODE_ERRORS = (ValueError, OSError, RuntimeError)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("node", help="run one node of the car graph (racer car --transport dds|ros and the launch "
                                    "file start these)",
                       description="Run one node of the car graph (started by `racer car` and the launch file).")
    p.add_argument("name", choices=NODE_NAMES, help="the node to run")
    p.add_argument("--config", type=Path, help="ROS 2 parameter YAML (default: launch/params/car.yaml)")
    p.add_argument("--transport", choices=("dds", "ros"), default="dds",
                   help="dds = Cyclone DDS without ROS; ros = rclpy (default: %(default)s)")
    p.add_argument("--sim-time", action="store_true", help="follow the simulator's /clock (use_sim_time)")
    p.add_argument("--track", help="sim: the track to simulate")
    p.add_argument("--sim-rate", type=float, default=NODE_OPTIONS["sim"]["sim_rate"][1],
                   help="sim: simulated seconds per wall second")
    p.add_argument("--camera", metavar="SPEC", help="camera: source spec (default: camera.source)")
    p.add_argument("--actuator", metavar="SPEC", help="actuator: driver spec (default: actuator.spec)")
    p.add_argument("--calibration", type=Path, help="actuator, control, console: DeepRacer calibration.json")
    p.add_argument("--state-dir", type=Path,
                   help="actuator, control, console, foxglove: the car's state dir (models, password; its "
                        "calibration.json wins); policy: its models (the load services on ros)")
    p.add_argument("--model", type=Path, help="policy, console: the start-up model bundle (default: policy.model, "
                                              "else the bundled model)")
    p.add_argument("--console", metavar="HOST:PORT", help="console: where to serve it (default: console.address, "
                                                          "else 127.0.0.1:8080)")
    p.add_argument("--console-name", action="append", default=[], metavar="NAME",
                   help="console: another DNS name it answers to; repeatable")
    p.add_argument("--foxglove", metavar="HOST:PORT", help="foxglove: where to serve the live view (default: "
                                                           "127.0.0.1:8765; beyond loopback only with the console's "
                                                           "API tokens in --state-dir)")
    p.add_argument("--autostart", action="store_true", help="control: start in autonomous mode (simulator only)")
    p.add_argument("--record", type=Path, metavar="DIR", help="recorder: directory for the bag")
    p.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                   help="ROS 2 arguments (added by ros2 launch)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from car.config import load_params
    from car.graph.multiprocess import spin_until_signal
    from car.process import StopSignals, die_with_parent
    from car.transport import open_bus
    from car.transport.dds import TimeWentBackwards
    from racer.processes.node import build_node

    die_with_parent()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {args.name} %(levelname)s %(message)s")
    own = NODE_OPTIONS.get(args.name, {})
    unused = list(dict.fromkeys(flag for options in NODE_OPTIONS.values() for dest, (flag, default) in options.items()
                                if dest not in own and getattr(args, dest) != default))
    if unused:
        return fail(f"node {args.name}", f"{' and '.join(unused)} {'is' if len(unused) == 1 else 'are'} not "
                                         f"for the {args.name} node; leave {'it' if len(unused) == 1 else 'them'} out")
    if args.autostart and not args.sim_time:
        return fail(f"node {args.name}", "--autostart is for the simulator (with --sim-time)")
    raise_open_file_limit()  # also for nodes that ros2 launch starts without `racer car`
    stopping = StopSignals()  # a signal during start-up still ends at neutral (spin_until_signal)
    stopping.install()
    try:
        params = load_params(args.config)
        if args.name == "sim":
            from racer.processes.sim_world import run_world
            return run_world(args, params)
        bus = open_bus(args.transport, args.name, args.ros_args)
        closers = build_node(args, params, bus)
    except NODE_ERRORS as exc:
        return fail(f"node {args.name}", str(exc))
    try:
        spin_until_signal(bus, closers, stopping)
    except TimeWentBackwards as exc:  # the simulator restarted: start again with fresh state
        return fail(f"node {args.name}", str(exc))
    return 0
