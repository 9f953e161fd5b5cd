"""`racer node NAME`: one node of the car graph built from the command's options.

Here the node's outside world is resolved (camera source, actuator driver and calibration, model
bundle), which the car package leaves to its caller; the simulator world is `sim_world`.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any


def open_node_driver(spec: str, args: argparse.Namespace, params: dict[str, dict[str, Any]], bus: Any) -> Any:
    """`car.graph.multiprocess.open_driver` with the car's calibration as `racer car` or `racer node` resolve it."""
    from car.graph.multiprocess import open_driver
    from racer.processes.calibration import car_calibration
    return open_driver(spec, bus, lambda: car_calibration(args, params).calibration)


def build_node(args: argparse.Namespace, params: dict[str, dict[str, Any]], bus: Any) -> list[Any]:
    """The node `args.name` (camera, policy, control, actuator, recorder, console or foxglove) on `bus`, built from the
    options of `racer node`; returns what to close when it ends. ValueError, OSError or RuntimeError
    (CameraFault, ActuatorFault, BundleError) when it cannot start."""
    from car.graph import multiprocess as node

    clock = bus.node_clock(args.sim_time)
    if args.name == "camera":
        source = node.open_source(args.camera or params["camera"].get("source") or "", bus,
                                  float(params["camera"].get("fps", 15.0)))
        camera = node.CameraProcess(bus, clock, source)
        camera.start()
        return [camera.close]
    if args.name == "policy":
        from car.config import model_path
        from car.policy.bundle import load_bundle
        from car.policy.inference import Policy

        bundle = load_bundle(model_path(params, args.model))
        policy = node.PolicyProcess(bus, clock, Policy(bundle).model(), params, bundle.name)
        if args.transport == "ros":
            from car.console.state import default_state_dir
            from car.stock_services.inference_pkg import ModelLoadService
            ModelLoadService(bus, clock, policy.node.core, args.state_dir or default_state_dir())
        return []
    if args.name == "control":
        control = node.ControlProcess(bus, clock, params, autostart=args.autostart)
        if args.transport == "ros":
            import calibration.servo
            from car.stock_services.ctrl_pkg import ControlServices
            from racer.processes.calibration import car_calibration
            ControlServices(bus, control, car_calibration(args, params), calibration.servo)
        return []
    if args.name == "actuator":
        spec = args.actuator or params["actuator"].get("spec") or ""
        from calibration import servo
        actuator = node.ActuatorProcess(bus, clock, open_node_driver(spec, args, params, bus), params, servo)
        return [actuator.close]
    if args.name == "console":
        from car.config import model_path
        from car.policy.bundle_layout import bundle_name
        from racer.processes.console import start_car_console
        model = model_path(params, args.model)
        args.console = args.console or params.get("console", {}).get("address") or "127.0.0.1:8080"
        return [start_car_console(args, params, bus, clock, bundle_name(model), model_path=model).stop]
    if args.name == "foxglove":
        from racer.processes.foxglove import start_car_foxglove
        return [start_car_foxglove(args.foxglove or "127.0.0.1:8765", args.state_dir, bus).close]
    if args.record is None:
        raise ValueError("the recorder needs --record DIR")
    from car.graph.recorder import BagRecorder
    recorder = BagRecorder(bus, clock, args.record)
    logging.getLogger("racer.node").info("recording to %s", recorder.path)
    return [recorder.close]
