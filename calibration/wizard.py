"""The steering and throttle calibration wizard (`racer calibrate --car`): the flow, apart from the
terminal and the network.

In the DeepRacer console's units (steering 10 us, throttle 4.5 us a unit): for each output the
centre, then the end the + command drives to, then the - end, each moved live on the car until
the user accepts it, the ends on opposite sides of the centre; saved in the DeepRacer layout
(min < max, `polarity` 1 when + drives towards max). While the user looks at a value the wizard
repeats it every WIZARD_REFRESH_S: the car drops a raw pulse after its deadman (250 ms), so a
wizard that goes away leaves the wheels still.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

WIZARD_REFRESH_S = 0.1

Kind = Literal["angle", "throttle"]


@dataclass(frozen=True)
class OutputCalibration:
    """One output's calibration in console units, as /api/get_calibration/<kind> answers."""

    mid: float
    min: float
    max: float
    polarity: int


class Wheels(Protocol):
    """The car in calibration mode (the console API is one); a refusal raises one of the wizard's `refused`."""

    def get_calibration(self, kind: Kind) -> OutputCalibration: ...

    def adjust_calibrating_wheels(self, kind: Kind, pwm: float) -> None: ...

    def set_calibration(self, kind: Kind, values: OutputCalibration) -> None: ...


class WizardError(Exception):
    """The wizard cannot go on; values not saved yet were left as they were."""


class _Hold:
    """Repeats the current raw value every WIZARD_REFRESH_S on a thread of its own."""

    def __init__(self, wheels: Wheels, refused: tuple[type[Exception], ...]):
        self.wheels = wheels
        self.failures: tuple[type[Exception], ...] = (*refused, OSError)
        self.step: tuple[Kind, float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name="calibration hold", daemon=True)

    def __enter__(self) -> _Hold:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _refresh(self) -> None:
        while not self._stop.wait(WIZARD_REFRESH_S):
            step = self.step
            if step is None:
                continue
            try:
                self.wheels.adjust_calibrating_wheels(*step)
            except self.failures:
                pass  # the next show says what is wrong; a lost car lets the wheels go by itself

    def show(self, kind: Kind, value: float) -> None:
        self.wheels.adjust_calibrating_wheels(kind, value)
        self.step = (kind, value)


class Wizard:
    """`ask(prompt)` is the user's answer (None when the input ended); `say(line)` tells the user;
    `refused` are the exceptions by which `wheels` report a value the car refused or a car lost."""

    def __init__(self, wheels: Wheels, ask: Callable[[str], str | None], say: Callable[[str], None],
                 refused: tuple[type[Exception], ...]):
        self.wheels = wheels
        self.ask = ask
        self.say = say
        self.refused = refused

    def run(self) -> tuple[OutputCalibration, OutputCalibration]:
        """Steering, then throttle, each saved on the car as soon as it is accepted."""
        with _Hold(self.wheels, self.refused) as hold:
            self.say("steering (console units, 10 us each):")
            angle = self._output(hold, "angle", ("centre", "full left", "full right"))
            self.say("throttle (console units, 4.5 us each):")
            throttle = self._output(hold, "throttle", ("stopped", "full forward", "full reverse"))
        return angle, throttle

    def _output(self, hold: _Hold, kind: Kind, names: tuple[str, str, str]) -> OutputCalibration:
        """Centre, then the + command end, then the - command end."""
        current = self.wheels.get_calibration(kind)
        positive_end = current.max if current.polarity == 1 else current.min
        negative_end = current.min if current.polarity == 1 else current.max
        while True:
            mid = self._pick(hold, kind, names[0], round(current.mid))
            plus = self._pick(hold, kind, names[1], round(positive_end))
            minus = self._pick(hold, kind, names[2], round(negative_end))
            if (plus - mid) * (minus - mid) < 0:
                break
            self.say(f"  {names[1]} and {names[2]} must lie on opposite sides of {names[0]}; again")
        values = OutputCalibration(mid=mid, min=min(plus, minus), max=max(plus, minus),
                                   polarity=1 if plus > mid else -1)
        self.wheels.set_calibration(kind, values)
        return values

    def _pick(self, hold: _Hold, kind: Kind, label: str, value: float) -> float:
        """Move one output live until the user accepts: a number sets it, + and - nudge, Enter keeps."""
        while True:
            try:
                hold.show(kind, value)
            except self.refused as exc:  # a value the car refuses: say why, back to the last value it took
                if hold.step is None or hold.step[0] != kind:
                    raise
                self.say(f"  refused: {exc}")
                value = hold.step[1]
            answer = self.ask(f"  {label} [{value:g}] (number, + / -, Enter to accept): ")
            if answer is None:
                raise WizardError("input ended; values not saved yet were left as they were")
            if not answer:
                return value
            if set(answer) <= {"+", "-"}:
                value += answer.count("+") - answer.count("-")
                continue
            try:
                value = float(answer)
            except ValueError:
                self.say(f"  {answer!r} is not a number")
