"""A privileged driver for imitation learning: pure pursuit on the centre line with a speed plan.

It sees what a camera policy cannot (the pose and the track) and returns the normalised
commands a good policy should have produced, from any pose near the track, so DAgger can ask it
about states the learner got itself into.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .track import Track
from .vehicle import VehicleParams, clip_command


@dataclass(frozen=True)
class ExpertParams:
    """Look-ahead grows with speed; target speed is capped by lateral acceleration and braking;
    `lag_compensation` (0..1) is the share of the steering lag the command makes up within one
    `control_period_s` (1: the wheels reach the wanted angle by the next command).

    A camera policy cannot see the car's delay or servo, so the defaults are chosen for a driver
    that does not know them either: with the nominal car in mind, this expert laps every closed
    track at max-speed 1.0 in a car with 120-160 ms of delay, a weak, trimmed servo and a strong
    ESC. Full lag compensation (a 7x overdrive of the wheels' lag) and a short look-ahead
    oscillate off the track there; a look-ahead of 0.45 m + 0.55 s at half compensation does
    not, and takes straighter lines, which allows 3.5 m/s^2 in the corners (4.0 loses Tokyo's
    hairpin in some randomized cars)."""

    lookahead_m: float = 0.45
    lookahead_s: float = 0.55
    max_speed_mps: float = 2.0
    min_speed_mps: float = 1.0
    lateral_accel_mps2: float = 3.5
    braking_mps2: float = 4.0
    curvature_span_m: float = 0.3
    speed_gain: float = 0.3
    plan_spacing_m: float = 0.05
    lag_compensation: float = 0.5
    control_period_s: float = 1.0 / 15.0


class PurePursuitExpert:
    """Knows the car's parameters (delay, trim, gains), so its commands suit the car it drives."""

    def __init__(self, track: Track, vehicle: VehicleParams | None = None, params: ExpertParams | None = None) -> None:
        self.track = track
        self.vehicle = vehicle or VehicleParams()
        self.params = params or ExpertParams()
        self._plan_s, self._plan_speed = _speed_plan(track, self.params)

    def act(self, x: float, y: float, yaw: float, speed: float, wheel_rad: float | None = None) -> tuple[float, float]:
        """Normalised (steering, throttle) for the car at (x, y, yaw) moving at `speed` m/s; with the
        wheels' present angle `wheel_rad`, the command also makes up for the steering lag."""
        p, car = self.params, self.vehicle
        # Aim from where the car will be when this command takes effect.
        ahead = speed * car.delay_s
        x += ahead * math.cos(yaw)
        y += ahead * math.sin(yaw)
        _, s, _, _ = self.track.project(x, y)
        lookahead = p.lookahead_m + p.lookahead_s * abs(speed)
        tx, ty, _ = self.track.point_at(s + lookahead)
        # Pure pursuit steers the rear axle, which moves on the arc of curvature tan(delta) / L.
        rear_x = x - 0.5 * car.wheelbase_m * math.cos(yaw)
        rear_y = y - 0.5 * car.wheelbase_m * math.sin(yaw)
        dx, dy = float(tx) - rear_x, float(ty) - rear_y
        lateral = -math.sin(yaw) * dx + math.cos(yaw) * dy
        distance2 = max(dx * dx + dy * dy, 1e-6)
        # The car turns `yaw_gain` times as tightly as its wheel angle says.
        wheel = math.atan(2.0 * car.wheelbase_m * lateral / distance2 / car.yaw_gain)
        if wheel_rad is not None and car.steering_lag_s > 0.0:
            # Overdrive the lagging wheels: at full compensation they reach `wheel` within one
            # control period.
            reach = 1.0 - math.exp(-p.control_period_s / car.steering_lag_s)
            wheel += p.lag_compensation * (1.0 / reach - 1.0) * (wheel - wheel_rad)
        steering = (wheel / car.max_steering_rad - car.steering_trim) / car.steering_gain

        target = float(np.interp(s + speed * car.speed_time_constant_s, self._plan_s, self._plan_speed))
        throttle = (target + p.speed_gain * (target - speed)) / (car.throttle_gain * car.max_speed_mps)
        return clip_command(steering), clip_command(throttle)


def _speed_plan(track: Track, p: ExpertParams) -> tuple[np.ndarray, np.ndarray]:
    """Speed (m/s) against arc length: the curvature limit, lowered ahead of corners to brake in time.

    On a loop the plan covers two laps so that look-ups past the finish need no wrapping; braking
    is planned over a third so that the second lap slows for the corners after the finish.
    """
    s = np.arange(0.0, track.length, p.plan_spacing_m)
    x, y, _ = track.point_at(s)
    bx, by, _ = track.point_at(s - p.curvature_span_m)
    fx, fy, _ = track.point_at(s + p.curvature_span_m)
    # Curvature of the circle through three points: 4 * triangle area / product of the sides.
    area2 = (x - bx) * (fy - by) - (y - by) * (fx - bx)
    sides = np.hypot(x - bx, y - by) * np.hypot(fx - x, fy - y) * np.hypot(fx - bx, fy - by)
    curvature = 2.0 * np.abs(area2) / np.maximum(sides, 1e-9)
    speed = np.sqrt(p.lateral_accel_mps2 / np.maximum(curvature, 1e-9))
    speed = np.clip(speed, p.min_speed_mps, p.max_speed_mps)
    if track.closed:
        s = np.concatenate([s, s + track.length])
        speed = np.tile(speed, 3)
    for i in range(len(speed) - 2, -1, -1):
        speed[i] = min(speed[i], math.sqrt(speed[i + 1] ** 2 + 2.0 * p.braking_mps2 * p.plan_spacing_m))
    return s, speed[: len(s)]
