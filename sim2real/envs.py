"""The simulator as a gymnasium environment, and wrappers that bring sim2real to any image env.

`racer/DeepRacer-v0` observes BGR camera frames and acts with the policy's own outputs (DeepRacer
action units, decoded exactly as the car decodes them), so a policy trained here exports as is.
The wrappers (randomization, augmentation, the car's preprocessing, action delay) only assume an
HxWx3 uint8 image observation, so they also wrap environments that are not ours.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from car.policy.decode import ActionDecoder
from car.policy.metadata import parse_metadata
from car.policy.preprocess import Preprocessor, PreprocessSpec
from sim2real.augment import Augmenter
from sim2real.imitation import ACTION_SPACE
from sim2real.randomize import Domain, DomainSimulator, Randomization
from sim2real.reward import ParamsBuilder, RewardFunction, follow_centre_line, reward
from sim2real.sim.render import CameraParams
from sim2real.sim.sensor import Sensor
from sim2real.sim.track import Track

ENV_ID = "racer/DeepRacer-v0"


class DeepRacerEnv(gym.Env):
    """One car on one track. Observation: the camera frame (BGR uint8). Action: the policy output
    for `action_space` (DeepRacer model_metadata form, default the bundled model's): two values in
    [-1, 1] when continuous, an action index when discrete. Reward: `reward_function(params)` with DeepRacer's params.
    An episode ends off track or at a completed lap, and is truncated after `max_steps`. `camera`
    replaces the simulator's camera (see `camera_matching` for a calibrated one)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, track: str = "reinvent_base", reward_function: RewardFunction | None = None,
                 action_space: dict[str, Any] | None = None, max_speed_setting: float = 0.5,
                 max_steps: int = 1000, random_start: bool = True, width: int = 160, height: int = 120,
                 camera: CameraParams | None = None, render_mode: str | None = None) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.sim = DomainSimulator(Track.load(track), width=width, height=height, camera=camera)
        self.reward_function = reward_function or follow_centre_line
        self.model_metadata = parse_metadata(action_space or ACTION_SPACE)
        self.max_speed_setting = max_speed_setting
        self.max_steps = max_steps
        self.random_start = random_start
        self.render_mode = render_mode
        self._decoder = ActionDecoder(self.model_metadata)
        self._params = ParamsBuilder(self.sim.track)
        self._frame = np.zeros((height, width, 3), np.uint8)
        self._steps = 0
        self.observation_space = spaces.Box(0, 255, (height, width, 3), np.uint8)
        if self.model_metadata.discrete:
            self.action_space = spaces.Discrete(len(self.model_metadata.actions))
        else:
            self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def set_domain(self, domain: Domain) -> None:
        """Applied at the next reset: world, camera, sensor and car dynamics."""
        self.sim.set_domain(domain)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """`options` may fix `start_index`, `offset` (m, + = left) and `yaw_offset` (rad)."""
        super().reset(seed=seed)
        options = options or {}
        track, rng = self.sim.track, self.np_random
        random = self.random_start
        start = options.get("start_index", int(rng.integers(track.waypoint_count - 1)) if random else 0)
        offset = options.get("offset", float(rng.uniform(-0.15, 0.15)) if random else 0.0)
        yaw = options.get("yaw_offset", math.radians(float(rng.uniform(-10.0, 10.0))) if random else 0.0)
        info = self.sim.reset(start_index=start, offset=offset, yaw_offset=yaw)
        self._steps = 0
        self._frame = self.sim.render()
        return self._frame, {"params": self._params(info, 0, 0.0, 0.0)}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.model_metadata.discrete:
            output = np.zeros(self.action_space.n, np.float32)
            output[int(action)] = 1.0
        else:
            output = np.asarray(action, np.float32)
        decoded = self._decoder(output)
        self.sim.apply(decoded.steering, decoded.throttle * self.max_speed_setting)
        info = self.sim.step()
        self._steps += 1
        params = self._params(info, self._steps, decoded.steering_deg, decoded.speed)
        value = reward(self.reward_function, params)
        terminated = info.off_track or info.lap_completed
        truncated = not terminated and self._steps >= self.max_steps
        self._frame = self.sim.render()
        return self._frame, value, terminated, truncated, {"params": params, "lap_completed": info.lap_completed}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return cv2.cvtColor(self._frame, cv2.COLOR_BGR2RGB)


def _check_image_space(env: gym.Env, wrapper: str) -> spaces.Box:
    space = env.observation_space
    if not (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
            and space.shape[2] == 3):
        raise ValueError(f"{wrapper} needs HxWx3 uint8 image observations, got {space}")
    return space


class DomainRandomization(gym.Wrapper):
    """A new domain from `randomization` at every reset, deterministic from `seed`.

    Our environment takes the whole domain (world, camera, car); any other image environment gets
    its image-space part (exposure, sensor noise, motion blur, JPEG) on each observation."""

    def __init__(self, env: gym.Env, randomization: Randomization | str = "default", seed: int = 0) -> None:
        super().__init__(env)
        space = _check_image_space(env, "DomainRandomization")
        self.randomization = Randomization.load(randomization) if isinstance(randomization, str) else randomization
        self._rng = np.random.default_rng(seed)
        self._native = hasattr(env.unwrapped, "set_domain")
        self._size = (space.shape[1], space.shape[0])
        self._sensor: Sensor | None = None
        self.domain = Domain()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        self.domain = self.randomization.sample(self._rng)
        if self._native:
            self.env.unwrapped.set_domain(self.domain)
        else:
            self._sensor = Sensor(self.domain.sensor(), *self._size, seed=self.domain.seed)
        obs, info = self.env.reset(seed=seed, options=options)
        return self._observe(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, value, terminated, truncated, info = self.env.step(action)
        return self._observe(obs), value, terminated, truncated, info

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        return obs if self._sensor is None else self._sensor.apply(obs)


class AugmentObservation(gym.ObservationWrapper):
    """Training-only augmentation of every image observation (see `sim2real.augment`)."""

    def __init__(self, env: gym.Env, preset: str = "default", seed: int = 0) -> None:
        super().__init__(env)
        _check_image_space(env, "AugmentObservation")
        self.augment = Augmenter(preset, seed)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return self.augment(observation)


class PreprocessObservation(gym.ObservationWrapper):
    """The car's preprocessing spec applied to image observations: what the policy sees on the car.

    `colour_order` says how the wrapped env orders channels ('bgr' like the car's camera, or 'rgb'
    like most gymnasium envs); the spec's grey weights are for BGR."""

    def __init__(self, env: gym.Env, spec: PreprocessSpec, colour_order: str = "bgr") -> None:
        super().__init__(env)
        _check_image_space(env, "PreprocessObservation")
        if colour_order not in ("bgr", "rgb"):
            raise ValueError(f"colour_order must be 'bgr' or 'rgb', got {colour_order!r}")
        self.preprocessor = Preprocessor(spec)
        self._rgb = colour_order == "rgb"
        high = 255.0 * spec.scale + spec.offset
        low, high = min(spec.offset, high), max(spec.offset, high)
        self.observation_space = spaces.Box(low, high, spec.input_shape()[1:], np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        self.preprocessor.reset()
        return super().reset(seed=seed, options=options)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        if self._rgb:
            observation = cv2.cvtColor(observation, cv2.COLOR_RGB2BGR)
        return self.preprocessor(observation)[0]


class ActionDelay(gym.Wrapper):
    """Each action takes effect `steps` steps late (the first ones repeat `idle`), like a car whose
    actuation lags its camera. For our env prefer the `delay_ms` knob, which is continuous-time."""

    def __init__(self, env: gym.Env, steps: int, idle: Any = None) -> None:
        super().__init__(env)
        if steps < 0:
            raise ValueError(f"action delay must be 0 or more steps, got {steps}")
        self.delay = steps
        self.idle = idle if idle is not None else _idle_action(env.action_space)
        self._queue: deque[Any] = deque()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        self._queue = deque([self.idle] * self.delay)
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self._queue.append(action)
        return self.env.step(self._queue.popleft())


def _idle_action(space: gym.Space) -> Any:
    if isinstance(space, spaces.Discrete):
        return space.start
    if isinstance(space, spaces.Box):
        return np.clip(np.zeros(space.shape, space.dtype), space.low, space.high)
    raise ValueError(f"ActionDelay needs an idle action for {space}")


def make(track: str = "reinvent_base", randomization: str | None = None, augmentation: str | None = None,
         spec: PreprocessSpec | None = None, seed: int = 0, **kwargs: Any) -> gym.Env:
    """`racer/DeepRacer-v0` with the training wrappers, innermost first: randomization,
    augmentation, the car's preprocessing."""
    env: gym.Env = gym.make(ENV_ID, track=track, **kwargs)
    if randomization:
        env = DomainRandomization(env, randomization, seed)
    if augmentation:
        env = AugmentObservation(env, augmentation, seed)
    if spec is not None:
        env = PreprocessObservation(env, spec)
    return env


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point="sim2real.envs:DeepRacerEnv")
