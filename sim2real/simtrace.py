"""DeepRacer simtraces: the per-step CSV logs the AWS simulator writes during training and evaluation.

Columns used (DeepRacer convention): `episode`, `X`, `Y` (m, the axle midpoint), `yaw` (deg, as
atan2), `steer` (deg, + = left), `throttle` (the action's speed, m/s), `tstamp` (simulated s). The
command on row k is what the car did between rows k and k+1 (a 15 Hz loop).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np


class SimtraceError(ValueError):
    """A file that is not a DeepRacer simtrace."""


@dataclass(frozen=True)
class Simtrace:
    """Rows of a simtrace as arrays of equal length N; angles in radians."""

    episode: np.ndarray
    x: np.ndarray
    y: np.ndarray
    yaw: np.ndarray
    steer: np.ndarray
    speed_command: np.ndarray
    time: np.ndarray

    @classmethod
    def load(cls, path: str | Path) -> Simtrace:
        columns = ("episode", "X", "Y", "yaw", "steer", "throttle", "tstamp")
        try:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            values = {c: np.array([float(r[c]) for r in rows]) for c in columns}
        except (KeyError, ValueError, TypeError) as exc:
            raise SimtraceError(f"{path}: not a DeepRacer simtrace ({exc})") from None
        if len(rows) < 3:
            raise SimtraceError(f"{path}: a simtrace needs at least 3 rows, got {len(rows)}")
        return cls(values["episode"].astype(int), values["X"], values["Y"], np.radians(values["yaw"]),
                   np.radians(values["steer"]), values["throttle"], values["tstamp"])

    def episodes(self) -> list[slice]:
        """Row ranges of the episodes, in file order."""
        edges = np.flatnonzero(np.diff(self.episode) != 0) + 1
        bounds = [0, *edges.tolist(), len(self.episode)]
        return [slice(a, b) for a, b in pairwise(bounds) if b - a >= 2]

    def motion(self, rows: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per interval between successive rows of one episode: duration (s), speed (m/s) and yaw
        rate (rad/s), each of length rows - 1."""
        dt = np.diff(self.time[rows])
        if np.any(dt <= 0):
            raise SimtraceError("simtrace time stamps must increase within an episode")
        speed = np.hypot(np.diff(self.x[rows]), np.diff(self.y[rows])) / dt
        turn = (np.diff(self.yaw[rows]) + math.pi) % (2.0 * math.pi) - math.pi
        return dt, speed, turn / dt
