"""/control/command: what other processes (the console) send the control node, and how it answers."""
import json

import pytest

from car.clock import SimClock
from car.control.commands import CommandError, command_json, parse_command
from car.messages import DIAGNOSTICS_TOPIC
from car.graph.multiprocess import ControlProcess
from car.transport.local import LocalBus


class Bus(LocalBus):
    """The local bus plus what a node process's bus adds; timers are run by hand."""

    def timer(self, period_s, callback, clock):
        pass


def test_commands_round_trip_through_json():
    text = command_json("set_mode", mode="autonomous", id="42")
    assert json.loads(text) == {"command": "set_mode", "mode": "autonomous", "id": "42"}
    command = parse_command(text)
    assert (command.name, command.args, command.id) == ("set_mode", ("autonomous",), "42")
    assert parse_command('{"command": "calibrate", "steering": 0.5, "throttle": -1}').args == (0.5, -1)


@pytest.mark.parametrize("text, reason, command_id", [
    ("start", "not JSON", ""),
    ("[1]", "must be a JSON object", ""),
    ('{"command": "warp", "id": 3}', "unknown command 'warp'", "3"),
    ('{"command": "start", "speed": 1, "id": "a"}', r"unexpected field\(s\) speed", "a"),
    ('{"command": "set_max_speed"}', "missing field 'value'", ""),
    ('{"command": "set_max_speed", "value": "fast"}', "value must be a number", ""),
    ('{"command": "calibrate", "steering": true, "throttle": 0}', "steering must be a number", ""),
])
def test_bad_commands_are_refused_with_the_reason_and_their_id(text, reason, command_id):
    with pytest.raises(CommandError, match=reason) as info:
        parse_command(text)
    assert info.value.id == command_id


def test_control_node_answers_each_command_on_diagnostics():
    bus, clock = Bus(), SimClock()
    answers = []
    bus.subscribe(DIAGNOSTICS_TOPIC, lambda a: answers.extend(s for s in a.status if s.name == "control"))
    control = ControlProcess(bus, clock, {})
    send = bus.publisher("/control/command")
    send(command_json("set_mode", mode="autonomous", id="1"))
    send(command_json("start", id="2"))
    send(command_json("set_max_speed", value=0.8, id="3"))
    send('{"command": "set_max_speed", "value": 1.5, "id": "4"}')
    send(command_json("calibrate", steering=0.1, throttle=0.0, id="5"))
    result = {s.value("command_id"): s.value("command_result") for s in answers}
    assert result == {"1": "ok", "2": "ok", "3": "ok", "4": "max speed must be between 0 and 1, got 1.5",
                      "5": "calibration commands need calibration mode"}
    last = answers[-1]
    assert (last.value("mode"), last.value("running"), last.value("max_speed")) == ("autonomous", "true", "0.80")
    assert control.core.state.running
