"""Drive laps in the simulator through the real car stack (camera -> policy -> control -> actuator).

`racer demo`, training validation and the gap evaluation all drive through here, so what they
measure is what the car would do with the same bundle.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from car.actuators.base import Driver
from car.clock import SimClock
from car.graph.stack import CarGraph
from car.policy.core import PolicyModel
from sim2real.sim.adapters import SimActuator, SimCamera
from sim2real.sim.world import Simulator, StepInfo


@dataclass
class LapResult:
    time_s: float
    progress: float
    off_track: bool

    @property
    def completed(self) -> bool:
        return self.progress >= 100.0 and not self.off_track

    def to_json(self) -> dict[str, Any]:
        return {"time_s": round(self.time_s, 3), "progress": round(self.progress, 2), "off_track": self.off_track}


@dataclass
class DriveResult:
    track: str
    laps: list[LapResult] = field(default_factory=list)

    @property
    def completed_laps(self) -> int:
        return sum(1 for lap in self.laps if lap.completed)

    def to_json(self, model: str) -> dict[str, Any]:
        """The `racer demo --json` summary."""
        return {"track": self.track, "laps": [lap.to_json() for lap in self.laps],
                "completed_laps": self.completed_laps, "model": model}


class LapCounter:
    """Turns simulator steps into laps: each completed lap, and the one that ended the drive by
    leaving the track or running past `lap_timeout_s`."""

    def __init__(self, result: DriveResult, start_time: float, lap_timeout_s: float = math.inf):
        self.result = result
        self.lap_start = start_time
        self.lap_timeout_s = lap_timeout_s

    def observe(self, info: StepInfo) -> LapResult | None:
        """The lap this step ended, if any (also appended to the result)."""
        if info.lap_completed:
            lap = LapResult(info.lap_time, 100.0, False)
            self.lap_start = info.time
        elif info.off_track or info.time - self.lap_start > self.lap_timeout_s:
            lap = LapResult(info.time - self.lap_start, info.progress, info.off_track)
        else:
            return None
        self.result.laps.append(lap)
        return lap


def sim_graph(sim: Simulator, model: PolicyModel, params: dict[str, dict[str, Any]] | None = None,
              driver: Driver | None = None) -> CarGraph:
    """The car's nodes on the simulator's camera and actuator (or `driver`), stepped by hand, their
    clock at simulation time."""
    return CarGraph(SimClock(sim.time), SimCamera(sim), driver or SimActuator(sim), model, params)


def start_autonomous(graph: CarGraph, max_speed: float) -> CarGraph:
    """`graph` in autonomous mode at `max_speed` (0..1), started as a user would start it through control;
    ValueError with control's reason when it refuses."""
    for request in (("set_max_speed", max_speed), ("set_mode", "autonomous"), ("start",)):
        answer = graph.control.request(*request)
        if answer != "ok":
            raise ValueError(answer)
    return graph


def run_laps(sim: Simulator, model: PolicyModel, laps: int = 1, max_speed: float = 0.5,
             params: dict[str, dict[str, Any]] | None = None, lap_timeout_s: float = 120.0,
             on_lap: Callable[[int, LapResult], None] | None = None, driver: Driver | None = None,
             on_frame: Callable[[CarGraph], None] | None = None) -> DriveResult:
    """Autonomous laps from the simulator's current pose, as fast as the CPU allows; stops at `laps`
    laps, off-track or timeout. `driver` replaces the simulator's actuator (see `sim.rules`);
    `on_frame` sees the graph after each camera frame went through it. ValueError when control
    refuses `max_speed`."""
    graph = start_autonomous(sim_graph(sim, model, params, driver), max_speed)
    clock = cast(SimClock, graph.clock)  # the graph was built on the simulator's clock
    result = DriveResult(sim.track.name)
    counter = LapCounter(result, sim.time, lap_timeout_s)
    try:
        while len(result.laps) < laps:
            graph.frame()
            if on_frame is not None:
                on_frame(graph)
            info = sim.step()
            clock.set(info.time)
            lap = counter.observe(info)
            if lap is not None:
                if on_lap is not None:
                    on_lap(len(result.laps), lap)
                if not lap.completed:
                    break
    finally:
        graph.close()
    return result
