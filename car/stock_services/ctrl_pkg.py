"""The stock DeepRacer control services (`/ctrl_pkg/*`, `deepracer_interfaces_pkg/srv`), so `ros2 service call`
and tools written for the stock car drive a racer car.

Each mode, start/stop or speed request becomes the `car.control.commands.Command` that /control/command
would carry and runs through control's one request path (`ControlProcess.request`): every rule of the
state machine applies, and the answer appears on /diagnostics as for any other sender. The calibration
is control's (it owns what the actuator applies): read and set here, in calibration mode only.

Meanings as on the stock car (fields in car/interfaces/deepracer_interfaces_pkg/srv/, the services in
docs/operators-guide.md section 8): `state` 0 manual, 1 autonomous, 2 calibration; `cal_type` 0 steering
servo, 1 motor (ESC), values in ns as in calibration.json;
`error` 0 = done, 1 = refused or failed (the stock value), the reason in the log and on /diagnostics.
The mappings below are pure (request fields in, command or response fields out); `ControlServices`
is the thin adapter onto a bus that serves ROS 2 services (`car.transport.ros.RosBus.serve`).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from car.control.commands import Command, CommandError
from car.control.modes import Mode
from car.messages import DIAGNOSTICS_TOPIC, DiagnosticArray, KeyValue

log = logging.getLogger("racer.services")

PACKAGE = "deepracer_interfaces_pkg/srv"
MODES = (Mode.MANUAL, Mode.AUTONOMOUS, Mode.CALIBRATION)  # the stock state numbers are the indices
SERVICE_TYPES = {  # /ctrl_pkg/<name>: its type in PACKAGE
    "vehicle_state": "ActiveStateSrv",
    "enable_state": "EnableStateSrv",
    "autonomous_throttle": "NavThrottleSrv",
    "get_car_cal": "GetCalibrationSrv",
    "set_car_cal": "SetCalibrationSrv",
    "get_ctrl_modes": "GetCtrlModesSrv",
    "is_model_loading": "GetModelLoadingStatusSrv",
}
CAL_TYPES = ("servo", "motor")  # cal_type 0, 1: the fields of a calibration.json Calibration
DONE, REFUSED = 0, 1
# What the policy node reports on /diagnostics about its model (car.stock_services.inference_pkg).
MODEL_STATUS = "policy/model"
LOADING_KEY = "model_loading_status"


def _integer(request: dict[str, Any], field: str) -> int:
    value = request.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CommandError(f"{field} must be an integer, got {value!r}")
    return value


def vehicle_state(request: dict[str, Any]) -> Command:
    """ActiveStateSrv `state` -> set_mode; CommandError for a state the car does not have."""
    state = _integer(request, "state")
    if not 0 <= state < len(MODES):
        raise CommandError(f"unknown state {state}; expected 0 manual, 1 autonomous or 2 calibration")
    return Command("set_mode", (MODES[state].value,))


def enable_state(request: dict[str, Any]) -> Command:
    """EnableStateSrv `is_active` -> start (the user's action that lets the car move) or stop."""
    active = request.get("is_active")
    if not isinstance(active, bool):
        raise CommandError(f"is_active must be true or false, got {active!r}")
    return Command("start" if active else "stop")


def autonomous_throttle(request: dict[str, Any]) -> Command:
    """NavThrottleSrv `throttle` -> set_max_speed (0..1; control refuses anything else, NaN included)."""
    return Command("set_max_speed", (request.get("throttle"),))


def answer(result: str) -> dict[str, int]:
    """The response of a command service from control's result ("ok" or the reason it refused)."""
    return {"error": DONE if result == "ok" else REFUSED}


def ctrl_modes() -> dict[str, Any]:
    """GetCtrlModesSrv: every mode the state machine has, by its stock number."""
    return {"modes": list(range(len(MODES))), "error": DONE}


def cal_type(request: dict[str, Any]) -> str:
    """`cal_type` -> the calibration field it names ("servo" or "motor"); CommandError otherwise."""
    kind = _integer(request, "cal_type")
    if not 0 <= kind < len(CAL_TYPES):
        raise CommandError(f"unknown cal_type {kind}; expected 0 (steering servo) or 1 (motor)")
    return CAL_TYPES[kind]


def car_cal(calibration: Any, request: dict[str, Any]) -> dict[str, int]:
    """GetCalibrationSrv's response: one output's pulse range of `calibration` (calibration.servo.Calibration)."""
    pulses = getattr(calibration, cal_type(request))
    return {"max": pulses.max, "mid": pulses.mid, "min": pulses.min, "polarity": pulses.polarity, "error": DONE}


class CalibrationFormat(Protocol):
    """What control needs of `calibration.servo` (passed in by the composer: car never imports calibration)."""

    def validate_range(self, pulses: Any, where: str) -> None: ...

    def save(self, calibration: Any, path: Path) -> None: ...

    def to_dict(self, calibration: Any) -> dict[str, Any]: ...


def updated_calibration(calibration: Any, request: dict[str, Any], fmt: CalibrationFormat) -> Any:
    """`calibration` with SetCalibrationSrv's output replaced; ValueError (the field and why) if out of range."""
    field = cal_type(request)
    pulses = dataclasses.replace(getattr(calibration, field), **{
        key: _integer(request, key) for key in ("min", "mid", "max", "polarity")})
    fmt.validate_range(pulses, f"Calibration.{field.capitalize()}")
    return dataclasses.replace(calibration, **{field: pulses})


class ServiceBus(Protocol):
    """A node's bus that also serves ROS 2 services (car.transport.ros.RosBus)."""

    def serve(self, name: str, ros_type: str, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None: ...

    def subscribe(self, topic: str, callback: Callable[[Any], None]) -> None: ...

    def publisher(self, topic: str) -> Callable[[Any], None]: ...

    def timer(self, period_s: float, callback: Callable[[], None], clock: Any) -> None: ...


class ControlProcessLike(Protocol):
    """What the services need of `car.graph.multiprocess.ControlProcess`: its one request path and its answer
    on /diagnostics (`answer`, the command_id and command_result values it publishes)."""

    core: Any
    answer: tuple[KeyValue, ...]

    def request(self, name: str, *args: Any) -> str: ...

    def publish_diagnostics(self) -> None: ...


class ControlServices:
    """Serves `/ctrl_pkg/*` for a control process; `calibration` is the car's (calibration.servo.CarCalibration:
    the values in use and the state dir file that set_car_cal replaces atomically)."""

    def __init__(self, bus: ServiceBus, control: ControlProcessLike, calibration: Any, fmt: CalibrationFormat):
        self.control, self.fmt = control, fmt
        self.calibration, self.calibration_file = calibration.calibration, Path(calibration.state_file)
        self.model_loading = "loaded"  # the policy node starts with its model loaded
        for name, handler in (("vehicle_state", self._command("vehicle_state", vehicle_state)),
                              ("enable_state", self._command("enable_state", enable_state)),
                              ("autonomous_throttle", self._command("autonomous_throttle", autonomous_throttle)),
                              ("get_car_cal", self._refusable("get_car_cal", lambda r: car_cal(self.calibration, r))),
                              ("set_car_cal", self._refusable("set_car_cal", self.set_car_cal)),
                              ("get_ctrl_modes", lambda r: ctrl_modes()),
                              ("is_model_loading", lambda r: {"model_loading_status": self.model_loading,
                                                              "error": DONE})):
            bus.serve(f"/ctrl_pkg/{name}", f"{PACKAGE}/{SERVICE_TYPES[name]}", handler)
        bus.subscribe(DIAGNOSTICS_TOPIC, self._on_diagnostics)

    def _command(self, name: str, mapping: Callable[[dict[str, Any]], Command]) -> Callable[[dict[str, Any]], dict]:
        """The service `name` as a command through control, answered on /diagnostics with the service's name as id."""
        def handle(request: dict[str, Any]) -> dict[str, Any]:
            try:
                command = mapping(request)
            except CommandError as exc:
                log.info("/ctrl_pkg/%s %s refused: %s", name, request, exc)
                return answer(str(exc))
            result = self.control.request(command.name, *command.args)
            log.info("/ctrl_pkg/%s %s: %s", name, request, result)
            self.control.answer = (KeyValue("command_id", f"/ctrl_pkg/{name}"), KeyValue("command_result", result))
            self.control.publish_diagnostics()
            return answer(result)
        return handle

    @staticmethod
    def _refusable(name: str, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[dict[str, Any]], dict]:
        """The service `name`'s handler, with a refusal (and its reason in the log) for any bad request."""
        def handle(request: dict[str, Any]) -> dict[str, Any]:
            try:
                return handler(request)
            except (ValueError, OSError) as exc:  # CommandError, CalibrationError, a state dir that cannot be written
                log.info("/ctrl_pkg/%s %s refused: %s", name, request, exc)
                return {"error": REFUSED}
        return handle

    def set_car_cal(self, request: dict[str, Any]) -> dict[str, int]:
        """Validate, hand to the actuator through control (as the console's wizard does), then save: a
        refused or failed request changes neither the file nor the values served."""
        if self.control.core.state.mode is not Mode.CALIBRATION:
            raise ValueError("set_car_cal needs calibration mode (vehicle_state 2, entered only from stopped)")
        updated = updated_calibration(self.calibration, request, self.fmt)
        answer = self.control.request("set_calibration", self.fmt.to_dict(updated))
        if answer != "ok":
            raise ValueError(answer)
        self.calibration_file.parent.mkdir(parents=True, exist_ok=True)  # a fresh state dir
        self.fmt.save(updated, self.calibration_file)
        self.calibration = updated
        log.info("calibration saved to %s and applied", self.calibration_file)
        return {"error": DONE}

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == MODEL_STATUS:
                self.model_loading = status.value(LOADING_KEY) or self.model_loading

