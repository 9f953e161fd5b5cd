"""The car's failure warning: its monitor score (`PolicyCore.monitor_score`) averaged over the last
`WINDOW_S` seconds of camera frames, by the frames' own stamps.

One frame's score jumps with what passes through the view (a corner, a line, a lamp); what warns is
the score staying high. `racer eval` measures exactly this: a lap's warning is the highest value of
this mean during the lap (`sim2real.gap.monitor_peak`, up to the off-track for a lap that left the
track), and its AUROC says how well that separates the laps that left the track from the completed
ones (docs/gap.md).

A bundle may also ask the car to drive with caution (`Caution`, racer.json's `caution`): while the
warning is above a level, every speed the policy asks for is scaled down.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

# Seconds of frames the warning averages over.
WINDOW_S = 2.0


class WarningLevel:
    """Running mean of a per-frame score over the frames stamped within the last `window_s` seconds
    (the newest included). A stamp earlier than the newest one (a restarted camera or simulator) starts
    the window afresh."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        if not window_s > 0:
            raise ValueError(f"warning window must be positive, got {window_s}")
        self.window_s = window_s
        self._frames: deque[tuple[float, float]] = deque()

    def reset(self) -> None:
        self._frames.clear()

    def add(self, stamp_s: float, score: float) -> float:
        """The mean after the frame stamped `stamp_s` (seconds) scored `score`."""
        if self._frames and stamp_s < self._frames[-1][0]:
            self.reset()
        self._frames.append((stamp_s, score))
        # A window of exactly `window_s` at a steady frame rate holds window_s x rate frames, as racer eval's.
        while len(self._frames) > 1 and stamp_s - self._frames[0][0] >= self.window_s - 1e-9:
            self._frames.popleft()
        return self._mean()

    @property
    def value(self) -> float | None:
        """The current mean, None before the first frame."""
        return self._mean() if self._frames else None

    def _mean(self) -> float:
        return sum(score for _, score in self._frames) / len(self._frames)


@dataclass(frozen=True)
class Caution:
    """While the warning (`WarningLevel.value`) is above `warning`, the policy's speed is multiplied by
    `speed_scale`, so a car that doubts what it sees slows down. A model with no monitor has no warning
    and never slows; a warning that is not a number (NaN from a broken score) counts as above. `racer
    export --caution`; racer.json's `caution` object, `{"warning": W, "speed_scale": S}` (W > 0,
    0 < S <= 1; null or absent: no caution). ValueError otherwise."""

    warning: float
    speed_scale: float

    def __post_init__(self) -> None:
        for name in ("warning", "speed_scale"):
            value = getattr(self, name)
            try:
                number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
            except OverflowError:  # an integer too large for a float (a hand-edited 400-digit number)
                raise ValueError(f"caution {name} must be a finite number, got an integer of "
                                 f"{len(str(abs(value)))} digits") from None
            if not math.isfinite(number):
                raise ValueError(f"caution {name} must be a finite number, got {value!r:.40}")
            object.__setattr__(self, name, number)  # frozen: kept as the float the car multiplies by
        if not self.warning > 0:
            raise ValueError(f"caution warning must be above 0, got {self.warning!r}")
        if not 0 < self.speed_scale <= 1:
            raise ValueError(f"caution speed_scale must be in (0, 1], got {self.speed_scale!r}")

    def active(self, warning: float | None) -> bool:
        """Whether the car slows at this warning level (None: no warning; NaN slows, the safe side)."""
        return warning is not None and not warning <= self.warning

    def factor(self, warning: float | None) -> float:
        """What the policy's speed is multiplied by at this warning level: `speed_scale` or 1."""
        return self.speed_scale if self.active(warning) else 1.0

    def to_json(self) -> dict[str, float]:
        return {"warning": self.warning, "speed_scale": self.speed_scale}

    @classmethod
    def from_json(cls, data: Any) -> Caution:
        """racer.json's `caution`; ValueError for anything but an object of exactly these two numbers."""
        if not isinstance(data, dict) or set(data) != {"warning", "speed_scale"}:
            raise ValueError(f"caution must be an object with warning and speed_scale, got {data!r:.80}")
        return cls(data["warning"], data["speed_scale"])
