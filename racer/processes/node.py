"""`racer node NAME`: one node of the car graph built from the car's configuration.

Here the node's outside world is chosen from the configuration (camera source, actuator driver, model
bundle); the simulator world is `sim_world`.
"""
from __future__ import annotations

import logging
from typing import Any

from car.config import FOXGLOVE_ADDRESS, CarConfig


def build_node(name: str, config: CarConfig, bus: Any) -> list[Any]:
    """The node `name` (camera, policy, control, actuator, recorder, console or foxglove) on `bus`; returns what
    to close when it ends. ValueError, OSError or RuntimeError (CameraFault, ActuatorFault, BundleError) when it
    cannot start."""
    from car.graph import multiprocess as node

    clock = bus.node_clock(config.sim_time)
    if name == "camera":
        camera = node.CameraProcess(bus, clock, node.open_source(config.camera.source, bus, config.camera.fps))
        camera.start()
        return [camera.close]
    if name == "policy":
        from car.policy.bundle import load_bundle
        from car.policy.inference import Policy

        bundle = load_bundle(config.model)
        policy = node.PolicyProcess(bus, clock, Policy(bundle).model(), config, bundle.name)
        if config.transport == "ros":
            from car.console.state import default_state_dir
            from car.stock_services.inference_pkg import ModelLoadService
            ModelLoadService(bus, clock, policy.node.core, config.state_dir or default_state_dir())
        return []
    if name == "control":
        control = node.ControlProcess(bus, clock, config, autostart=config.autostart)
        if config.transport == "ros":
            from car.calibration import car_calibration
            from car.stock_services.ctrl_pkg import ControlServices
            ControlServices(bus, control, car_calibration(config))
        return []
    if name == "actuator":
        actuator = node.ActuatorProcess(bus, clock, node.open_driver(config.actuator.spec, bus, config), config)
        return [actuator.close]
    if name == "console":
        from car.policy.bundle_layout import bundle_name
        from racer.processes.console import start_car_console
        return [start_car_console(config, bus, clock, bundle_name(config.model), model_path=config.model).stop]
    if name == "foxglove":
        from racer.processes.foxglove import start_car_foxglove
        return [start_car_foxglove(config.foxglove or FOXGLOVE_ADDRESS, config.state_dir, bus).close]
    if config.record is None:
        raise ValueError("the recorder needs --record DIR")
    from car.graph.recorder import BagRecorder
    recorder = BagRecorder(bus, clock, config.record)
    logging.getLogger("racer.node").info("recording to %s", recorder.path)
    return [recorder.close]
