"""The AWS simulator's car dynamics, fitted to its own simtraces.

The DeepRacer simulator moves its steering hinges and wheels with position and velocity
controllers, so neither the wheel angle nor the speed jumps to the command. Both are modelled as a
first-order lag with a gain: the state relaxes towards the command with time constant tau, and

    yaw rate = gain * v * tan(delta) / wheelbase      (steering)
    v        = gain * the lagged speed command        (speed)

Given tau, the model is linear in the gain, so the gain is a closed-form least-squares fit and
tau is a one-dimensional bounded search (scipy). The fit is judged by R^2 on the measured signal.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import minimize_scalar

from sim2real.sim.vehicle import Vehicle, VehicleParams, first_order_lag
from sim2real.simtrace import Simtrace

# The DeepRacer URDF's wheelbase (docs/simulator.md), the L of the yaw-rate model.
WHEELBASE_M = 0.164
MAX_LAG_S = 3.0


@dataclass(frozen=True)
class LagFit:
    """`tau_s` the time constant (0 = instant), `gain` the dimensionless gain, `r2` the coefficient
    of determination of the modelled signal against the measured one, over `samples` intervals."""

    tau_s: float
    gain: float
    r2: float
    samples: int

    def to_json(self) -> dict[str, float]:
        return {"tau_s": round(self.tau_s, 3), "gain": round(self.gain, 3), "r2": round(self.r2, 3),
                "samples": self.samples}


def lagged_mean(command: np.ndarray, dt: np.ndarray, tau: float) -> np.ndarray:
    """Mean over each interval of a first-order lag (time constant `tau` s, starting at 0) driven
    by `command`, which holds over its interval of length `dt`."""
    if tau <= 0.0:
        return np.asarray(command, np.float64)
    out = np.empty(len(command))
    state = 0.0
    for k, (c, h) in enumerate(zip(command, dt, strict=True)):
        out[k] = first_order_lag(state, c, tau, h, average=True)
        state = first_order_lag(state, c, tau, h)
    return out


def _regression(trace: Simtrace, tau: float, regressor: Callable[[np.ndarray, np.ndarray], np.ndarray],
                command: np.ndarray, measured: Callable[[np.ndarray, np.ndarray], np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for rows in trace.episodes():
        dt, speed, yaw_rate = trace.motion(rows)
        lag = lagged_mean(command[rows][:-1], dt, tau)
        xs.append(regressor(lag, speed))
        ys.append(measured(speed, yaw_rate))
    return np.concatenate(xs), np.concatenate(ys)


def _fit(trace: Simtrace, command: np.ndarray, regressor: Callable[[np.ndarray, np.ndarray], np.ndarray],
         measured: Callable[[np.ndarray, np.ndarray], np.ndarray], tau: float | None) -> LagFit:
    def solve(t: float) -> tuple[float, float, int]:
        x, y = _regression(trace, t, regressor, command, measured)
        gain = float(x @ y / max(x @ x, 1e-12))
        residual = float(np.sum((y - gain * x) ** 2))
        return gain, 1.0 - residual / float(np.sum((y - y.mean()) ** 2)), len(y)

    if tau is None:
        tau = float(minimize_scalar(lambda t: -solve(t)[1], bounds=(0.0, MAX_LAG_S), method="bounded",
                                    options={"xatol": 1e-3}).x)
    gain, r2, n = solve(tau)
    return LagFit(tau, gain, r2, n)


def fit_steering(trace: Simtrace, tau: float | None = None, wheelbase_m: float = WHEELBASE_M) -> LagFit:
    """Steering lag and yaw-rate gain (`tau` fixed when given, e.g. 0 for instant steering)."""
    return _fit(trace, trace.steer, lambda lag, v: v * np.tan(lag) / wheelbase_m, lambda v, w: w, tau)


def fit_speed(trace: Simtrace, tau: float | None = None) -> LagFit:
    """Speed response: time constant and the ratio of the reached speed to the action's speed."""
    return _fit(trace, trace.speed_command, lambda lag, v: lag, lambda v, w: v, tau)


def vehicle_from_fits(steering: LagFit, speed: LagFit, base: VehicleParams | None = None) -> VehicleParams:
    """Vehicle parameters that reproduce the fitted dynamics (no extra actuation delay)."""
    return replace(base or VehicleParams(), steering_lag_s=steering.tau_s, yaw_gain=steering.gain,
                   speed_time_constant_s=speed.tau_s, speed_gain=speed.gain, delay_s=0.0)


def replay_yaw_rate(trace: Simtrace, params: VehicleParams) -> float:
    """R^2 of the yaw rate of `Vehicle` driven open loop by the trace's commands from each
    episode's first pose, against the trace's measured yaw rate."""
    model, measured = [], []
    for rows in trace.episodes():
        dt, _, yaw_rate = trace.motion(rows)
        car = Vehicle(params)
        start = rows.start
        car.reset(trace.x[start], trace.y[start], trace.yaw[start])
        for k, h in enumerate(dt):
            i = start + k
            car.command(trace.steer[i] / params.max_steering_rad, params.throttle_for_speed(trace.speed_command[i]))
            yaw = car.state.yaw
            car.advance(float(h))
            model.append(((car.state.yaw - yaw + math.pi) % (2.0 * math.pi) - math.pi) / h)
        measured.append(yaw_rate)
    y, m = np.concatenate(measured), np.asarray(model)
    return 1.0 - float(np.sum((y - m) ** 2)) / float(np.sum((y - y.mean()) ** 2))
