"""Node clocks. Every timeout in the car reads one, so simulation can run faster than real time
(the ROS 2 use_sim_time convention) and still time out correctly."""
from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...


class WallClock:
    """System time, as ROS 2 stamps use on a real car."""

    def now(self) -> float:
        return time.time()


class SimClock:
    """Time that only moves when the simulator says so."""

    def __init__(self, start: float = 0.0):
        self._t = start

    def now(self) -> float:
        return self._t

    def set(self, t: float) -> None:
        if t < self._t:
            raise ValueError(f"sim time went backwards: {t} < {self._t}")
        self._t = t
