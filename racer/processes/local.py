"""`racer car --transport local` and `racer demo`: the car's nodes (the classes `dds` and `ros` run, one
process each) in this process, on one in-process bus; with `--sim`, the simulator world node too.

The simulator world is the `racer node sim` node (`racer.processes.sim_world`) on the same bus: the
camera and actuator nodes reach it through the sim link topics and every node follows its /clock,
exactly as with one process per node.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from car.clock import WallClock
from car.config import CarConfig
from car.graph.stack import CarGraph
from car.process import close_all
from car.transport.local import LocalBus

if TYPE_CHECKING:
    from car.actuators.calibration import Calibration
    from car.process import StopSignals
    from racer.processes.sim_world import SimWorld

log = logging.getLogger("racer.car")


class ReplayDriver:
    """The actuator of a replay without hardware (`--camera bag:PATH` alone): the policy's commands
    reach /drive (and `--record`), and nothing moves."""

    def set(self, steering: float, throttle: float) -> None:
        """Nothing to drive."""

    def neutral(self) -> None:
        """Nothing to drive."""

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class LocalCar:
    """The graph on a LocalBus, and what to close when it ends (console, recorder: `closers`, run first)."""

    bus: LocalBus
    graph: CarGraph
    world: SimWorld | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Spin on a thread of its own (tests, benchmarks); `stop` ends it."""
        self.graph.camera.start()
        self._thread = threading.Thread(target=self.bus.spin, name="car executor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.bus.stop()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._close()

    def _close(self) -> None:
        close_all([*self.closers, self.graph.close, self.bus.close])

    def run_until_signal(self, duration_s: float | None = None, signals: StopSignals | None = None) -> str | None:
        """Spin on this thread until SIGTERM/SIGINT (or `duration_s`), then close at neutral. Returns why
        the car stopped when a fault ended it (`CarGraph.fault`: control could not hold the emergency
        stop), else None."""
        from car.graph.multiprocess import spin_until_signal

        if duration_s is not None:
            self.bus.timer(duration_s, self.bus.stop, WallClock())
        self.graph.camera.start()
        spin_until_signal(self.bus, [*self.closers, self.graph.close], signals)
        if self.graph.stopped_by_fault:
            return f"stopped at neutral: control could not hold the emergency stop after {self.graph.last_fault}"
        return None


def sim_car(track: Any, model: Any, config: CarConfig = CarConfig(), model_name: str = "",
            wrap_driver: Callable[[Any], Any] | None = None) -> LocalCar:
    """The car on the simulator world node, in real time (autonomous from the start with `config.autostart`).
    `wrap_driver` wraps the sim-link actuator driver (tests record the outputs)."""
    from car.graph.simlink import SimLinkCamera, SimLinkDriver
    from racer.processes.sim_world import PHYSICS_HZ, SimWorld

    bus = LocalBus()
    world = SimWorld(bus, track, config.camera.fps)
    clock = bus.node_clock(sim_time=True)

    bus.timer(1.0 / PHYSICS_HZ, world.step, WallClock())
    driver = SimLinkDriver(bus)
    graph = CarGraph(clock, SimLinkCamera(bus), wrap_driver(driver) if wrap_driver else driver, model, config,
                     bus=bus, model_name=model_name)
    bus.on_error = graph.fault
    return LocalCar(bus, graph, world)


def build_local(config: CarConfig, calibration: Calibration) -> tuple[LocalCar, Any]:
    """(car, bundle) for the in-process transport, on the simulator or on hardware opened with `calibration`."""
    from car.policy.bundle import load_bundle
    from car.policy.inference import Policy

    bundle = load_bundle(config.model)
    model = Policy(bundle).model()
    if config.sim:
        from sim2real.sim.track import Track
        return sim_car(Track.load(config.sim), model, config, bundle.name), bundle
    from car.actuators.isolated import IsolatedDriver
    from car.actuators.open import parse_actuator_spec
    from car.camera.capture import open_camera

    spec = config.actuator.spec
    if spec != "sim":
        parse_actuator_spec(spec)  # a malformed spec is a one-line error before anything is opened
    camera = open_camera(config.camera.source, fps=config.camera.fps)
    driver: Any = None
    try:
        if spec == "sim":  # argument_problem allows this only for a replay
            log.info("replay without an actuator: nothing moves")
            driver = ReplayDriver()
        else:
            # The device and a last watchdog in a process of their own: nothing the console does here can hold them.
            driver = IsolatedDriver(spec, calibration, config.actuator.timeout_s)
        bus = LocalBus()
        graph = CarGraph(WallClock(), camera, driver, model, config, bus=bus, model_name=bundle.name)
    except BaseException:
        # The camera's reader thread must not outlive a failed start: a process that exits while it is
        # inside OpenCV's native code can abort in C++ teardown instead of ending with the one-line error.
        close_all([driver.close, camera.close] if driver is not None else [camera.close])
        raise
    bus.on_error = graph.fault
    if spec == "sim":
        _end_with_the_recording(bus, camera)
    return LocalCar(bus, graph), bundle


def _end_with_the_recording(bus: LocalBus, camera: Any, linger_s: float = 1.0) -> None:
    """A replay on a laptop ends when its recording does (a looping one never does), `linger_s`
    later, so a `--record` of it also holds the neutral that control sends once the camera is gone."""
    clock = WallClock()
    ending: list[float] = []

    def check() -> None:
        if not ending and camera.ended.is_set():
            log.info("the replay is over: stopping")
            ending.append(clock.now() + linger_s)
        if ending and clock.now() >= ending[0]:
            bus.stop()

    bus.timer(0.1, check, clock)


def local_recorder(record: Path | None, car: LocalCar) -> Any:
    """`--record DIR` on the local transport: the recorder listens on the in-process bus."""
    if not record:
        return None
    from car.graph.recorder import BagRecorder
    recorder = BagRecorder(car.bus, car.graph.clock, record)
    car.closers.append(recorder.close)
    return recorder
