"""Official DeepRacer track outlines: loading, projection onto the centre line, on-track test.

Waypoints are kept exactly as shipped (zero-length segments included) so that waypoint indices
match the ones DeepRacer reward functions and simtraces use.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

TRACKS_DIR = Path(__file__).with_name("tracks")


# The road width factors `Track.with_width` takes: below 0.3 the narrowest stock road (0.30 m half-width)
# would be narrower than the car; from 1.4 the inner border of reInvent2019_track's tightest corner crosses
# itself (reinvent_base's from 1.5).
ROAD_WIDTHS = (0.3, 1.3)


class Track:
    """A track: centre line, inner and outer borders (metres, world frame), loop or open."""

    def __init__(self, name: str, waypoints: np.ndarray) -> None:
        points = np.asarray(waypoints, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 6 or len(points) < 2:
            raise ValueError(f"track {name!r}: expected an (N, 6) waypoint array, got {points.shape}")
        self.name = name
        self.closed = bool(np.array_equal(points[0], points[-1]))
        if self.closed:
            points = points[:-1]
        self.centre = points[:, 0:2].copy()
        self.inner = points[:, 2:4].copy()
        self.outer = points[:, 4:6].copy()
        self.half_width = np.linalg.norm(self.outer - self.inner, axis=1) / 2.0

        ends = np.roll(self.centre, -1, axis=0) if self.closed else self.centre[1:]
        starts = self.centre[: len(ends)]
        vec = ends - starts
        self._seg_len = np.hypot(vec[:, 0], vec[:, 1])
        degenerate = self._seg_len < 1e-9
        if degenerate.all():
            raise ValueError(f"track {name!r}: all waypoints coincide")
        self._seg_heading = _fill_degenerate(np.arctan2(vec[:, 1], vec[:, 0]), degenerate, self.closed)
        # Contiguous per-segment columns keep project() cheap enough to call every sim step.
        self._seg_x = starts[:, 0].copy()
        self._seg_y = starts[:, 1].copy()
        self._seg_ux = np.cos(self._seg_heading)
        self._seg_uy = np.sin(self._seg_heading)
        self.waypoint_s = np.concatenate(([0.0], np.cumsum(self._seg_len)))[: len(self.centre)]
        self.length = float(self._seg_len.sum())

        inner32 = self.inner.astype(np.float32)
        outer32 = self.outer.astype(np.float32)
        # The drivable area as DeepRacer defines it: outer polygon minus inner polygon for a loop,
        # the outline outer -> reversed inner for an open track.
        self.outline = outer32 if self.closed else np.concatenate([outer32, inner32[::-1]])
        self.hole = inner32 if self.closed else None
        self.orientation = "ccw" if _inner_is_left(self) else "cw"

    @classmethod
    def load(cls, name_or_path: str | Path) -> Track:
        """Load a shipped track by bare name (`reinvent_base`) or any `.npy` file by path. ValueError
        for an unknown name, a file that cannot be read as an array, or an array not (N, 6)."""
        path = Path(name_or_path)
        if path.suffix != ".npy":
            path = TRACKS_DIR / f"{name_or_path}.npy"
            if not path.is_file():
                raise ValueError(f"unknown track {str(name_or_path)!r}; built-in: {', '.join(cls.names())}, or a .npy "
                                 "outline file (racer sim generate-track writes one)")
        try:
            waypoints = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"track {str(path)!r}: cannot read a waypoint array: {exc}") from None
        return cls(path.stem, waypoints)

    @staticmethod
    def names() -> list[str]:
        return sorted(p.stem for p in TRACKS_DIR.glob("*.npy"))

    @property
    def waypoint_count(self) -> int:
        return len(self.centre)

    def project(self, x: float | np.ndarray, y: float | np.ndarray) -> tuple:
        """Closest point on the centre line: (segment index, arc length s, lateral offset, heading).

        Lateral offset is signed, + = left of the direction of travel. Scalars in give scalars out;
        arrays in give arrays of the same shape.
        """
        px, py = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        rel_x = px.reshape(-1, 1) - self._seg_x
        rel_y = py.reshape(-1, 1) - self._seg_y
        t = rel_x * self._seg_ux + rel_y * self._seg_uy
        np.minimum(np.maximum(t, 0.0, out=t), self._seg_len, out=t)
        rel_x -= t * self._seg_ux
        rel_y -= t * self._seg_uy
        dist2 = rel_x * rel_x + rel_y * rel_y
        index = np.argmin(dist2, axis=1)
        rows = np.arange(len(index))
        dx, dy, along = rel_x[rows, index], rel_y[rows, index], t[rows, index]
        side = self._seg_ux[index] * dy - self._seg_uy[index] * dx
        lateral = np.copysign(np.sqrt(dist2[rows, index]), side)
        s = self.waypoint_s[index] + along
        heading = self._seg_heading[index]
        if px.ndim == 0:
            return int(index[0]), float(s[0]), float(lateral[0]), float(heading[0])
        return tuple(a.reshape(px.shape) for a in (index, s, lateral, heading))

    def point_at(self, s: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centre-line (x, y, heading) at arc length s; wraps on a loop, clamps on an open track."""
        s = np.asarray(s, dtype=np.float64)
        s = np.mod(s, self.length) if self.closed else np.clip(s, 0.0, self.length)
        index = np.clip(np.searchsorted(self.waypoint_s, s, side="right") - 1, 0, len(self._seg_len) - 1)
        along = s - self.waypoint_s[index]
        x = self._seg_x[index] + along * self._seg_ux[index]
        y = self._seg_y[index] + along * self._seg_uy[index]
        return x, y, self._seg_heading[index]

    def on_track(self, x: float, y: float, tolerance: float = 0.05) -> bool:
        """True while the point (the car's centre) is inside the borders, or within `tolerance` m.

        This is DeepRacer's rule (point in the track polygon); the tolerance lets the centre sit
        on the painted border line.
        """
        point = (float(x), float(y))
        if cv2.pointPolygonTest(self.outline, point, True) < -tolerance:
            return False
        return self.hole is None or cv2.pointPolygonTest(self.hole, point, True) <= tolerance

    def with_width(self, factor: float) -> Track:
        """This track with its road `factor` times as wide about the same centre line (the borders and
        their paint move; the centre line, and so the lap and its length, stay). ValueError unless
        `factor` is from 0.3 to 1.3 (`ROAD_WIDTHS`)."""
        low, high = ROAD_WIDTHS
        if not low <= factor <= high:
            raise ValueError(f"a road width factor must be from {low:g} to {high:g}, got {factor}")
        c = self.centre
        points = np.concatenate([c, c + factor * (self.inner - c), c + factor * (self.outer - c)], axis=1)
        return Track(self.name, np.vstack([points, points[:1]]) if self.closed else points)

    def start_pose(self, index: int = 0, offset: float = 0.0) -> tuple[float, float, float]:
        """(x, y, yaw) at waypoint `index`, heading along the track, `offset` m to the left (+)."""
        if not -self.waypoint_count <= index < self.waypoint_count:
            raise IndexError(f"waypoint {index} out of range for {self.waypoint_count} waypoints")
        index %= self.waypoint_count
        yaw = float(self._seg_heading[min(index, len(self._seg_heading) - 1)])
        x, y = self.centre[index]
        return float(x - offset * math.sin(yaw)), float(y + offset * math.cos(yaw)), yaw


def _fill_degenerate(heading: np.ndarray, degenerate: np.ndarray, closed: bool) -> np.ndarray:
    """Give each zero-length segment the heading of the next real one (a loop wraps around)."""
    filled = heading.copy()
    valid = np.flatnonzero(~degenerate)
    for i in np.flatnonzero(degenerate):
        later = valid[valid > i]
        filled[i] = heading[later[0] if len(later) else (valid[0] if closed else valid[-1])]
    return filled


def _inner_is_left(track: Track) -> bool:
    """Counter-clockwise means the inner border lies on the left of the direction of travel."""
    n = len(track._seg_len)
    rel = track.inner[:n] - track.centre[:n]
    cross = track._seg_ux * rel[:, 1] - track._seg_uy * rel[:, 0]
    return float(np.sum(np.sign(cross))) >= 0.0
