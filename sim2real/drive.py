"""Drive laps in the simulator through the real car stack (camera -> policy -> control -> actuator).

`racer demo`, training validation and the gap evaluation all drive through here, so what they
measure is what the car would do with the same bundle.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from car.actuators.base import Driver
from car.clock import SimClock
from car.runtime import CarRuntime, Stepper
from car.stack import LocalStack, PolicyModel
from sim2real.sim.adapters import SimActuator, SimCamera
from sim2real.sim.world import Simulator, StepInfo


@dataclass
class LapResult:
    time_s: float
    progress: float
    off_track: bool

    def to_json(self) -> dict[str, Any]:
        return {"time_s": round(self.time_s, 3), "progress": round(self.progress, 2), "off_track": self.off_track}


@dataclass
class DriveResult:
    track: str
    laps: list[LapResult] = field(default_factory=list)

    @property
    def completed_laps(self) -> int:
        return sum(1 for lap in self.laps if lap.progress >= 100.0 and not lap.off_track)


def sim_stack(sim: Simulator, model: PolicyModel, params: dict[str, dict[str, Any]] | None = None,
              driver: Driver | None = None) -> LocalStack:
    """The car stack on the simulator's camera and actuator (or `driver`), its clock at simulation time."""
    return LocalStack(SimClock(sim.time), SimCamera(sim), driver or SimActuator(sim), model, params)


def sim_runtime(sim: Simulator, model: PolicyModel, params: dict[str, dict[str, Any]] | None = None,
                driver: Driver | None = None, stepper: Stepper | None = None,
                stop: threading.Event | None = None) -> CarRuntime:
    """`sim_stack` run in real time; `stepper` wraps `sim.step` when the caller watches the steps."""
    stack = sim_stack(sim, model, params, driver)
    return CarRuntime(stack, sim=stepper or sim, on_sim_time=stack.clock.set, stop_event=stop)


def run_laps(sim: Simulator, model: PolicyModel, laps: int = 1, max_speed: float = 0.5,
             params: dict[str, dict[str, Any]] | None = None, lap_timeout_s: float = 120.0,
             on_step: Callable[[StepInfo, LocalStack], None] | None = None) -> DriveResult:
    """Autonomous laps from the simulator's current pose, as fast as the CPU allows; stops at `laps`
    laps, off-track or timeout."""
    stack = sim_stack(sim, model, params)
    clock = stack.clock
    stack.control.core.set_max_speed(max_speed)
    stack.control.command(stack.control.core.set_mode, "autonomous")
    stack.control.command(stack.control.core.start)
    result = DriveResult(sim.track.name)
    lap_start = sim.time
    try:
        while len(result.laps) < laps:
            stack.frame()
            info = sim.step()
            clock.set(info.time)
            if on_step is not None:
                on_step(info, stack)
            if info.lap_completed:
                result.laps.append(LapResult(info.lap_time, 100.0, False))
                lap_start = info.time
            elif info.off_track or info.time - lap_start > lap_timeout_s:
                result.laps.append(LapResult(info.time - lap_start, info.progress, info.off_track))
                break
    finally:
        stack.close()
    return result
