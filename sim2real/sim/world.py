"""The simulator: a car on a track, stepped at the control rate, with DeepRacer-style progress.

`time` is simulated seconds. The car stack follows it as ROS nodes follow /clock under
use_sim_time, so a run is as fast as the CPU allows and replays identically.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .render import CameraParams, Renderer, SceneParams
from .track import Track
from .vehicle import Vehicle, VehicleParams


@dataclass(frozen=True)
class StepInfo:
    """The car after a step. `progress` is % of the current lap (0..100, never decreasing within
    a lap); `lap_time` is the time spent in the current lap, or the finished lap's time on the
    step where `lap_completed` is true."""

    time: float
    x: float
    y: float
    yaw: float
    speed: float
    s: float
    progress: float
    lateral: float
    off_track: bool
    lap_completed: bool
    lap_time: float
    laps: int


class Simulator:
    """One car on one track: `apply` a command, `step` the physics, `render` the camera."""

    def __init__(
        self,
        track: Track,
        width: int = 160,
        height: int = 120,
        dt: float = 1.0 / 15.0,
        vehicle: VehicleParams | None = None,
        camera: CameraParams | None = None,
        scene: SceneParams | None = None,
        off_track_tolerance: float = 0.05,
    ) -> None:
        self.track = track
        self.width, self.height = width, height
        self.dt = dt
        self.camera = camera or CameraParams()
        self.scene = scene or SceneParams()
        self.off_track_tolerance = off_track_tolerance
        self.vehicle = Vehicle(vehicle)
        self._renderer: Renderer | None = None
        self.reset()

    def set_track(self, track: Track) -> None:
        """Drive on `track` from the next `reset` (the renderer is rebuilt for it)."""
        self.track, self._renderer = track, None

    @property
    def time(self) -> float:
        return self.vehicle.time

    def reset(self, start_index: int = 0, offset: float = 0.0, yaw_offset: float = 0.0) -> StepInfo:
        """Put the car at rest at waypoint `start_index`, `offset` m left of centre, yaw turned
        `yaw_offset` rad counter-clockwise; progress counts from there."""
        x, y, yaw = self.track.start_pose(start_index, offset)
        _, s, lateral, _ = self.track.project(x, y)
        lap_length = self.track.length if self.track.closed else self.track.length - s
        if lap_length <= 0.0:
            raise ValueError(f"waypoint {start_index} is the end of open track {self.track.name!r}")
        self.vehicle.reset(x, y, yaw + yaw_offset)
        self._s = s
        self._lap_length = lap_length
        self._travel = 0.0
        self._lap_start_travel = 0.0
        self._lap_best = 0.0
        self._lap_start_time = 0.0
        self._laps = 0
        self.info = self._observe(s, lateral, False, 0.0)
        return self.info

    def place(self, index: int) -> StepInfo:
        """Put the car back at rest on the centre line at waypoint `index`, heading along the track,
        keeping the clock and the lap's progress: the AWS evaluation's reset after an off-track."""
        x, y, yaw = self.track.start_pose(index, 0.0)
        clock = self.vehicle.time
        self.vehicle.reset(x, y, yaw)
        self.vehicle.time = clock
        _, s, lateral, _ = self.track.project(x, y)
        ds = s - self._s
        if self.track.closed:
            ds = (ds + 0.5 * self.track.length) % self.track.length - 0.5 * self.track.length
        self._s = s
        self._travel += ds
        self.info = self._observe(s, lateral, False, 0.0)
        return self.info

    def apply(self, steering: float, throttle: float) -> None:
        """Send a normalised command (-1..1, + = left / forward); it holds until the next one."""
        self.vehicle.command(steering, throttle)

    def step(self) -> StepInfo:
        """Advance one control period `dt`; no rendering, so a step costs a few tens of µs."""
        self.vehicle.advance(self.dt)
        st = self.vehicle.state
        _, s, lateral, _ = self.track.project(st.x, st.y)
        ds = s - self._s
        if self.track.closed:
            ds = (ds + 0.5 * self.track.length) % self.track.length - 0.5 * self.track.length
        self._s = s
        self._travel += ds

        completed, lap_time = False, 0.0
        finish = self._lap_start_travel + self._lap_length
        if self._travel >= finish and ds > 0.0:
            crossed = self.time - self.dt * (self._travel - finish) / ds
            completed, lap_time = True, crossed - self._lap_start_time
            self._laps += 1
            self._lap_start_travel = finish
            self._lap_start_time = crossed
            self._lap_best = 0.0
        else:
            self._lap_best = max(self._lap_best, self._travel - self._lap_start_travel)
        self.info = self._observe(s, lateral, completed, lap_time)
        return self.info

    def render(self) -> np.ndarray:
        """The camera frame (BGR uint8, height x width) at the current pose."""
        if self._renderer is None:
            self._renderer = Renderer(self.track, self.width, self.height, self.camera, self.scene)
        st = self.vehicle.state
        return self._renderer.render(st.x, st.y, st.yaw)

    def _observe(self, s: float, lateral: float, completed: bool, lap_time: float) -> StepInfo:
        st = self.vehicle.state
        progress = 100.0 if completed else 100.0 * min(1.0, self._lap_best / self._lap_length)
        return StepInfo(
            time=self.time,
            x=st.x,
            y=st.y,
            yaw=st.yaw,
            speed=st.speed,
            s=s,
            progress=progress,
            lateral=lateral,
            off_track=not self.track.on_track(st.x, st.y, self.off_track_tolerance),
            lap_completed=completed,
            lap_time=lap_time if completed else self.time - self._lap_start_time,
            laps=self._laps,
        )
