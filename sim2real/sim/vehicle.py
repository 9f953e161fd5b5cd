"""Bicycle model of the DeepRacer with first-order steering and speed responses and actuation delay.

The pose is the car's centre (midway between the axles), the point DeepRacer reports and judges
off-track. The wheel angle follows the servo command through a first-order lag and the yaw rate is
`yaw_gain` times the kinematic one (the AWS simulator's car, fitted to its simtraces by
`sim2real.dynamics_fit`); the speed relaxes exponentially towards the ESC's target. A step is
split where a delayed command takes effect and, while the wheels are turning, into sub-steps of at
most `MAX_SUBSTEP_S`, each driven with its exact mean wheel angle and distance.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

MAX_SUBSTEP_S = 0.01

@dataclass(frozen=True)
class VehicleParams:
    """Physical and actuation parameters; domain randomization replaces fields with `replace()`.

    Nominal values are the AWS simulator's car (docs/simulator.md): wheelbase and steering
    travel from its URDF; `steering_lag_s`, `yaw_gain`, `speed_time_constant_s` and `speed_gain`
    fitted to the console-evaluation simtrace (`racer sim fit-dynamics`). `max_speed_mps` is the
    open-loop ESC's speed at full throttle; `speed_gain` the ratio of the reached speed to the
    ESC's target; `delay_s` a pure delay before a command acts (none in the AWS simulator).
    """

    wheelbase_m: float = 0.164
    max_steering_rad: float = 0.5236
    max_speed_mps: float = 4.0
    speed_time_constant_s: float = 0.24
    speed_gain: float = 1.04
    delay_s: float = 0.0
    steering_lag_s: float = 0.49
    yaw_gain: float = 0.61
    steering_trim: float = 0.0
    steering_gain: float = 1.0
    throttle_gain: float = 1.0

    def steering_rad(self, steering: float) -> float:
        """Wheel angle for a normalised steering command, after gain and trim, within the servo travel."""
        servo = clip_command(self.steering_gain * clip_command(steering) + self.steering_trim)
        return servo * self.max_steering_rad

    def target_speed(self, throttle: float) -> float:
        """Steady-state speed (m/s) the open-loop ESC settles at for a normalised throttle."""
        return self.speed_gain * self.throttle_gain * clip_command(throttle) * self.max_speed_mps

    def throttle_for_speed(self, speed: float) -> float:
        """The normalised throttle whose target speed is `speed` m/s (clipped to full throttle)."""
        return clip_command(speed / (self.speed_gain * self.throttle_gain * self.max_speed_mps))


@dataclass
class VehicleState:
    x: float
    y: float
    yaw: float
    speed: float = 0.0
    steering_rad: float = 0.0
    target_speed: float = 0.0
    target_steering_rad: float = 0.0


class Vehicle:
    """The car body: commands go in, pose comes out, `delay_s` later."""

    def __init__(self, params: VehicleParams | None = None) -> None:
        self.params = params or VehicleParams()
        self.state = VehicleState(0.0, 0.0, 0.0)
        self.time = 0.0
        self._pending: deque[tuple[float, float, float]] = deque()

    def reset(self, x: float, y: float, yaw: float, speed: float = 0.0) -> None:
        """Place the car, holding `speed` with straight wheels; clock at zero, nothing in flight."""
        self.state = VehicleState(x, y, yaw, speed, 0.0, speed, 0.0)
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
            self.state.target_steering_rad = steering_rad
            self.state.target_speed = target_speed
        self._integrate(end - self.time)
        self.time = end

    def _integrate(self, h: float) -> None:
        if h <= 0.0:
            return
        st = self.state
        if self.params.steering_lag_s <= 0.0:
            st.steering_rad = st.target_steering_rad
            self._move(h, st.steering_rad)
            return
        steps = max(1, math.ceil(h / MAX_SUBSTEP_S - 1e-9))
        for _ in range(steps):
            start, target = st.steering_rad, st.target_steering_rad
            mean = first_order_lag(start, target, self.params.steering_lag_s, h / steps, average=True)
            st.steering_rad = first_order_lag(start, target, self.params.steering_lag_s, h / steps)
            self._move(h / steps, mean)

    def _move(self, h: float, steering_rad: float) -> None:
        """Advance `h` seconds on the arc of a constant wheel angle."""
        st = self.state
        tau = self.params.speed_time_constant_s
        decay = math.exp(-h / tau) if tau > 0.0 else 0.0
        gap = st.speed - st.target_speed
        distance = st.target_speed * h + gap * tau * (1.0 - decay)
        st.speed = st.target_speed + gap * decay
        # Centre-referenced bicycle: the velocity leans by the slip angle beta off the body axis.
        tan_delta = self.params.yaw_gain * math.tan(steering_rad)
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


def first_order_lag(start: float, target: float, tau: float, h: float, average: bool = False) -> float:
    """A first-order lag from `start` towards `target` after `h` s, or its mean over them."""
    decay = math.exp(-h / tau)
    if average:
        return target + (start - target) * tau / h * (1.0 - decay)
    return target + (start - target) * decay


def _sinc(x: float) -> float:
    return math.sin(x) / x if abs(x) > 1e-9 else 1.0


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi
