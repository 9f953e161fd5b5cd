"""Node clocks. Every timeout in the car reads one, so simulation can run faster than real time
(the ROS 2 use_sim_time convention) and still time out correctly."""
from __future__ import annotations

import os
import time
from typing import Protocol

# CLOCK_REALTIME - CLOCK_MONOTONIC (s) that a car's processes share: the supervisor hands its own to
# the nodes it starts, so their stamps agree with each other across restarts and wall-clock steps.
EPOCH_ENV = "RACER_CLOCK_EPOCH"
_epoch: float | None = None


class Clock(Protocol):
    def now(self) -> float: ...

    def started(self) -> bool:
        """False while a node that follows the simulator's /clock has not heard it: its now() is 0 then,
        not a time, and an input stamped with it would look seconds old at the first /clock."""
        ...


def epoch() -> float:
    """This process's wall time at monotonic zero (s): EPOCH_ENV when set, else read once, at first use."""
    global _epoch
    if _epoch is None:
        _epoch = float(os.environ.get(EPOCH_ENV) or time.time() - time.monotonic())
    return _epoch


class WallClock:
    """Wall time for ROS 2 stamps (s since 1970), advanced by the monotonic clock: an NTP step or a
    `date -s` after the car started moves neither a watchdog nor a timer (a step of hours would stop a
    driving car or keep a stale command alive for hours). Stamps stay off by any step since the start."""

    def __init__(self) -> None:
        self._epoch = epoch()

    def now(self) -> float:
        return self._epoch + time.monotonic()

    def started(self) -> bool:
        return True


class SimClock:
    """Time that only moves when the simulator says so; `started` False until the first `set` when made
    with `start=None` (a node waiting for its first /clock)."""

    def __init__(self, start: float | None = 0.0):
        self._t = start

    def now(self) -> float:
        return self._t or 0.0

    def started(self) -> bool:
        return self._t is not None

    def set(self, t: float) -> None:
        if t < self.now():
            raise ValueError(f"sim time went backwards: {t} < {self.now()}")
        self._t = t
