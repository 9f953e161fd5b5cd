"""Control requests: what other nodes ask the control node's state machine, on /control/command (a
std_msgs/String holding JSON; the topic and the `command` key keep the names on the wire).

A request is not a drive command (steering and speed on /drive, /policy/drive, /teleop/drive), a teleop
message (the console's WebSocket) nor a `racer` subcommand. `{"command": "set_mode", "mode": "autonomous",
"id": "42"}`; requests and their fields:
set_mode (mode: manual|autonomous|calibration), start, stop, emergency_stop, fault (reason: a client
that drove is lost; latched like a fault), set_max_speed and set_manual_max_speed (value: 0..1),
calibrate (steering, throttle: -1..1, calibration mode only), set_calibration (calibration: the
DeepRacer calibration.json document, at neutral only). `id` is optional and echoed.
The control node answers on /diagnostics at once: its "control" status carries the mode, running,
max_speed and watchdog, plus `command_id` and `command_result` ("ok" or the reason it was refused).
The topic is reliable and volatile: a request sent while control is down is lost, never replayed
to a restarted node, so a stale "start" cannot move the car.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

FIELDS: dict[str, tuple[str, ...]] = {
    "set_mode": ("mode",),
    "start": (),
    "stop": (),
    "emergency_stop": (),
    "fault": ("reason",),
    "set_max_speed": ("value",),
    "set_manual_max_speed": ("value",),
    "calibrate": ("steering", "throttle"),
    "set_calibration": ("calibration",),
}
NUMERIC = {"value", "steering", "throttle"}
TEXT = {"mode", "reason"}


class ControlRequestError(ValueError):
    """A request the control node refuses; `id` is the request's own, when it had one, for the answer."""

    def __init__(self, message: str, id: str = ""):
        super().__init__(message)
        self.id = id


@dataclass(frozen=True)
class ControlRequest:
    name: str
    args: tuple[Any, ...] = ()
    id: str = ""


def control_request_json(name: str, *, id: str = "", **fields: Any) -> str:
    """The JSON text of a request, checked as the control node will check it."""
    text = json.dumps({"command": name, **fields, **({"id": id} if id else {})})
    parse_control_request(text)
    return text


def parse_control_request(text: str) -> ControlRequest:
    """ControlRequestError with the reason for anything the control node would refuse before running it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ControlRequestError(f"command is not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ControlRequestError("command must be a JSON object")
    command_id = str(data.get("id", ""))
    name = data.get("command")
    if name not in FIELDS:
        raise ControlRequestError(f"unknown command {name!r}; expected one of {', '.join(FIELDS)}", command_id)
    unknown = sorted(set(data) - {"command", "id", *FIELDS[name]})
    if unknown:
        raise ControlRequestError(f"{name}: unexpected field(s) {', '.join(unknown)}", command_id)
    args = []
    for field in FIELDS[name]:
        if field not in data:
            raise ControlRequestError(f"{name}: missing field {field!r}", command_id)
        value = data[field]
        if field in NUMERIC and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ControlRequestError(f"{name}: {field} must be a number, got {value!r}", command_id)
        if field in TEXT and not isinstance(value, str):
            raise ControlRequestError(f"{name}: {field} must be a string, got {value!r}", command_id)
        args.append(value)
    return ControlRequest(name, tuple(args), command_id)
