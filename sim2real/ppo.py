"""Reinforcement learning with PPO (stable-baselines3) on a DeepRacer-style reward function.

The option for users who bring their own `reward_function(params)`; imitation stays the fast
default. The policy's actor is built to be exactly `DrivingNet` (the same convolutions, a 100-unit
ReLU layer, a linear output), so the trained weights copy into one and export like any other
`racer train` checkpoint; the value head is trained alongside and dropped.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from torch import nn
from tqdm import tqdm

from car.policy.metadata import parse_metadata
from car.policy.preprocess import PreprocessSpec
from sim2real.camera_matching import camera_from_info
from sim2real.envs import make
from sim2real.imitation import ACTION_SPACE, SPEC
from sim2real.network import DrivingNet
from sim2real.reward import RewardFunction, follow_centre_line, load_reward_function


@dataclass
class PPOConfig:
    """`reward_file` is a DeepRacer reward .py (None: follow the centre line); one environment per
    track; `randomization`, `augmentation` and `camera_info` as for DAgger."""

    reward_file: str | None = None
    tracks: tuple[str, ...] = ("reinvent_base",)
    timesteps: int = 200_000
    n_steps: int = 512
    batch_size: int = 64
    epochs: int = 4
    learning_rate: float = 3e-4
    log_std_init: float = -1.0
    seed: int = 0
    max_speed_setting: float = 0.5
    max_steps: int = 1000
    randomization: str | None = None
    augmentation: str | None = None
    camera_info: str | None = None
    threads: int = 2


class DrivingFeatures(BaseFeaturesExtractor):
    """DrivingNet's convolutions as the shared feature extractor."""

    def __init__(self, observation_space: gym.spaces.Box, spec: PreprocessSpec) -> None:
        features = DrivingNet(spec).features
        with torch.no_grad():
            size = features(torch.zeros(spec.input_shape())).shape[1]
        super().__init__(observation_space, size)
        self.cnn = features

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.cnn(observations)


class History(BaseCallback):
    """Progress bar, and per rollout the finished episodes' mean reward and lap progress."""

    def __init__(self, total: int, show_progress: bool) -> None:
        super().__init__()
        self.history: list[dict[str, Any]] = []
        self._returns: np.ndarray | None = None
        self._finished: list[tuple[float, float]] = []
        self._bar = tqdm(total=total, desc="PPO", unit="step", disable=not show_progress)

    def _on_step(self) -> bool:
        rewards, dones, infos = self.locals["rewards"], self.locals["dones"], self.locals["infos"]
        if self._returns is None:
            self._returns = np.zeros(len(rewards))
        self._returns += rewards
        for i in np.flatnonzero(dones):
            self._finished.append((float(self._returns[i]), float(infos[i]["params"]["progress"])))
            self._returns[i] = 0.0
        self._bar.update(len(rewards))
        return True

    def _on_rollout_end(self) -> None:
        done = self._finished
        self.history.append({
            "rollout": len(self.history), "timesteps": int(self.num_timesteps), "episodes": len(done),
            "mean_reward": float(np.mean([r for r, _ in done])) if done else None,
            "mean_progress": float(np.mean([p for _, p in done])) if done else None,
        })
        self._finished = []

    def _on_training_end(self) -> None:
        self._bar.close()


def env_factories(cfg: PPOConfig, spec: PreprocessSpec = SPEC, action_space: dict[str, Any] = ACTION_SPACE
                  ) -> list[Callable[[], gym.Env]]:
    """One environment per track, seeded `cfg.seed + i`, observed through the car's preprocessing."""
    reward_function: RewardFunction = load_reward_function(cfg.reward_file) if cfg.reward_file else follow_centre_line
    camera = camera_from_info(cfg.camera_info) if cfg.camera_info else None

    def factory(i: int, track: str) -> Callable[[], gym.Env]:
        return lambda: make(track, cfg.randomization, cfg.augmentation, spec, seed=cfg.seed + i,
                            reward_function=reward_function, action_space=action_space,
                            max_speed_setting=cfg.max_speed_setting, max_steps=cfg.max_steps, camera=camera)

    return [factory(i, t) for i, t in enumerate(cfg.tracks)]


def train_ppo(cfg: PPOConfig, spec: PreprocessSpec = SPEC, action_space: dict[str, Any] = ACTION_SPACE,
              show_progress: bool = True, env: VecEnv | None = None) -> tuple[DrivingNet, list[dict[str, Any]]]:
    """PPO in the simulator, observed through the car's preprocessing; returns the actor as a
    DrivingNet and the per-rollout history. `env` replaces the in-process environments of
    `env_factories(cfg)` (`sim2real.distributed.worker_vec_env` steps them on Ray workers)."""
    torch.set_num_threads(cfg.threads)
    meta = parse_metadata(action_space)
    if env is None:
        env = DummyVecEnv(env_factories(cfg, spec, action_space))
    policy_kwargs = {"features_extractor_class": DrivingFeatures, "features_extractor_kwargs": {"spec": spec},
                     "normalize_images": False,
                     "net_arch": {"pi": [100], "vf": [100]}, "activation_fn": nn.ReLU,
                     "log_std_init": cfg.log_std_init}
    n_steps, batch_size, total = rollout_plan(cfg.timesteps, cfg.n_steps, len(cfg.tracks), cfg.batch_size)
    model = PPO("MlpPolicy", env, learning_rate=cfg.learning_rate, n_steps=n_steps,
                batch_size=batch_size, n_epochs=cfg.epochs, seed=cfg.seed,
                policy_kwargs=policy_kwargs, device="cpu", verbose=0)
    callback = History(total, show_progress)
    model.learn(total_timesteps=total, callback=callback)
    env.close()
    return actor_as_driving_net(model.policy, spec, meta.output_size()), callback.history


def rollout_plan(timesteps: int, max_steps_per_env: int, envs: int, max_batch: int) -> tuple[int, int, int]:
    """(steps per environment per rollout, minibatch size, total steps) for a run of about `timesteps`.

    PPO runs whole rollouts of `envs` x n_steps: the rollouts `timesteps` needs at `max_steps_per_env`,
    each shortened to just over its share (5,000 on 3 tracks: 4 rollouts of 3 x 418 = 5,016 steps, not
    4 x 3 x 512 = 6,144), then lengthened by the fewest steps that let minibatches of `max_batch / 2`
    to `max_batch` split a rollout exactly (a remainder would be a truncated minibatch)."""
    rollouts = math.ceil(timesteps / (max_steps_per_env * envs))
    n_steps = max(2, math.ceil(timesteps / (rollouts * envs)))
    while True:
        size = n_steps * envs
        if size <= max_batch:
            return n_steps, size, rollouts * size
        batch = next((b for b in range(max_batch, max_batch // 2 - 1, -1) if size % b == 0), None)
        if batch is not None:
            return n_steps, batch, rollouts * size
        n_steps += 1  # a multiple of max_batch comes within max_batch steps


def actor_as_driving_net(policy: Any, spec: PreprocessSpec, outputs: int) -> DrivingNet:
    """The PPO actor's mean (what the car runs) with DrivingNet's layout and weights."""
    net = DrivingNet(spec, outputs)
    net.features.load_state_dict(policy.pi_features_extractor.cnn.state_dict())
    net.head[0].load_state_dict(policy.mlp_extractor.policy_net[0].state_dict())
    net.head[2].load_state_dict(policy.action_net.state_dict())
    net.eval()
    return net
