"""Closed tracks drawn at random, in the official outlines' format, for measuring a model on
tracks no recipe trained on (`racer sim generate-track`).

A track is a random star-shaped polygon of `corners` vertices, scaled to a perimeter of `length_m`,
whose corners are rounded with circular arcs of `radius_m`, and a road of constant `half_width_m`
around that centre line. It is kept only if no leg of road comes within `CLEARANCE_M` of another and
the privileged expert laps it twice from its start line at max-speed 1.0 (a hairpin a car cannot take
is not a test of a model); otherwise the seed's generator draws again, so one seed always gives one
track.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim2real.sim.expert import PurePursuitExpert
from sim2real.sim.track import Track
from sim2real.sim.world import Simulator

# Between two legs of road, at least this much floor (metres), so a car never sees one leg as the
# continuation of the other; a corner's radius is at least the half-width plus half of it, so a
# hairpin's two legs keep it too.
CLEARANCE_M = 0.2
# Centre-line point spacing (metres): the official outlines' waypoints are 0.1-0.2 m apart.
SPACING_M = 0.1
# Where the outline starts (metres): the official outlines sit at least a metre inside their field.
ORIGIN_M = 1.0
ATTEMPTS = 2000
# What `TrackShape` accepts, (smallest low, largest high) per range: beyond them a lap would not fit
# a room, or the centre-line arrays (memory grows with the square of the lap) would not fit memory.
LIMITS: dict[str, tuple[float, float]] = {"corners": (3, 40), "length_m": (4.0, 200.0), "radius_m": (0.05, 20.0),
                                          "half_width_m": (0.1, 2.0)}


@dataclass(frozen=True)
class TrackShape:
    """The ranges a generated track is drawn from, each (low, high), uniform: `corners` (count, both
    ends included), `length_m` the polygon's perimeter before its corners are rounded (metres; the
    rounding cuts the lap by 2-27% with the defaults, more with few sharp corners), `radius_m` each
    corner's arc radius (metres; at least `half_width_m` + `CLEARANCE_M` / 2 whatever the range says),
    `half_width_m` the road's half-width, one per track (the stock tracks': 0.30 to 0.60 m).
    Each range lies within `LIMITS`; ValueError otherwise. The defaults give corners from hairpins
    on a narrow road to sweepers on a wide one."""

    corners: tuple[int, int] = (6, 12)
    length_m: tuple[float, float] = (16.0, 30.0)
    radius_m: tuple[float, float] = (0.45, 1.6)
    half_width_m: tuple[float, float] = (0.30, 0.55)

    def __post_init__(self) -> None:
        for name, (smallest, largest) in LIMITS.items():
            low, high = getattr(self, name)
            if not smallest <= low <= high <= largest:
                raise ValueError(f"{name}: expected {smallest:g} <= low <= high <= {largest:g}, got ({low}, {high})")


class TrackGenerationError(RuntimeError):
    """No track within `ATTEMPTS` draws: the shape's ranges leave no room (for example a short lap
    with many corners of a large radius)."""


def generate_track(seed: int, shape: TrackShape = TrackShape()) -> np.ndarray:
    """The waypoints of one track drawn from `shape` with `seed`: (N, 6) float64, rows of centre
    x, y, inner x, y, outer x, y in metres, the first row repeated last (a loop, as the official
    `.npy` outlines), driven counter-clockwise or clockwise at random, all coordinates at least
    `ORIGIN_M`. TrackGenerationError if `ATTEMPTS` draws give none."""
    rng = np.random.default_rng(seed)
    for _ in range(ATTEMPTS):
        half_width = float(rng.uniform(*shape.half_width_m))
        drawn = _rounded_polygon(rng, shape, half_width)
        if drawn is None:
            continue
        centre, heading = drawn
        if not _clear(centre, half_width):
            continue
        if rng.random() < 0.5:
            centre, heading = centre[::-1], heading[::-1] + math.pi
        left = np.column_stack([-np.sin(heading), np.cos(heading)])
        inner_side = left if _signed_area(centre) > 0 else -left
        inner, outer = centre + half_width * inner_side, centre - half_width * inner_side
        rows = np.hstack([centre, inner, outer])
        rows = rows - np.tile(np.minimum(inner.min(0), outer.min(0)), 3) + ORIGIN_M
        waypoints = np.vstack([rows, rows[:1]])
        if _expert_laps(waypoints):
            return waypoints
    raise TrackGenerationError(f"no track from seed {seed} within {ATTEMPTS} draws of {shape}")


def _rounded_polygon(rng: np.random.Generator, shape: TrackShape,
                     half_width: float) -> tuple[np.ndarray, np.ndarray] | None:
    """A centre line (M, 2), counter-clockwise, not closed, and its heading at each point (M,),
    radians; None when a corner's arc does not fit between its neighbours."""
    k = int(rng.integers(shape.corners[0], shape.corners[1] + 1))
    angles = (np.arange(k) + rng.uniform(-0.35, 0.35, k)) * 2 * math.pi / k
    vertices = rng.uniform(0.3, 1.0, k)[:, None] * np.column_stack([np.cos(angles), np.sin(angles)])
    perimeter = np.linalg.norm(np.roll(vertices, -1, axis=0) - vertices, axis=1).sum()
    vertices *= rng.uniform(*shape.length_m) / perimeter
    incoming = vertices - np.roll(vertices, 1, axis=0)
    outgoing = np.roll(incoming, -1, axis=0)
    edge = np.linalg.norm(outgoing, axis=1)
    heading_in = np.arctan2(incoming[:, 1], incoming[:, 0])
    turn = (np.arctan2(outgoing[:, 1], outgoing[:, 0]) - heading_in + math.pi) % (2 * math.pi) - math.pi
    low = max(shape.radius_m[0], half_width + CLEARANCE_M / 2)
    radius = rng.uniform(low, max(low, shape.radius_m[1]), k)
    tangent = radius * np.tan(np.abs(turn) / 2)
    if np.any(tangent + np.roll(tangent, -1) > edge) or np.any(np.abs(turn) > math.radians(170)):
        return None
    pieces, headings = [], []
    for i in range(k):
        unit_in = incoming[i] / np.linalg.norm(incoming[i])
        start = vertices[i] - tangent[i] * unit_in
        side = math.copysign(1.0, turn[i])
        centre_of_arc = start + radius[i] * side * np.array([-unit_in[1], unit_in[0]])
        swept = np.linspace(0.0, turn[i], max(1, math.ceil(radius[i] * abs(turn[i]) / SPACING_M)), endpoint=False)
        phi = heading_in[i] - side * math.pi / 2 + swept
        pieces.append(centre_of_arc + radius[i] * np.column_stack([np.cos(phi), np.sin(phi)]))
        headings.append(heading_in[i] + swept)
        unit_out = outgoing[i] / edge[i]
        leave = vertices[i] + tangent[i] * unit_out
        arrive = vertices[(i + 1) % k] - tangent[(i + 1) % k] * unit_out
        steps = math.ceil(float(np.linalg.norm(arrive - leave)) / SPACING_M)
        pieces.append(leave + np.linspace(0.0, 1.0, steps, endpoint=False)[:, None] * (arrive - leave))
        headings.append(np.full(steps, heading_in[i] + turn[i]))
    centre = np.vstack(pieces)
    return (centre, np.concatenate(headings)) if _signed_area(centre) > 0 else None


def _expert_laps(waypoints: np.ndarray, laps: int = 2, timeout_s: float = 120.0) -> bool:
    """Whether the privileged expert, in the nominal world at max-speed 1.0, laps the track `laps`
    times from rest at its first waypoint without leaving it (the second lap a flying one through
    the start) within `timeout_s` of simulated time."""
    track = Track("generated", waypoints)
    sim = Simulator(track)
    expert = PurePursuitExpert(track, sim.vehicle.params)
    while sim.time < timeout_s:
        state = sim.vehicle.state
        sim.apply(*expert.act(state.x, state.y, state.yaw, state.speed, state.steering_rad))
        info = sim.step()
        if info.off_track:
            return False
        if info.laps >= laps:
            return True
    return False


def _signed_area(loop: np.ndarray) -> float:
    """Shoelace area (m^2) of a closed polyline: positive counter-clockwise."""
    x, y = loop[:, 0], loop[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2


def _clear(centre: np.ndarray, half_width: float) -> bool:
    """Whether any two points of a closed centre line (M, 2) are at least two half-widths and
    `CLEARANCE_M` apart, or, when closer along the lap, 0.6 of their distance along it (within one
    corner of at most 180 deg the straight-line distance is at least 2/pi of it): no leg of road comes
    near another, and with every corner's radius above the half-width neither border crosses itself."""
    step = np.linalg.norm(np.roll(centre, -1, axis=0) - centre, axis=1)
    s = np.concatenate([[0.0], np.cumsum(step)[:-1]])
    along = np.abs(s[:, None] - s[None, :])
    along = np.minimum(along, step.sum() - along)
    apart = np.linalg.norm(centre[:, None, :] - centre[None, :, :], axis=2)
    return bool(np.all(apart >= np.minimum(2 * half_width + CLEARANCE_M, 0.6 * along) - 1e-6))
