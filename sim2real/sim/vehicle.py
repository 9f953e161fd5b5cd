"""Kinematic bicycle model of the DeepRacer with a first-order speed response and actuation delay.

The pose is the car's centre (midway between the axles), the point DeepRacer reports and judges
off-track. Between two changes of the applied command the steering angle is constant, so the
path curvature is constant and the speed follows an exponential: both integrate exactly. A step is
therefore split only where a delayed command takes effect, and any control period is accurate.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class VehicleParams:
    """Physical and actuation parameters; domain randomization replaces fields with `replace()`."""

    wheelbase_m: float = 0.165
    max_steering_rad: float = 0.5236
    max_speed_mps: float = 4.0
    speed_time_constant_s: float = 0.1
    delay_s: float = 0.05
    steering_trim: float = 0.0
    steering_gain: float = 1.0
    throttle_gain: float = 1.0

    def steering_rad(self, steering: float) -> float:
        """Wheel angle for a normalised steering command, after gain and trim, within the servo travel."""
        servo = clip_command(self.steering_gain * clip_command(steering) + self.steering_trim)
        return servo * self.max_steering_rad

    def target_speed(self, throttle: float) -> float:
        """Steady-state speed (m/s) the open-loop ESC settles at for a normalised throttle."""
        return self.throttle_gain * clip_command(throttle) * self.max_speed_mps


@dataclass
class VehicleState:
    x: float
    y: float
    yaw: float
    speed: float = 0.0
    steering_rad: float = 0.0
    target_speed: float = 0.0


class Vehicle:
    """The car body: commands go in, pose comes out, `delay_s` later."""

    def __init__(self, params: VehicleParams | None = None) -> None:
        self.params = params or VehicleParams()
        self.state = VehicleState(0.0, 0.0, 0.0)
        self.time = 0.0
        self._pending: deque[tuple[float, float, float]] = deque()

    def reset(self, x: float, y: float, yaw: float, speed: float = 0.0) -> None:
        """Place the car, holding `speed` with straight wheels; clock at zero, nothing in flight."""
        self.state = VehicleState(x, y, yaw, speed, 0.0, speed)
        self.time = 0.0
        self._pending.clear()

    def command(self, steering: float, throttle: float) -> None:
        """Queue a normalised command (-1..1, + = left / forward); it acts after the delay."""
        p = self.params
        self._pending.append((self.time + p.delay_s, p.steering_rad(steering), p.target_speed(throttle)))

    def advance(self, duration: float) -> None:
        end = self.time + duration
        while self._pending and self._pending[0][0] <= end + 1e-12:
            at, steering_rad, target_speed = self._pending.popleft()
            self._integrate(at - self.time)
            self.state.steering_rad = steering_rad
            self.state.target_speed = target_speed
        self._integrate(end - self.time)
        self.time = end

    def _integrate(self, h: float) -> None:
        if h <= 0.0:
            return
        st = self.state
        tau = self.params.speed_time_constant_s
        decay = math.exp(-h / tau) if tau > 0.0 else 0.0
        gap = st.speed - st.target_speed
        distance = st.target_speed * h + gap * tau * (1.0 - decay)
        st.speed = st.target_speed + gap * decay
        # Centre-referenced bicycle: the velocity leans by the slip angle beta off the body axis.
        tan_delta = math.tan(st.steering_rad)
        beta = math.atan(0.5 * tan_delta)
        turn = distance * math.cos(beta) * tan_delta / self.params.wheelbase_m
        chord = distance * _sinc(0.5 * turn)
        direction = st.yaw + beta + 0.5 * turn
        st.x += chord * math.cos(direction)
        st.y += chord * math.sin(direction)
        st.yaw = _wrap(st.yaw + turn)
        self.time += h


def clip_command(value: float) -> float:
    """A normalised command limited to -1..1; NaN or inf is a caller bug, not a command."""
    if not math.isfinite(value):
        raise ValueError(f"command must be finite, got {value}")
    return min(1.0, max(-1.0, value))


def _sinc(x: float) -> float:
    return math.sin(x) / x if abs(x) > 1e-9 else 1.0


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi
