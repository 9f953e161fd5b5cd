"""One car under the AWS simulator's training rules, for PPO on a user's reward function.

The rules are the AWS simulator's (docs/training.md, docs/simulator.md): the action's
steering angle is the wheels' angle and its speed the wheels' target speed (no max-speed setting in
the simulator); an episode ends when the car leaves the track (`sim.rules.AWS_OFF_TRACK_M`), completes
its lap, or reaches `max_steps` (the simulator's cap is 10,000); the reward function gets the full
`params` after every step at 15 steps per simulated second, and an off-track step's reward is the
simulator's 1e-8. Each step yields its simtrace row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from car.policy.metadata import ModelMetadata
from car.policy.preprocess import PreprocessSpec
from sim2real.episode import EpisodeWorld, make_simulator
from sim2real.reward import ParamsBuilder, RewardFunction
from sim2real.sim.rules import AWS_OFF_TRACK_M

CRASHED_REWARD = 1e-8
MAX_STEPS = 10_000


@dataclass(frozen=True)
class TraceRow:
    """One simtrace row (`sim2real.runlog.SIMTRACE_HEADER`): the car after a step. Angles in degrees,
    `speed` the action's (m/s), `action` its index (-1 continuous), `time` simulated seconds,
    `pause_s` what is left of an evaluation's off-track penalty (the simtrace's pause_duration)."""

    episode: int
    steps: int
    x: float
    y: float
    yaw_deg: float
    steer_deg: float
    speed: float
    action: int
    reward: float
    done: bool
    all_wheels_on_track: bool
    progress: float
    closest_waypoint: int
    track_length: float
    time: float
    status: str
    pause_s: float = 0.0


class ConsoleCar:
    """`track` seen through `spec` (the console network's 160x120 grey frames), driven by the
    policy's actions: a discrete action index, or the continuous (steering, speed) pair in [-1, 1]
    units (clipped, then rescaled to the metadata's ranges, as the car decodes)."""

    def __init__(self, track: str, metadata: ModelMetadata, reward_function: RewardFunction, spec: PreprocessSpec,
                 randomization: str | None = None, augmentation: str | None = None, camera_info: str | None = None,
                 max_steps: int = MAX_STEPS) -> None:
        sim = make_simulator(track, randomization, camera_info)
        sim.off_track_tolerance = AWS_OFF_TRACK_M
        self.world = EpisodeWorld(sim, spec, augmentation)
        self.sim, self.meta = sim, metadata
        self.reward_function = reward_function
        self.max_steps = max_steps
        self._params = ParamsBuilder(sim.track)
        self._steer_limit_deg = math.degrees(sim.vehicle.params.max_steering_rad)
        self.episode = 0
        self.steps = 0

    def reset(self, episode: int, start_fraction: float, rng: np.random.Generator) -> np.ndarray:
        """Episode number `episode` from rest on the centre line at `start_fraction` of the lap
        (the AWS trainer's round-robin starts); its domain and augmentation from `rng`.
        Returns the first observation (H, W, C)."""
        track = self.sim.track
        self.world.begin(rng)
        self.sim.reset(start_index=int(round(start_fraction * track.waypoint_count)) % track.waypoint_count)
        self.episode, self.steps = episode, 0
        return self.world.observe()[1]

    def decode(self, action: Any) -> tuple[float, float, int]:
        """Policy action -> (steering deg, speed m/s, action index or -1)."""
        meta = self.meta
        if meta.discrete:
            index = int(action)
            chosen = meta.actions[index]
            return chosen.steering_deg, chosen.speed, index
        unit = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        steering = meta.steering.low + (unit[0] + 1.0) * 0.5 * (meta.steering.high - meta.steering.low)
        speed = meta.speed.low + (unit[1] + 1.0) * 0.5 * (meta.speed.high - meta.speed.low)
        return float(steering), float(speed), -1

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, TraceRow]:
        """Act for one control period (1/15 s). Returns (observation, reward, episode over, row);
        RewardFunctionError when the user's function fails."""
        steering_deg, speed, index = self.decode(action)
        sim = self.sim
        vehicle = sim.vehicle.params
        sim.apply(steering_deg / self._steer_limit_deg, speed / vehicle.max_speed_mps)
        info = sim.step()
        self.steps += 1
        params = self._params(info, self.steps, steering_deg, speed)
        value = self.reward_function(params)
        if info.off_track:
            value, status = CRASHED_REWARD, "off_track"
        elif info.lap_completed:
            status = "lap_complete"
        elif self.steps >= self.max_steps:
            status = "time_up"
        else:
            # the AWS simulator's first row of an episode reads "prepare"; log readers start its clock there
            status = "prepare" if self.steps == 1 else "in_progress"
        done = status not in ("prepare", "in_progress")
        row = TraceRow(self.episode, self.steps, info.x, info.y, math.degrees(info.yaw), steering_deg, speed, index,
                       value, done, params["all_wheels_on_track"], info.progress, params["closest_waypoints"][0],
                       sim.track.length, info.time, status)
        return self.world.observe()[1], value, done, row
