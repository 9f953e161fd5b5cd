"""The car's failure warning: its monitor score (`PolicyCore.monitor_score`) averaged over the last
`WINDOW_S` seconds of camera frames, by the frames' own stamps.

One frame's score jumps with what passes through the view (a corner, a line, a lamp); what warns is
the score staying high. `racer eval` measures exactly this: a lap's warning is the highest value of
this mean during the lap (`sim2real.gap.monitor_peak`, up to the off-track for a lap that left the
track), and its AUROC says how well that separates the laps that left the track from the completed
ones (docs/gap.md).
"""
from __future__ import annotations

from collections import deque

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
