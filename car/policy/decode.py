"""Policy output -> drive command, with the AWS DeepRacer navigation node's semantics.

Existing models must drive as their owners expect: discrete = argmax; continuous = clip to
[-1, 1] (SAC: tanh) then rescale to [low, high]; steering normalised by the model's largest
|steering|; speed mapped by the parabola through (0, 0), (max/2, 0.8), (max, 1.0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from car.policy.metadata import ModelMetadata


@dataclass(frozen=True)
class Decoded:
    """Normalised servo/ESC commands at full max-speed setting, plus the chosen action."""

    steering: float
    throttle: float
    steering_deg: float
    speed: float
    action_index: int | None


def speed_parabola(max_speed: float) -> tuple[float, float]:
    """Coefficients (a, b) of throttle = a*v^2 + b*v through (0,0), (max/2,0.8), (max,1)."""
    if max_speed <= 0:
        raise ValueError("max speed must be positive")
    return -1.2 / max_speed**2, 2.2 / max_speed


def throttle_for(speed: float, max_speed: float, max_speed_setting: float = 1.0) -> float:
    """Model speed (m/s) -> normalised throttle, scaled by the console's max-speed setting (0..1)."""
    a, b = speed_parabola(max_speed)
    v = min(abs(speed), max_speed)
    return math.copysign(a * v * v + b * v, speed) * max_speed_setting


def squash(output: np.ndarray, metadata: ModelMetadata) -> np.ndarray:
    """A continuous policy output brought into [-1, 1] as the navigation node does: tanh for SAC
    (its head gives the pre-tanh mean), clip for PPO. Any shape; element-wise."""
    return np.tanh(output) if metadata.training_algorithm == "sac" else np.clip(output, -1.0, 1.0)


class ActionDecoder:
    def __init__(self, metadata: ModelMetadata):
        self.metadata = metadata
        self.max_steering = metadata.max_steering_deg
        self.max_speed = metadata.max_speed
        if metadata.discrete:
            self._steer = np.array([a.steering_deg for a in metadata.actions])
            self._speed = np.array([a.speed for a in metadata.actions])

    def __call__(self, output: np.ndarray) -> Decoded:
        out = np.asarray(output, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(out)):
            raise ValueError("policy output is not finite")
        meta = self.metadata
        if meta.discrete:
            if out.size != len(meta.actions):
                raise ValueError(f"policy gave {out.size} outputs for {len(meta.actions)} actions")
            index = int(np.argmax(out))
            steering_deg, speed = float(self._steer[index]), float(self._speed[index])
        else:
            if out.size != 2:
                raise ValueError(f"continuous policy gave {out.size} outputs, expected 2")
            unit = squash(out, meta)
            index = None
            steering_deg = _rescale(unit[0], meta.steering.low, meta.steering.high)
            speed = _rescale(unit[1], meta.speed.low, meta.speed.high)
        steering = steering_deg / self.max_steering if self.max_steering > 0 else 0.0
        throttle = throttle_for(speed, self.max_speed) if self.max_speed > 0 else 0.0
        return Decoded(float(np.clip(steering, -1, 1)), float(np.clip(throttle, -1, 1)), steering_deg, speed, index)


def _rescale(unit: float, low: float, high: float) -> float:
    return float(low + (unit + 1.0) * 0.5 * (high - low))


def speed_for_throttle(throttle: float, max_speed: float, max_speed_setting: float = 1.0) -> float:
    """Inverse of throttle_for on [0, max_speed]: the model speed that yields this throttle."""
    if max_speed_setting <= 0:
        raise ValueError("max speed setting must be positive")
    a, b = speed_parabola(max_speed)
    p = min(abs(throttle) / max_speed_setting, 1.0)
    v = (-b + math.sqrt(b * b + 4 * a * p)) / (2 * a)
    return math.copysign(v, throttle)
