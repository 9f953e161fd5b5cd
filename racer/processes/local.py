"""`racer car --transport local`: the whole graph in this process, on the simulator or on hardware."""
from __future__ import annotations

import argparse
import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from calibration.servo import Calibration


class ReplayDriver:
    """The actuator of a replay without hardware (`--camera bag:PATH` alone): the policy's commands
    reach /drive (and `--record`), and nothing moves."""

    def set(self, steering: float, throttle: float) -> None:
        """Nothing to drive."""

    def neutral(self) -> None:
        """Nothing to drive."""

    def close(self) -> None:
        """Nothing to release."""


def build_local(args: argparse.Namespace, params: dict[str, dict[str, Any]], calibration: Calibration,
                stop: threading.Event | None = None):
    """(stack, runtime, bundle) for the in-process transport, on the simulator or on hardware opened
    with `calibration`."""
    from car.clock import WallClock
    from car.config import model_path
    from car.graph.runtime import CarRuntime
    from car.graph.stack import LocalStack
    from car.policy.bundle import load_bundle
    from car.policy.inference import Policy

    bundle = load_bundle(model_path(params, args.model))
    model = Policy(bundle).model()
    if args.sim:
        from sim2real.drive import sim_runtime
        from sim2real.sim.track import Track
        from sim2real.sim.world import Simulator

        runtime = sim_runtime(Simulator(Track.load(args.sim)), model, params, stop=stop)
        stack = runtime.stack
    else:
        from car.actuators.isolated import IsolatedDriver
        from car.actuators.open import parse_actuator_spec
        from car.camera.capture import open_camera

        cam = params["camera"]
        spec = args.actuator or params["actuator"].get("spec") or "sim"
        if spec != "sim":
            parse_actuator_spec(spec)  # a malformed spec is a one-line error before anything is opened
        camera = open_camera(args.camera or cam.get("source"), fps=float(cam.get("fps", 15.0)))
        try:
            if spec == "sim":  # argument_problem allows this only for a replay
                logging.getLogger("racer.car").info("replay without an actuator: nothing moves")
                driver = ReplayDriver()
                if stop is not None:
                    threading.Thread(target=_end_with_the_recording, args=(camera, stop), name="replay end",
                                     daemon=True).start()
            else:
                # The device and a last watchdog in a process of their own: nothing the console does here can
                # hold them.
                driver = IsolatedDriver(spec, calibration, float(params["actuator"].get("timeout_s", 0.25)))
        except BaseException:
            # The camera's reader thread must not outlive a failed start: a process that exits while it is
            # inside OpenCV's native code can abort in C++ teardown instead of ending with the one-line error.
            camera.close()
            raise
        stack = LocalStack(WallClock(), camera, driver, model, params)
        runtime = CarRuntime(stack, stop_event=stop)
    return stack, runtime, bundle


def _end_with_the_recording(camera: Any, stop: threading.Event, linger_s: float = 1.0) -> None:
    """A replay on a laptop ends when its recording does (a looping one never does), `linger_s`
    later, so a `--record` of it also holds the neutral that control sends once the camera is gone."""
    while not stop.wait(0.1):
        if camera.ended.is_set():
            logging.getLogger("racer.car").info("the replay is over: stopping")
            stop.wait(linger_s)
            stop.set()


def local_recorder(args: argparse.Namespace, stack: Any) -> Any:
    """`--record DIR` on the local transport: the recorder listens on the in-process bus."""
    if not args.record:
        return None
    from car.graph.recorder import BagRecorder
    return BagRecorder(stack.bus, stack.clock, args.record)
