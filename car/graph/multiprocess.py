"""One car node per process: the adapters of `car.graph.adapters` on a process bus (dds or rclpy).

A node process adds what the in-process runtime gives the graph for free: its own timers, its own
diagnostics, and for the actuator a DDS deadline on /drive, so a dead control process puts the
car at neutral by the actuator's own watchdog. A camera source or an actuator driver is opened here
from its spec (`sim`: the simulator link topics, else a device) with the car's calibration; the model
and the simulator itself are the caller's, which may import sim2real; this module never does.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from car.actuators.base import CalibratedDriver, Driver
from car.actuators.calibration import from_dict, wizard_ranges
from car.actuators.core import ActuatorCore
from car.calibration import car_calibration
from car.clock import Clock
from car.config import CarConfig
from car.control.core import NEUTRAL, ControlCore
from car.control.modes import Latch
from car.control.requests import ControlRequestError, control_request_json, parse_control_request
from car.graph.adapters import ActuatorNode, CameraNode, CameraSource, ControlNode, PolicyNode
from car.messages import DRIVE_TOPIC, ERROR, OK, DiagnosticStatus, KeyValue
from car.policy.core import PolicyCore, PolicyModel
from car.process import StopSignals, close_all
from car.transport import NodeBus
from car.transport.wire import CALIBRATION_TOPIC, CONTROL_REQUEST_TOPIC, MODEL_TOPIC

log = logging.getLogger("racer.node")

TICK_HZ = 100.0
DIAGNOSTICS_HZ = 1.0
CAMERA_RETRY_S = 0.1
CLOSE_TIMEOUT_S = 2.0  # longer than SimLinkCamera's frame timeout


class CameraProcess:
    """Reads the source on its own thread (a read blocks) and publishes on the bus's thread, newest frame first."""

    def __init__(self, bus: NodeBus, clock: Clock, source: CameraSource):
        self.bus, self.clock, self.source = bus, clock, source
        self.node = CameraNode(bus, clock, source)
        self.fault = ""
        self._pending: tuple[Any, float] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._counted = (0, time.monotonic())
        self._thread = threading.Thread(target=self._read_loop, name="camera reader", daemon=True)
        bus.timer(1.0 / DIAGNOSTICS_HZ, self.publish_diagnostics, clock)

    def start(self) -> None:
        self._thread.start()

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                frame, stamp = self.source.read()
            except Exception as exc:  # camera loss: no frames, so the control watchdog stops the car
                self.fault = str(exc)
                self._stop.wait(CAMERA_RETRY_S)
                continue
            self.fault = ""
            if self._stop.is_set():  # a frame read while closing: the bus may already be gone
                return
            with self._lock:
                waiting = self._pending is not None
                self._pending = (frame, stamp)
            if not waiting:
                self.bus.post(self._publish_pending)

    def _publish_pending(self) -> None:
        with self._lock:
            item, self._pending = self._pending, None
        if item is not None:
            self.node.publish_frame(*item)

    def publish_diagnostics(self) -> None:
        frames, since = self._counted
        now = time.monotonic()
        fps = (self.node.frames - frames) / max(now - since, 1e-9)
        self._counted = (self.node.frames, now)
        self.node._diag(DiagnosticStatus(
            level=ERROR if self.fault else OK, name="camera", message=self.fault or "ok",
            values=(KeyValue("frames", str(self.node.frames)), KeyValue("fps", f"{fps:.1f}"))))

    def close(self) -> None:
        """Ends the reader before the bus closes (a post to a closed rclpy node raises in the reader):
        the source's close ends a blocked read, else the read's own timeout does."""
        self._stop.set()
        close = getattr(self.source, "close", None)
        if close is not None:
            close()
        if self._thread.is_alive():
            self._thread.join(timeout=CLOSE_TIMEOUT_S)


class PolicyProcess:
    """The policy, and the model loads other nodes ask for on /policy/load, answered on /diagnostics.

    A request is `{"path": BUNDLE_DIR, "cache": CACHE_DIR, "id": ...}`; the node first asks control
    to stop (a new model never drives before a user starts it), then loads and compiles the bundle
    on its own executor (no /policy/drive meanwhile, so control's watchdog stops the car too) and
    answers with `load_id`, `load_result` ("ok" or the reason) and `model` in its "policy" status.
    """

    def __init__(self, bus: NodeBus, clock: Clock, model: PolicyModel, config: CarConfig, model_name: str = ""):
        vehicle = config.control
        self.core = PolicyCore.for_model(model, vehicle.max_steering_rad, vehicle.max_speed_mps)
        self.node = PolicyNode(bus, clock, self.core)
        self.model_name = model_name
        self.answer: tuple[KeyValue, ...] = ()
        self._control = bus.publisher(CONTROL_REQUEST_TOPIC)
        bus.subscribe(MODEL_TOPIC, self.on_load)
        bus.timer(1.0 / DIAGNOSTICS_HZ, self.publish_diagnostics, clock)

    def on_load(self, text: str) -> None:
        request_id, result = "", "ok"
        try:
            request = json.loads(text)
            request_id = str(request.get("id", ""))
            path, cache = Path(request["path"]), Path(request["cache"])
            self._control(control_request_json("stop", id=f"policy-load-{request_id}"))
            self.core.load(load_model(path, cache))
            self.model_name = path.name
        except (ValueError, KeyError, TypeError, AttributeError, OSError, RuntimeError) as exc:
            result = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
        log.info("model load %s: %s", text, result)
        self.answer = (KeyValue("load_id", request_id), KeyValue("load_result", result))
        self.publish_diagnostics()

    def publish_diagnostics(self) -> None:
        status = self.core.diagnostics()
        self.node._diag(replace(status, values=status.values + (KeyValue("model", self.model_name),) + self.answer))


def load_model(path: Path, cache: Path) -> PolicyModel:
    """A bundle directory as the policy runs it (a frozen graph converted once into `cache`/ir,
    compiled models kept in `cache`/compiled); BundleError (a ValueError) or RuntimeError when it cannot."""
    from car.policy.bundle import load_bundle
    from car.policy.inference import Policy
    return Policy(load_bundle(path, cache / "ir"), cache / "compiled").model()


class ControlProcess:
    """The mux on its timer, and the requests of other nodes (/control/command) answered on /diagnostics.

    `request` is the one entry for every request to the car (mode, start/stop, emergency stop, speed
    limits, calibration), whoever sends it: the core runs it, /drive is published at once and,
    for a new calibration, hands it to the actuator on /actuator/calibration. A change between driving
    and neutral is reported at once, with the age of the last policy command at that moment (node
    clock), so the time a stale input takes to stop the car is measured by the node that decides it;
    so is a change of the reason for the output (a console's status then says why the car drives or
    waits within a tick, not a diagnostics period, of the change).
    """

    def __init__(self, bus: NodeBus, clock: Clock, config: CarConfig, autostart: bool = False):
        self.core = ControlCore(config.control)
        self.node = ControlNode(bus, clock, self.core)
        self.answer: tuple[KeyValue, ...] = ()
        self._reported: tuple[bool, str] = (False, "")  # (driving, reason) as last published
        self._logged_latch: Latch | None = None
        self._calibration = bus.publisher(CALIBRATION_TOPIC)
        bus.subscribe(CONTROL_REQUEST_TOPIC, self.on_request)
        bus.timer(1.0 / TICK_HZ, self.tick, clock)
        bus.timer(1.0 / DIAGNOSTICS_HZ, self.publish_diagnostics, clock)
        if autostart:
            self.request("set_mode", "autonomous")
            self.request("start")

    def request(self, name: str, *args: Any) -> str:
        """Run the control request `name` (car.control.requests.FIELDS) with `args`, whoever asks (/control/command,
        the console, the stock DeepRacer services): "ok", or the core's reason for refusing it (a bad mode, out of
        range, not in calibration, a fault present)."""
        try:
            self.node.run_request(getattr(self.core, name), *args)
        except ValueError as exc:
            return str(exc)
        if name == "set_calibration":
            self._calibration(json.dumps(self.core.calibration))
        return "ok"

    def tick(self) -> None:
        self.node.tick()
        self._report_change()

    def _report_change(self) -> None:
        if (self.core.last_output.drive != NEUTRAL, self.core.last_reason) != self._reported:
            self.publish_diagnostics()
        latch = self.core.state.latch
        if latch is not None and latch is not self._logged_latch:  # once per latch: the car's log says why it stopped
            log.warning("latched: %s", latch.reason)
        self._logged_latch = latch

    def on_request(self, text: str) -> None:
        try:
            request = parse_control_request(text)
        except ControlRequestError as exc:
            request_id, result = exc.id, str(exc)
        else:
            request_id, result = request.id, self.request(request.name, *request.args)
        log.info("command %s: %s", text[:200], result)
        self.answer = (KeyValue("command_id", request_id), KeyValue("command_result", result))
        self.publish_diagnostics()

    def publish_diagnostics(self) -> None:
        driving = self.core.last_output.drive != NEUTRAL
        self._reported = (driving, self.core.last_reason)
        now = self.node.clock.now()
        status = self.core.diagnostics(now)
        age = self.core.mux.age("policy", now)
        extra = (KeyValue("driving", str(driving).lower()),
                 KeyValue("policy_age_ms", f"{age * 1000:.0f}" if math.isfinite(age) else ""))
        self.node._diag(replace(status, values=status.values + extra + self.answer))


class ActuatorProcess:
    """The actuator with two watchdogs: its core's timeout on the node clock, and the deadline on /drive.

    The calibration it applies is control's (/actuator/calibration, a calibration.json document, from
    which it derives the wizard's bounded raw ranges); a document it cannot parse is an actuator fault,
    which control latches. A change between driving and neutral is reported on /diagnostics at once,
    with the age of the last command at that moment, so the time to neutral is measured by the actuator
    itself.
    """

    def __init__(self, bus: NodeBus, clock: Clock, driver: Driver, config: CarConfig):
        self.core = ActuatorCore.from_config(driver, config)
        if isinstance(driver, CalibratedDriver):
            self.core.set_calibrations(driver.calibration, wizard_ranges(driver.calibration))
        bus.watch_deadline(DRIVE_TOPIC, self.core.timeout_s, self.on_deadline_missed)
        self.node = ActuatorNode(bus, clock, self.core)
        self._reported = self.core.at_neutral
        bus.subscribe(DRIVE_TOPIC, lambda msg: self._report_change())
        bus.subscribe(CALIBRATION_TOPIC, self.on_calibration)
        bus.timer(1.0 / TICK_HZ, self.tick, clock)
        bus.timer(1.0 / DIAGNOSTICS_HZ, self.node.publish_diagnostics, clock)

    def on_calibration(self, text: str) -> None:
        try:
            car = from_dict(json.loads(text))
        except ValueError as exc:  # CalibrationError, or not JSON
            with self.core.lock:
                self.core.neutral()
                self.core.fault = f"calibration refused: {exc}"
            self.node.publish_diagnostics()
            return
        self.core.set_calibrations(car, wizard_ranges(car))
        log.info("calibration applied: %s", text)

    def tick(self) -> None:
        self.node.tick()
        self._report_change()

    def on_deadline_missed(self) -> None:
        if not self.core.at_neutral:
            log.warning("no /drive within the deadline: neutral")
            self.core.neutral()
            self._report_change()

    def _report_change(self) -> None:
        if self.core.at_neutral != self._reported:
            self._reported = self.core.at_neutral
            self.node.publish_diagnostics()

    def close(self) -> None:
        self.core.close()


def spin_until_signal(bus: NodeBus, closers: list[Callable[[], None]], signals: StopSignals | None = None) -> None:
    """Spin until SIGTERM/SIGINT, then run `closers` (actuator to neutral, bag finished) and leave the domain.

    `signals`: the handlers the caller installed for its start-up (default: installed here); a signal
    that came while the node was being built (its driver already open) ends it here, through the
    closers. The handlers only note a signal and a thread of this function stops the bus: a handler
    that stopped it itself could deadlock on the bus's lock when a second signal came inside it.
    """
    if signals is None:
        signals = StopSignals()
        signals.install()
    done = threading.Event()

    def stop_on_signal() -> None:
        signals.wait()
        if not done.is_set():
            bus.stop()

    try:
        if signals.is_set():
            return
        threading.Thread(target=stop_on_signal, name="stop signals", daemon=True).start()
        bus.spin()
    finally:
        done.set()
        signals.event.set()
        close_all([*closers, bus.close])


def open_source(spec: str, bus: NodeBus, fps: float) -> CameraSource:
    """The camera node's source for `spec`: `sim` is the simulator link on `bus`, anything else
    `car.camera.capture.open_camera` (ValueError for a malformed spec, CameraFault for a missing device)."""
    if spec == "sim":
        from car.graph.simlink import SimLinkCamera
        return SimLinkCamera(bus)
    from car.camera.capture import open_camera
    return open_camera(spec, fps=fps)


def open_driver(spec: str, bus: NodeBus, config: CarConfig) -> Driver:
    """The actuator driver for `spec`: the simulator link on `bus`, or hardware opened (at neutral) with the
    car's calibration (`car.calibration.car_calibration(config)`), so the first pulse is already the calibrated
    one. The calibration is resolved only for hardware (the simulated car has none): CalibrationError names a
    bad file."""
    if spec == "sim":
        from car.graph.simlink import SimLinkDriver
        return SimLinkDriver(bus)
    from car.actuators.open import open_actuator
    return open_actuator(spec, car_calibration(config).calibration)
